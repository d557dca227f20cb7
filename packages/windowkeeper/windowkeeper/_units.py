"""Units: one user turn with everything that answers it. Strategies keep or drop whole units."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from windowkeeper._messages import SYSTEM_ROLES, Message, validate_tool_pairs
from windowkeeper.exceptions import InvalidMessageError

__all__ = ["Unit", "group_units", "split_system"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Unit:
    """A user message and the assistant messages, tool calls and tool results that answer it.

    Retrieved chunks (``metadata={"zone": "rag"}``) sent just before the user message belong to
    the unit too. A unit is never split: keeping it keeps every tool call with its results.

    Example:
        >>> u = Unit(index=0, messages=(Message(role="user", content="hi"),))
        >>> u.user.text
        'hi'
    """

    index: int
    """Position in the conversation, 0-based."""
    messages: tuple[Message, ...]
    """The messages in order; exactly one is the (non-RAG) user message."""
    session_id: str | None = None
    """Conversation this unit belongs to."""
    timestamp: str | None = None
    """When the user message was sent, as given in its metadata."""

    def __post_init__(self) -> None:
        users = [m for m in self.messages if m.role == "user" and m.zone_hint != "rag"]
        if len(users) != 1:
            raise InvalidMessageError(
                f"a unit holds exactly one user message; unit {self.index} has {len(users)}"
            )
        if self.index < 0:
            raise InvalidMessageError(f"unit index must be >= 0; got {self.index!r}")

    @property
    def user(self) -> Message:
        """The user message that opens the turn."""
        return next(m for m in self.messages if m.role == "user" and m.zone_hint != "rag")

    @property
    def text(self) -> str:
        """User and assistant text of the unit, one ``role: text`` line each (for search)."""
        lines = []
        for m in self.messages:
            if m.role in ("user", "assistant") and m.zone_hint != "rag" and m.text:
                lines.append(f"{m.role}: {m.text}")
        return "\n".join(lines)


def split_system(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """Leading system (and developer) messages, and the rest.

    A system-role message marked with another zone (a retrieved chunk, a memory block) ends the
    leading block.
    """
    i = 0
    while (
        i < len(messages)
        and messages[i].role in SYSTEM_ROLES
        and messages[i].zone_hint in (None, "system")
    ):
        i += 1
    return list(messages[:i]), list(messages[i:])


def group_units(
    messages: Sequence[Message], *, session_id: str | None = None, start_index: int = 0
) -> list[Unit]:
    """Group a conversation (without its leading system messages) into units.

    A unit starts at each user message (with the RAG chunks right before it) and runs to the next.

    Raises:
        InvalidMessageError: Messages before the first user message, or broken tool pairs; the
            error names the offending index.
    """
    validate_tool_pairs(messages)
    units: list[Unit] = []
    current: list[Message] = []
    pending_rag: list[Message] = []
    for i, message in enumerate(messages):
        if message.zone_hint == "rag":
            pending_rag.append(message)
            continue
        if message.role == "user":
            if current:
                units.append(_unit(current, start_index + len(units), session_id))
            current = [*pending_rag, message]
            pending_rag = []
            continue
        if not current:
            raise InvalidMessageError(
                f"a {message.role} message comes before the first user message; units start on a "
                "user turn (pass leading system messages separately)",
                index=i,
            )
        current.extend(pending_rag)
        pending_rag = []
        current.append(message)
    if pending_rag:
        if not current:
            raise InvalidMessageError(
                "retrieved chunks with no user message to belong to", index=len(messages) - 1
            )
        current.extend(pending_rag)
    if current:
        units.append(_unit(current, start_index + len(units), session_id))
    return units


def _unit(messages: list[Message], index: int, session_id: str | None) -> Unit:
    user = next(m for m in messages if m.role == "user" and m.zone_hint != "rag")
    stamp = user.metadata.get("timestamp")
    session = session_id if session_id is not None else user.metadata.get("session_id")
    return Unit(
        index=index,
        messages=tuple(messages),
        session_id=session if isinstance(session, str) else None,
        timestamp=stamp if isinstance(stamp, str) else None,
    )
