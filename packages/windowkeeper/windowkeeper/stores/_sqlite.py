"""The SQLite store: one file, WAL, append-only units per session, committed atomically."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from windowkeeper._messages import messages_from_openai, messages_to_openai
from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.stores._base import DEFAULT_SESSION, SummaryRecord, check_append, check_summary

__all__ = ["SQLiteStore"]

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
    """Units in one SQLite file (WAL journal, full sync): every committed unit survives a crash.

    Each :meth:`append` is one transaction; a process killed mid-write leaves every earlier unit
    readable. Metadata (turn, timestamp, session id) is stored with the messages, verbatim.

    Args:
        path: The database file (created with its folder if missing), or ``":memory:"``.

    Example:
        >>> import os, tempfile
        >>> from windowkeeper import Message
        >>> store = SQLiteStore(os.path.join(tempfile.mkdtemp(), "chat.db"))
        >>> store.append(Unit(index=0, messages=(Message(role="user", content="hi"),)))
        >>> SQLiteStore(store.path).units()[0].user.text
        'hi'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            file = Path(self.path)
            if file.is_dir():
                raise InvalidConfigError(
                    f"path must be a database file; got a directory {self.path!r}"
                )
            file.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
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
        if row is None:
            return None
        version, covers, levels, created = row
        return SummaryRecord(
            session_id=session_id,
            version=version,
            covers=covers,
            levels=tuple(json.loads(levels)),
            created_at=created,
        )

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
