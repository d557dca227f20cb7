"""The SQLite store: one file, WAL, append-only units per session, committed atomically."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from windowkeeper._messages import messages_from_openai, messages_to_openai
from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.stores._base import (
    DEFAULT_SESSION,
    SummaryRecord,
    check_append,
    check_summary,
    summary_from_row,
)

__all__ = ["Durability", "SQLiteStore"]

Durability = Literal["normal", "full"]
"""How hard a commit is pushed to disk: ``"normal"`` survives a process crash, ``"full"`` power loss."""

# the PRAGMA synchronous level each durability sets (SQLite reads it back as 1 and 2)
_SYNCHRONOUS: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}

SCHEMA_VERSION = 2
# version 1 had only `meta` and `units`; version 2 adds the two tables below (created in place)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    session_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    timestamp TEXT,
    stored_at REAL NOT NULL,
    messages TEXT NOT NULL,
    PRIMARY KEY (session_id, idx)
);
CREATE TABLE IF NOT EXISTS summaries (
    session_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    covers INTEGER NOT NULL,
    levels TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, version)
);
CREATE TABLE IF NOT EXISTS vectors (
    session_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (session_id, model_id, idx)
);
"""


class SQLiteStore:
    """Units in one SQLite file (WAL journal): every committed unit survives a process crash.

    Each :meth:`append` is one transaction; a process killed mid-write (even with ``kill -9``)
    leaves every earlier unit readable. Metadata (turn, timestamp, session id) is stored with the
    messages, verbatim.

    ``durability`` says what a commit survives:

    - ``"normal"`` (the default; ``PRAGMA synchronous=NORMAL``): every committed unit survives a
      crash or ``kill -9`` of the process. An OS crash or power loss may roll back the most recent
      commits, those the OS had not yet written to disk (on Linux, by default, up to about the
      last half minute; never more than since the last checkpoint). It never loses a unit from the
      middle and never corrupts the file. The WAL is synced at each checkpoint, not each commit.
    - ``"full"`` (``PRAGMA synchronous=FULL``): a committed unit also survives an OS crash or power
      loss, at the price of one fsync per commit, which costs whatever the disk takes to flush.

    The default is ``"normal"``: the failures a chat application meets day to day (a crash, a
    deploy, an OOM kill) are its own process's, which ``"normal"`` survives, and it keeps storing a
    turn far cheaper than building the request it serves (about 0.1 ms against 0.5 ms per turn on
    the 2-core benchmark machine; ``"full"`` added 0.4–0.6 ms there, and 4–7 ms in an earlier
    measurement on the same machine: the cost of an fsync is the disk's, and it varies).
    Choose ``"full"`` when a turn must not be lost even if the machine loses power, e.g. when the
    conversation is the only record of what the user was told.

    Args:
        path: The database file, or ``":memory:"``. The file is created if missing; its folder
            must exist (a typo never creates folders).
        durability: ``"normal"`` or ``"full"``, as above.

    Raises:
        InvalidConfigError: ``durability`` is not ``"normal"`` or ``"full"``; ``path`` is a folder,
            is in a folder that does not exist, or is not a windowkeeper store.

    Example:
        >>> import os, tempfile
        >>> from windowkeeper import Message
        >>> store = SQLiteStore(os.path.join(tempfile.mkdtemp(), "chat.db"))
        >>> store.append(Unit(index=0, messages=(Message(role="user", content="hi"),)))
        >>> again = SQLiteStore(store.path, durability="full")
        >>> again.units()[0].user.text, again.durability
        ('hi', 'full')
    """

    def __init__(self, path: str | Path, *, durability: Durability = "normal") -> None:
        if not isinstance(durability, str) or durability not in _SYNCHRONOUS:
            raise InvalidConfigError(f"durability must be 'normal' or 'full'; got {durability!r}")
        self._durability: Durability = durability
        self.path = str(path)
        if self.path != ":memory:":
            file = Path(self.path)
            if file.is_dir():
                raise InvalidConfigError(
                    f"path must be a database file; got a directory {self.path!r}"
                )
            if not file.parent.is_dir():  # never created here: a typo must not make folders
                problem = (
                    "is not a folder"
                    if file.parent.exists()
                    else "does not exist (create the folder first)"
                )
                raise InvalidConfigError(
                    f"path must be a file in an existing folder; got {self.path!r}, whose folder "
                    f"{str(file.parent)!r} {problem}"
                )
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise InvalidConfigError(
                f"path {self.path!r} is not a windowkeeper SQLite store: {exc}"
            ) from exc
        if row is None:
            # OR IGNORE: two processes may create the same new file at once
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) == 1:
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise InvalidConfigError(
                f"store {self.path!r} has schema version {row[0]}; this windowkeeper reads {SCHEMA_VERSION}"
            )

    @property
    def durability(self) -> Durability:
        """What a commit survives: ``"normal"`` (a process crash) or ``"full"`` (power loss too)."""
        return self._durability

    def append(self, unit: Unit) -> None:
        """Store the next unit of its session in one transaction."""
        payload = json.dumps(
            messages_to_openai(unit.messages, include_metadata=True), ensure_ascii=False
        )
        with self._lock:
            session = unit.session_id or DEFAULT_SESSION
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (count,) = self._db.execute(
                    "SELECT COALESCE(MAX(idx) + 1, 0) FROM units WHERE session_id = ?", (session,)
                ).fetchone()
                check_append(unit, count)
                self._db.execute(
                    "INSERT INTO units VALUES (?, ?, ?, ?, ?)",
                    (session, unit.index, unit.timestamp, time.time(), payload),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def units(
        self, session_id: str = DEFAULT_SESSION, start: int = 0, stop: int | None = None
    ) -> list[Unit]:
        """The session's units in ``[start, stop)``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, timestamp, messages FROM units WHERE session_id = ? AND idx >= ? AND idx < ? "
                "ORDER BY idx",
                (session_id, start, stop if stop is not None else 2**62),
            ).fetchall()
        return [
            Unit(
                index=idx,
                messages=tuple(messages_from_openai(json.loads(payload))),
                session_id=session_id,
                timestamp=stamp,
            )
            for idx, stamp, payload in rows
        ]

    def count(self, session_id: str = DEFAULT_SESSION) -> int:
        """Units stored for the session."""
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM units WHERE session_id = ?", (session_id,)
            ).fetchone()
        return int(n)

    def sessions(self) -> list[str]:
        """Session ids, sorted."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT session_id FROM units ORDER BY session_id"
            ).fetchall()
        return [r[0] for r in rows]

    def save_summary(self, record: SummaryRecord) -> None:
        """Append a summary version in one transaction (earlier versions are kept)."""
        created = record.created_at or time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                check_summary(record, self._latest_summary(record.session_id))
                self._db.execute(
                    "INSERT INTO summaries VALUES (?, ?, ?, ?, ?)",
                    (
                        record.session_id,
                        record.version,
                        record.covers,
                        json.dumps(list(record.levels), ensure_ascii=False),
                        created,
                    ),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def latest_summary(self, session_id: str = DEFAULT_SESSION) -> SummaryRecord | None:
        """The newest summary version of the session."""
        with self._lock:
            return self._latest_summary(session_id)

    def _latest_summary(self, session_id: str) -> SummaryRecord | None:
        row = self._db.execute(
            "SELECT version, covers, levels, created_at FROM summaries WHERE session_id = ? "
            "ORDER BY version DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        return summary_from_row(session_id, row)

    def save_vectors(
        self, session_id: str, model_id: str, rows: Sequence[tuple[int, bytes]]
    ) -> None:
        """Store vectors by unit index, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)",
                    [(session_id, model_id, idx, blob) for idx, blob in rows],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load_vectors(self, session_id: str, model_id: str) -> list[tuple[int, bytes]]:
        """The session's vectors for the model, by index."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, vector FROM vectors WHERE session_id = ? AND model_id = ? ORDER BY idx",
                (session_id, model_id),
            ).fetchall()
        return [(int(i), bytes(b)) for i, b in rows]

    def close(self) -> None:
        """Close the connection (further calls fail)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
