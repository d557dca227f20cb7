"""The PostgreSQL store: one conversation store shared by many app processes.

Units, summaries and recall vectors live in a schema of their own (``windowkeeper`` by default),
reached through a psycopg 3 connection pool. Every write is one transaction. Appends to a session
are serialised by its row in ``sessions`` (the next index, locked by the statement that takes
it), so any number of processes appending to the same session get one gap-free order, with no
duplicate and no lost unit. A summary is made by one process at a time per session (a
PostgreSQL advisory lock held on a connection of its own: if that process dies, the server ends
its session and releases the lock, and another process picks the work up).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from windowkeeper._checks import check_int, check_number
from windowkeeper._messages import messages_from_openai, messages_to_openai
from windowkeeper._units import Unit
from windowkeeper.exceptions import (
    InvalidConfigError,
    ModelNotInstalledError,
    StoreUnavailableError,
)
from windowkeeper.stores._base import (
    DEFAULT_SESSION,
    SummaryRecord,
    check_append,
    check_summary,
    summary_from_row,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

_T = TypeVar("_T")

SCHEMA_VERSION = 2
"""The schema this windowkeeper reads and writes. Version 1 had no ``sessions`` table (appends
took the next index from ``MAX(idx)``) and no ``unit_key`` (what makes a retried append land
once); opening a version-1 schema with ``migrate=True`` adds both, in one transaction."""

_V1 = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.units (
    session_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    timestamp TEXT,
    stored_at DOUBLE PRECISION NOT NULL,
    messages TEXT NOT NULL,
    PRIMARY KEY (session_id, idx)
);
CREATE TABLE IF NOT EXISTS {s}.summaries (
    session_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    covers BIGINT NOT NULL,
    levels TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_id, version)
);
CREATE TABLE IF NOT EXISTS {s}.vectors (
    session_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    vector BYTEA NOT NULL,
    PRIMARY KEY (session_id, model_id, idx)
);
"""

_MIGRATIONS: dict[int, str] = {
    # 1 -> 2: the per-session counter that serialises appends from many processes
    2: """
CREATE TABLE IF NOT EXISTS {s}.sessions (
    session_id TEXT PRIMARY KEY,
    next_idx BIGINT NOT NULL
);
INSERT INTO {s}.sessions (session_id, next_idx)
    SELECT session_id, MAX(idx) + 1 FROM {s}.units GROUP BY session_id
    ON CONFLICT (session_id) DO NOTHING;
ALTER TABLE {s}.units ADD COLUMN IF NOT EXISTS unit_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS units_key ON {s}.units (session_id, unit_key);
""",
}

_EMBEDDINGS = """
CREATE TABLE IF NOT EXISTS {s}.embeddings (
    session_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (session_id, model_id, idx)
);
"""
"""Where the pgvector extension is there: the same vectors as pgvector values, for searches in the
database (:meth:`PostgresStore.vector_search`). Not part of the versioned schema: made when the
extension can be created, written beside ``vectors`` from then on."""

_SETUP_LOCK = 0x57696E646F77  # "Window": serialises schema set-up between processes

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _driver() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:  # pragma: no cover - the extra is installed in the workspace
        raise ModelNotInstalledError(
            "psycopg (PostgresStore's driver)",
            install="pip install 'windowkeeper[postgres]'",
            detail=str(exc),
        ) from exc
    return psycopg, psycopg_pool


def redact(dsn: str) -> str:
    """``dsn`` without its password (for messages and ``repr``)."""
    psycopg, _ = _driver()
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in sorted(parts.items()) if v not in (None, ""))


class PostgresStore:
    """Units, summaries and recall vectors in PostgreSQL, shared by many app processes.

    The store for more than one app server: every process that opens the same database sees the
    same sessions. Memories built on it read the units other processes added before each view
    (:attr:`shared`), and append through :meth:`append_next`, which gives each unit the session's
    next index on the server, so concurrent appends never collide.

    - **Atomic.** Every write is one transaction: a unit (or summary, or batch of vectors) is
      whole in the store or absent, whatever happens to the process or the connection.
    - **Many writers.** The next index of a session is taken by the statement that locks its
      row in ``sessions``; appends to one session queue there, appends to others do not wait.
    - **One summariser per session.** :meth:`lease` takes a session-level advisory lock on a
      connection of its own; memories use it so a session's next summary is made once. If the
      holder dies, the server releases the lock and another process takes over.
    - **Connection loss.** A write whose connection is lost is tried again, on a fresh
      connection, for up to ``timeout`` seconds; each unit carries a key, so a retry first finds
      what an earlier try committed and a unit is never stored twice. Past ``timeout`` the call
      raises :class:`~windowkeeper.StoreUnavailableError` naming the cause; reads are tried
      again the same way. Nothing half-written is ever visible. The pool checks each connection before
      handing it out and reconnects by itself.
    - **Schema.** Tables live in their own schema (``schema=``). The version is recorded and
      older versions are upgraded in one transaction when ``migrate`` is on; a newer version is
      refused.

    Args:
        dsn: A libpq connection string or URI, e.g. ``"postgresql://app@db/chat"``.
        schema: The PostgreSQL schema holding the tables (lower-case letters, digits, ``_``).
        migrate: Create the schema when it is missing and upgrade an older one (default). With
            ``False`` a missing or older schema is an error that says what to run.
        min_size: Connections the pool keeps open.
        max_size: Most connections the pool opens (a lease opens one of its own besides).
        timeout: Seconds to wait for the server (connecting) or for a free connection.

    Raises:
        InvalidConfigError: A bad setting, a database without the schema (``migrate=False``),
            or a schema newer than this windowkeeper.
        StoreUnavailableError: The server cannot be reached (wrong host, refused, bad password).
        ModelNotInstalledError: psycopg is not installed (``pip install 'windowkeeper[postgres]'``).

    Example:
        >>> store = PostgresStore("postgresql://app@db/chat")  # doctest: +SKIP
        >>> from windowkeeper.memory import WindowMemory  # doctest: +SKIP
        >>> memory = WindowMemory(TokenCounter("gpt-4o"), store=store, session_id="u42")  # doctest: +SKIP
    """

    shared = True
    """Other processes may append to the same sessions: memories re-read before each view."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "windowkeeper",
        migrate: bool = True,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 10.0,
    ) -> None:
        psycopg, psycopg_pool = _driver()
        if not isinstance(dsn, str) or not dsn.strip():
            raise InvalidConfigError(f"dsn must be a non-empty connection string; got {dsn!r}")
        try:
            psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise InvalidConfigError(f"dsn is not a valid connection string: {exc}") from exc
        if not isinstance(schema, str) or not _NAME.match(schema):
            raise InvalidConfigError(
                "schema must be a PostgreSQL name of lower-case letters, digits and _ (not "
                f"starting with a digit, at most 63); got {schema!r}"
            )
        check_int("min_size", min_size, 0)
        check_int("max_size", max_size, 1)
        if max_size < min_size:
            raise InvalidConfigError(f"max_size must be >= min_size ({min_size}); got {max_size}")
        if check_number("timeout", timeout, 0, finite=True) == 0:
            raise InvalidConfigError(f"timeout must be a number of seconds > 0; got {timeout!r}")
        self.dsn = dsn
        self.schema = schema
        self.timeout = float(timeout)
        self._closed = False
        self._lock = threading.Lock()
        self.pgvector = False
        """Whether vectors are also kept as pgvector values (:meth:`vector_search` works)."""
        self._setup(psycopg, migrate)
        self._pool = psycopg_pool.ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=self.timeout,
            kwargs={"autocommit": True},
            open=False,
            name=f"windowkeeper-{schema}",
        )
        try:
            self._pool.open(wait=True, timeout=self.timeout)
        except psycopg.Error as exc:
            self._pool.close()
            raise StoreUnavailableError(
                f"PostgreSQL at {redact(dsn)} cannot be reached", cause=_cause(exc)
            ) from exc

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.dsn)!r}, schema={self.schema!r})"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # ------------------------------------------------------------------------------ set-up

    def _setup(self, psycopg: Any, migrate: bool) -> None:
        """Check (and create or upgrade, with ``migrate``) the schema, in one transaction."""
        where = redact(self.dsn)
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=int(self.timeout))
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"PostgreSQL at {where} cannot be reached", cause=_cause(exc)
            ) from exc
        s = self.schema
        try:
            with conn:
                self._migrate(conn, migrate)
                self.pgvector = self._setup_pgvector(conn, psycopg, migrate)
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(
                f"PostgreSQL at {where} failed during schema set-up", cause=_cause(exc)
            ) from exc
        except psycopg.Error as exc:
            raise InvalidConfigError(
                f"schema {s!r} in {where} cannot be set up: {_cause(exc)}"
            ) from exc

    def _setup_pgvector(self, conn: Any, psycopg: Any, migrate: bool) -> bool:
        """Whether vectors are also kept as pgvector values (creating their table if allowed)."""
        s = self.schema
        (found,) = conn.execute("SELECT to_regclass(%s)", (f"{s}.embeddings",)).fetchone()
        if found is not None:
            return True
        if (
            not migrate
            or not conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
        ):
            return False
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                conn.execute(_EMBEDDINGS.format(s=s))
        except psycopg.OperationalError:
            raise
        except psycopg.Error:  # e.g. no right to create the extension: vectors stay bytea only
            return False
        return True

    def _migrate(self, conn: Any, migrate: bool) -> None:
        where = redact(self.dsn)
        s = self.schema
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
            (found,) = conn.execute("SELECT to_regclass(%s)", (f"{s}.meta",)).fetchone()
            if found is None:
                if not migrate:
                    raise InvalidConfigError(
                        f"database {where} has no windowkeeper schema {s!r}: open it once "
                        "with PostgresStore(dsn, migrate=True) (the default) to create it"
                    )
                conn.execute(_V1.format(s=s))
                conn.execute(
                    f"INSERT INTO {s}.meta VALUES ('schema_version', '1') "
                    "ON CONFLICT (key) DO NOTHING"
                )
            row = conn.execute(
                f"SELECT value FROM {s}.meta WHERE key = 'schema_version'"
            ).fetchone()
            version = int(row[0]) if row is not None else 1
            if version > SCHEMA_VERSION:
                raise InvalidConfigError(
                    f"schema {s!r} in {where} is version {version}, newer than this "
                    f"windowkeeper reads ({SCHEMA_VERSION}): upgrade windowkeeper"
                )
            if version < SCHEMA_VERSION and not migrate:
                raise InvalidConfigError(
                    f"schema {s!r} in {where} is version {version}; this windowkeeper needs "
                    f"{SCHEMA_VERSION}: open it once with PostgresStore(dsn, migrate=True)"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                conn.execute(_MIGRATIONS[target].format(s=s))
                conn.execute(
                    f"UPDATE {s}.meta SET value = %s WHERE key = 'schema_version'",
                    (str(target),),
                )

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        s = self.schema
        row = self._read(
            lambda conn: _one(
                conn.execute(f"SELECT value FROM {s}.meta WHERE key = 'schema_version'")
            )
        )
        return int(row[0])

    # ------------------------------------------------------------------------------ calls

    def _run(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """``work(connection)`` on a pooled connection; lost connections become a typed error."""
        psycopg, _ = _driver()
        if self._closed:
            raise InvalidConfigError(f"{self!r} is closed")
        try:
            with self._pool.connection() as conn:
                return work(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailableError(
                f"PostgreSQL at {redact(self.dsn)} is unreachable", cause=_cause(exc)
            ) from exc

    def _drop_broken(self) -> None:
        """After a lost connection, test the idle ones and replace those that are broken too.

        Connections are not tested each time they are lent (that costs a round trip per call):
        a server restart is noticed by the first call that fails, and this clears every other
        connection it left broken, so the retry that follows gets a working one.
        """
        with contextlib.suppress(Exception):  # the retry reports what is wrong
            self._pool.check()

    def _read(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """``work(connection)``, tried again while the server is away (reads are idempotent)."""
        return self._write(functools.partial(_ignore_retry, work))

    def _write(self, work: Callable[[psycopg.Connection[Any], bool], _T]) -> _T:
        """``work(connection, retry)`` in :meth:`_run`, tried again while the server is away.

        A connection lost mid-call leaves its outcome unknown (the commit may have landed), so
        ``work`` is told when it is a retry and first looks for what the earlier try wrote.
        Tries stop after ``timeout`` seconds; the last error is raised.
        """
        if self._closed:
            raise InvalidConfigError(f"{self!r} is closed")
        deadline = time.monotonic() + self.timeout
        retry = False
        pause = 0.05
        while True:
            try:
                return self._run(functools.partial(_call_with, work, retry))
            except StoreUnavailableError:
                if self._closed or time.monotonic() + pause > deadline:
                    raise
                self._drop_broken()
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            retry = True

    # ------------------------------------------------------------------------------ units

    def append(self, unit: Unit) -> None:
        """Store the unit at ``unit.index``, which must be the session's next index."""
        self._insert(unit, expected=unit.index)

    def append_next(self, unit: Unit) -> Unit:
        """Store the unit at its session's next index, whatever ``unit.index`` says.

        The index is taken on the server, under the session's row lock, so concurrent appends
        from any number of processes get one gap-free order.

        Returns:
            The unit as stored (its index, its session id).
        """
        index = self._insert(unit, expected=None)
        return Unit(
            index=index,
            messages=unit.messages,
            session_id=unit.session_id or DEFAULT_SESSION,
            timestamp=unit.timestamp,
        )

    def _insert(self, unit: Unit, *, expected: int | None) -> int:
        """Store ``unit`` at its session's next index (which must be ``expected``, if given).

        The statement that takes the index locks the session's row until the unit commits. A
        retry after a lost connection first looks for the unit's key: stored once.
        """
        s = self.schema
        session = unit.session_id or DEFAULT_SESSION
        payload = _payload(unit)
        key = uuid.uuid4().hex

        def work(conn: psycopg.Connection[Any], retry: bool) -> int:
            with conn.transaction():
                landed = self._landed(conn, session, key) if retry else None
                if landed is not None:
                    return landed  # the lost try had committed it
                (index,) = _one(
                    conn.execute(
                        f"INSERT INTO {s}.sessions AS t VALUES (%s, 1) ON CONFLICT (session_id) "
                        "DO UPDATE SET next_idx = t.next_idx + 1 RETURNING next_idx - 1",
                        (session,),
                    )
                )
                if expected is not None:
                    check_append(unit, int(index))  # raises: the transaction rolls back
                conn.execute(
                    f"INSERT INTO {s}.units VALUES (%s, %s, %s, %s, %s, %s)",
                    (session, index, unit.timestamp, time.time(), payload, key),
                )
                return int(index)

        return self._write(work)

    def _landed(self, conn: psycopg.Connection[Any], session: str, key: str) -> int | None:
        """The index a unit written under ``key`` got, if an earlier try committed it."""
        row = conn.execute(
            f"SELECT idx FROM {self.schema}.units WHERE session_id = %s AND unit_key = %s",
            (session, key),
        ).fetchone()
        return int(row[0]) if row is not None else None

    def units(
        self, session_id: str = DEFAULT_SESSION, start: int = 0, stop: int | None = None
    ) -> list[Unit]:
        """The session's units in ``[start, stop)``, in order."""
        s = self.schema
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT idx, timestamp, messages FROM {s}.units WHERE session_id = %s "
                "AND idx >= %s AND idx < %s ORDER BY idx",
                (session_id, start, stop if stop is not None else 2**62),
            ).fetchall()
        )
        return [
            Unit(
                index=int(idx),
                messages=tuple(messages_from_openai(json.loads(payload))),
                session_id=session_id,
                timestamp=stamp,
            )
            for idx, stamp, payload in rows
        ]

    def count(self, session_id: str = DEFAULT_SESSION) -> int:
        """Units stored for the session."""
        s = self.schema
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT next_idx FROM {s}.sessions WHERE session_id = %s", (session_id,)
            ).fetchone()
        )
        return int(row[0]) if row is not None else 0

    def sessions(self) -> list[str]:
        """Every session id with at least one unit, sorted."""
        s = self.schema
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT session_id FROM {s}.sessions WHERE next_idx > 0 ORDER BY session_id"
            ).fetchall()
        )
        return [r[0] for r in rows]

    # ------------------------------------------------------------------------------ summaries

    def save_summary(self, record: SummaryRecord) -> None:
        """Append a summary version (the session's latest + 1), atomically with what it covers."""
        s = self.schema

        def work(conn: psycopg.Connection[Any], retry: bool) -> None:
            with conn.transaction():
                latest = self._latest(conn, record.session_id) if retry else None
                if latest is not None and (latest.version, latest.covers, latest.levels) == (
                    record.version,
                    record.covers,
                    record.levels,
                ):
                    return  # the lost try had committed it
                # the session's row serialises summary commits as it does appends
                conn.execute(
                    f"INSERT INTO {s}.sessions AS t VALUES (%s, 0) ON CONFLICT (session_id) "
                    "DO UPDATE SET next_idx = t.next_idx",
                    (record.session_id,),
                )
                check_summary(record, self._latest(conn, record.session_id))
                conn.execute(
                    f"INSERT INTO {s}.summaries VALUES (%s, %s, %s, %s, %s)",
                    (
                        record.session_id,
                        record.version,
                        record.covers,
                        json.dumps(list(record.levels), ensure_ascii=False),
                        record.created_at or time.time(),
                    ),
                )

        self._write(work)

    def latest_summary(self, session_id: str = DEFAULT_SESSION) -> SummaryRecord | None:
        """The newest summary version of the session, if any."""
        return self._read(lambda conn: self._latest(conn, session_id))

    def _latest(self, conn: psycopg.Connection[Any], session_id: str) -> SummaryRecord | None:
        row = conn.execute(
            f"SELECT version, covers, levels, created_at FROM {self.schema}.summaries "
            "WHERE session_id = %s ORDER BY version DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        return summary_from_row(session_id, row)

    @contextmanager
    def lease(self, session_id: str, purpose: str = "summary") -> Iterator[bool]:
        """Hold the session's ``purpose`` lease while the block runs, if no one else holds it.

        Yields True when this process holds it for the block, False when another does (do the
        work later). The lease is a PostgreSQL advisory lock on a connection of its own (not
        one of the pool's, which the work under the lease uses): closing that connection at the
        end releases it, and if the holder dies, the server ends its session and releases it.
        """
        psycopg, _ = _driver()
        key = f"windowkeeper:{self.schema}:{purpose}:{session_id}"
        if self._closed:
            raise InvalidConfigError(f"{self!r} is closed")
        try:  # a connection of its own: the work under the lease uses the pool meanwhile
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=int(self.timeout))
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"PostgreSQL at {redact(self.dsn)}: no connection for the lease", cause=_cause(exc)
            ) from exc
        try:
            try:
                (held,) = conn.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)
                ).fetchone()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise StoreUnavailableError(
                    f"PostgreSQL at {redact(self.dsn)}: the lease was not taken",
                    cause=_cause(exc),
                ) from exc
            yield bool(held)
        finally:
            conn.close()  # ends the server session: the lock goes with it

    # ------------------------------------------------------------------------------ vectors

    def save_vectors(
        self, session_id: str, model_id: str, rows: Sequence[tuple[int, bytes]]
    ) -> None:
        """Store (unit index, vector bytes) rows; a row replaces the same index. One transaction."""
        s = self.schema
        data = [(session_id, model_id, int(i), bytes(b)) for i, b in rows]
        if not data:
            return

        def work(conn: psycopg.Connection[Any], retry: bool) -> None:  # an upsert: a retry is safe
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {s}.vectors VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (session_id, model_id, idx) DO UPDATE SET vector = EXCLUDED.vector",
                    data,
                )
                mirrored = [row for row in data if len(row[3]) and len(row[3]) % 4 == 0]
                if self.pgvector and mirrored:  # float32 vectors, as recall saves them
                    cur.executemany(
                        f"INSERT INTO {s}.embeddings VALUES (%s, %s, %s, %s::vector) "
                        "ON CONFLICT (session_id, model_id, idx) "
                        "DO UPDATE SET embedding = EXCLUDED.embedding",
                        [(a, b, c, _vector_text(v)) for a, b, c, v in mirrored],
                    )

        self._write(work)

    def load_vectors(
        self, session_id: str, model_id: str, *, start: int = 0
    ) -> list[tuple[int, bytes]]:
        """Every (unit index, vector bytes) row of the session for the model, by index.

        ``start``: only the rows of units from that index on (a process that read other
        processes' new units takes their vectors, not the whole session's).
        """
        s = self.schema
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT idx, vector FROM {s}.vectors WHERE session_id = %s AND model_id = %s "
                "AND idx >= %s ORDER BY idx",
                (session_id, model_id, start),
            ).fetchall()
        )
        return [(int(i), bytes(b)) for i, b in rows]

    def create_vector_index(self, model_id: str, dimension: int) -> str:
        """Build the HNSW (cosine) index :meth:`vector_search` uses for ``model_id``'s vectors.

        Building it reads every stored vector of the model: do it once, at deploy time, not on a
        request. Returns the index name.

        Raises:
            InvalidConfigError: The server has no pgvector, or ``dimension`` is not an int >= 1.
        """
        self._need_pgvector()
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise InvalidConfigError(f"dimension must be an int >= 1; got {dimension!r}")
        name = _index_name(model_id, dimension)
        literal = model_id.replace("'", "''")
        self._write(
            lambda conn, retry: conn.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON {self.schema}.embeddings USING hnsw "
                f"((embedding::vector({dimension})) vector_cosine_ops) "
                f"WHERE model_id = '{literal}'"
            )
        )
        return name

    def vector_search(
        self, session_id: str, model_id: str, query: Sequence[float], k: int
    ) -> list[tuple[int, float]]:
        """The ``k`` units of one session whose vectors are nearest ``query``, in the database.

        For sessions too large to hold their vectors in the process. ``(unit index, cosine)``,
        best first, never another session's. Uses the model's HNSW index when
        :meth:`create_vector_index` made one (approximate, as HNSW is); when the filtered index
        scan finds fewer than ``k`` of the session's units, the search is redone exactly.

        Raises:
            InvalidConfigError: The server has no pgvector, or ``k`` is not an int >= 1.
        """
        self._need_pgvector()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidConfigError(f"k must be an int >= 1; got {k!r}")
        vector = [float(x) for x in query]
        dim = len(vector)
        text = _vector_text(vector)
        s = self.schema
        literal = model_id.replace("'", "''")  # a literal, so the model's partial index applies
        sql = (
            f"SELECT idx, 1 - (embedding::vector({dim}) <=> %s::vector({dim})) FROM {s}.embeddings "
            f"WHERE session_id = %s AND model_id = '{literal}' "
            f"ORDER BY embedding::vector({dim}) <=> %s::vector({dim}) LIMIT %s"
        )
        args = (text, session_id, text, k)

        def work(conn: psycopg.Connection[Any]) -> list[tuple[int, float]]:
            with conn.transaction():
                conn.execute(f"SET LOCAL hnsw.ef_search = {min(max(40, 4 * k), 1000)}")
                rows = conn.execute(sql, args).fetchall()
                if len(rows) < k:  # the filtered index scan may stop short: exact, in the session
                    (stored,) = _one(
                        conn.execute(
                            f"SELECT count(*) FROM {s}.embeddings "
                            "WHERE session_id = %s AND model_id = %s",
                            (session_id, model_id),
                        )
                    )
                    if len(rows) < min(k, int(stored)):
                        conn.execute("SET LOCAL enable_indexscan = off")
                        rows = conn.execute(sql, args).fetchall()
            return [(int(i), float(score)) for i, score in rows]

        return self._read(work)

    def _need_pgvector(self) -> None:
        if not self.pgvector:
            raise InvalidConfigError(
                f"{self!r}: the server has no pgvector extension (or no right to create it), "
                "so there is no search in the database; recall searches in the process"
            )

    # ------------------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the pool (further calls raise ``InvalidConfigError``)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _vector_text(vector: bytes | Sequence[float]) -> str:
    """A vector (float32 bytes, as stored, or numbers) as pgvector's text input."""
    if isinstance(vector, bytes | bytearray | memoryview):
        import numpy as np

        values = np.frombuffer(bytes(vector), dtype="<f4").tolist()
    else:
        values = list(vector)
    return "[" + ",".join(repr(float(x)) for x in values) + "]"


def _index_name(model_id: str, dimension: int) -> str:
    import hashlib

    return f"embeddings_{hashlib.sha1(model_id.encode()).hexdigest()[:12]}_{dimension}"


def _payload(unit: Unit) -> str:
    return json.dumps(messages_to_openai(unit.messages, include_metadata=True), ensure_ascii=False)


def _call_with(work: Callable[[Any, bool], _T], retry: bool, conn: Any) -> _T:
    return work(conn, retry)


def _ignore_retry(work: Callable[[Any], _T], conn: Any, retry: bool) -> _T:
    return work(conn)


def _one(cursor: Any) -> tuple[Any, ...]:
    """The one row a statement returns."""
    row = cursor.fetchone()
    assert row is not None  # every caller's statement returns exactly one row
    return tuple(row)


def _cause(exc: BaseException) -> str:
    """The driver's message, on one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
