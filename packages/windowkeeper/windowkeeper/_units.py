"""Units: one user turn with everything that answers it. Strategies keep or drop whole units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from windowkeeper._messages import SYSTEM_ROLES, Message, as_messages, validate_tool_pairs
from windowkeeper.exceptions import InvalidMessageError

__all__ = ["Unit", "group_units", "split_system"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Unit:
    """A user message and the assistant messages, tool calls and tool results that answer it.

    Retrieved chunks (``metadata={"zone": "rag"}``) sent just before the user message belong to
    the unit too. A unit is never split: keeping it keeps every tool call with its results.

    A unit may also hold no user message: what was said before the next user turn, such as an
    assistant's greeting that opens a conversation, a notice the assistant sends on its own, or
    a tool exchange and a system note before the user speaks. Such a unit (``user`` is ``None``)
    is stored, shown, summarised and recalled like any other.

    Example:
        >>> u = Unit(index=0, messages=(Message(role="user", content="hi"),))
        >>> u.user.text
        'hi'
        >>> Unit(index=0, messages=(Message(role="assistant", content="Hi! How can I help?"),)).user
    """

    index: int
    """Position in the conversation, 0-based."""
    messages: tuple[Message, ...]
    """The messages in order; at most one is the (non-RAG) user message, and it opens the turn."""
    session_id: str | None = None
    """Conversation this unit belongs to."""
    timestamp: str | None = None
    """When the unit began (the user message's, else the first message's ``timestamp``
    metadata), as given."""

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or isinstance(self.index, bool) or self.index < 0:
            raise InvalidMessageError(f"unit index must be an int >= 0; got {self.index!r}")
        if not self.messages:
            raise InvalidMessageError(
                f"a unit holds at least one message; unit {self.index} has none"
            )
        users = sum(1 for m in self.messages if m.role == "user" and m.zone_hint != "rag")
        if users > 1:
            raise InvalidMessageError(
                f"a unit holds at most one user message; unit {self.index} has {users}"
            )

    @property
    def user(self) -> Message | None:
        """The user message that opens the turn (``None`` for a unit said before a user turn)."""
        return next((m for m in self.messages if m.role == "user" and m.zone_hint != "rag"), None)

    @property
    def lead(self) -> Message:
        """The message the unit is about: its user message, else its first non-RAG message."""
        user = self.user
        if user is not None:
            return user
        return next((m for m in self.messages if m.zone_hint != "rag"), self.messages[0])

    @property
    def text(self) -> str:
        """User and assistant text of the unit, one ``role: text`` line each (for search)."""
        lines = []
        for m in self.messages:
            if m.role in ("user", "assistant") and m.zone_hint != "rag" and m.text:
                lines.append(f"{m.role}: {m.text}")
        return "\n".join(lines)


def split_system(
    messages: Sequence[Message | Mapping[str, Any]],
) -> tuple[list[Message], list[Message]]:
    """Leading system (and developer) messages, and the rest.

    A system-role message marked with another zone (a retrieved chunk, a memory block) ends the
    leading block. OpenAI chat dicts are accepted and converted.
    """
    messages = as_messages(messages)
    i = 0
    while (
        i < len(messages)
        and messages[i].role in SYSTEM_ROLES
        and messages[i].zone_hint in (None, "system")
    ):
        i += 1
    return list(messages[:i]), list(messages[i:])


def group_units(
    messages: Sequence[Message | Mapping[str, Any]],
    *,
    session_id: str | None = None,
    start_index: int = 0,
    finished: bool = False,
) -> list[Unit]:
    """Group a conversation (without its leading system messages) into units.

    A unit starts at each user message (with the RAG chunks right before it) and runs to the next.
    Messages before the first user message (an assistant's greeting, a system note, a tool
    exchange) form a unit of their own without a user message. OpenAI chat dicts are accepted.

    Args:
        messages: The conversation, oldest first.
        session_id: Recorded on every unit (else each unit's user message's ``session_id``).
        start_index: Index of the first unit.
        finished: Every tool call must have its result (the last turn too): the units are to be
            stored, not sent as the turn in progress.

    Raises:
        InvalidMessageError: Broken tool pairs (a result without its call, a call without its
            result before the next message, or at the end when ``finished``); the error names
            the offending index.
    """
    messages = as_messages(messages)
    validate_tool_pairs(messages, finished=finished)
    units: list[Unit] = []
    current: list[Message] = []
    pending_rag: list[Message] = []
    for message in messages:
        if message.zone_hint == "rag":
            pending_rag.append(message)
            continue
        if message.role == "user":
            if current:
                units.append(_unit(current, start_index + len(units), session_id))
            current = [*pending_rag, message]
            pending_rag = []
            continue
        current.extend(pending_rag)
        pending_rag = []
        current.append(message)
    current.extend(pending_rag)  # chunks after the last message belong to the last unit
    if current:
        units.append(_unit(current, start_index + len(units), session_id))
    return units


def _unit(messages: list[Message], index: int, session_id: str | None) -> Unit:
    lead = next(
        (m for m in messages if m.role == "user" and m.zone_hint != "rag"),
        next((m for m in messages if m.metadata.get("timestamp") is not None), messages[0]),
    )
    stamp = lead.metadata.get("timestamp")
    session = session_id if session_id is not None else lead.metadata.get("session_id")
    return Unit(
        index=index,
        messages=tuple(messages),
        session_id=session if isinstance(session, str) else None,
        timestamp=stamp if isinstance(stamp, str) else None,
    )
