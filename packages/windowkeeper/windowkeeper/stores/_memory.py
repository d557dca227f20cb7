"""An in-memory store (tests, short-lived processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace

from windowkeeper._units import Unit
from windowkeeper.stores._base import DEFAULT_SESSION, SummaryRecord, check_append, check_summary

__all__ = ["MemoryStore"]


class MemoryStore:
    """Units in a dict of lists; thread-safe; gone when the process ends.

    Example:
        >>> from windowkeeper import Message
        >>> store = MemoryStore()
        >>> store.append(Unit(index=0, messages=(Message(role="user", content="hi"),)))
        >>> store.count()
        1
    """

    def __init__(self) -> None:
        self._units: dict[str, list[Unit]] = {}
        self._summaries: dict[str, list[SummaryRecord]] = {}
        self._vectors: dict[tuple[str, str], dict[int, bytes]] = {}
        self._lock = threading.Lock()

    def append(self, unit: Unit) -> None:
        """Store the next unit of its session."""
        with self._lock:
            session = unit.session_id or DEFAULT_SESSION
            rows = self._units.setdefault(session, [])
            check_append(unit, len(rows))
            rows.append(unit)

    def units(
        self, session_id: str = DEFAULT_SESSION, start: int = 0, stop: int | None = None
    ) -> list[Unit]:
        """The session's units in ``[start, stop)``."""
        with self._lock:
            return list(self._units.get(session_id, [])[start:stop])

    def count(self, session_id: str = DEFAULT_SESSION) -> int:
        """Units stored for the session."""
        with self._lock:
            return len(self._units.get(session_id, []))

    def sessions(self) -> list[str]:
        """Session ids, sorted."""
        with self._lock:
            return sorted(s for s, rows in self._units.items() if rows)

    def save_summary(self, record: SummaryRecord) -> None:
        """Append a summary version."""
        with self._lock:
            rows = self._summaries.setdefault(record.session_id, [])
            check_summary(record, rows[-1] if rows else None)
            rows.append(record if record.created_at else replace(record, created_at=time.time()))

    def latest_summary(self, session_id: str = DEFAULT_SESSION) -> SummaryRecord | None:
        """The newest summary version of the session."""
        with self._lock:
            rows = self._summaries.get(session_id)
            return rows[-1] if rows else None

    def save_vectors(
        self, session_id: str, model_id: str, rows: Sequence[tuple[int, bytes]]
    ) -> None:
        """Store vectors by unit index."""
        with self._lock:
            self._vectors.setdefault((session_id, model_id), {}).update(rows)

    def load_vectors(self, session_id: str, model_id: str) -> list[tuple[int, bytes]]:
        """The session's vectors for the model, by index."""
        with self._lock:
            return sorted(self._vectors.get((session_id, model_id), {}).items())
