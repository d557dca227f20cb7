"""An in-memory store (tests, short-lived processes)."""

from __future__ import annotations

import threading

from windowkeeper._units import Unit
from windowkeeper.stores._base import DEFAULT_SESSION, check_append

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
