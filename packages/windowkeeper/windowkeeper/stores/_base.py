"""The store protocol: append-only units per session."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError

__all__ = ["DEFAULT_SESSION", "ConversationStore", "check_append"]

DEFAULT_SESSION = "default"
"""The session a unit without a session id is stored under."""


@runtime_checkable
class ConversationStore(Protocol):
    """Append-only storage of units, per session. Framework adapters implement this too."""

    def append(self, unit: Unit) -> None:
        """Store the next unit of its session; ``unit.index`` must equal the session's count."""
        ...

    def units(
        self, session_id: str = DEFAULT_SESSION, start: int = 0, stop: int | None = None
    ) -> list[Unit]:
        """The session's units with ``start <= index < stop``, in order."""
        ...

    def count(self, session_id: str = DEFAULT_SESSION) -> int:
        """Units stored for the session."""
        ...

    def sessions(self) -> list[str]:
        """Every session id with at least one unit, sorted."""
        ...


def check_append(unit: Unit, expected_index: int) -> str:
    """The session id to store ``unit`` under, after checking that it is the next one."""
    if unit.index != expected_index:
        raise InvalidConfigError(
            f"unit.index must be the next index of session {unit.session_id or DEFAULT_SESSION!r} "
            f"({expected_index}); got {unit.index!r}: stores are append-only"
        )
    return unit.session_id or DEFAULT_SESSION
