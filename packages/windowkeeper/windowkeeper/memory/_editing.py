"""Context editing: clear old tool results and earlier reasoning from the view (never from the store)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from windowkeeper._budget import Dropped
from windowkeeper._messages import Message, ReasoningPart, TextPart
from windowkeeper._units import group_units, split_system
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.memory._window import TrimResult
from windowkeeper.tokens._counter import TokenCounter

__all__ = ["ContextEditor"]


class ContextEditor:
    """Clear old tool results and earlier reasoning from the view.

    Tool results older than the ``keep_tool_results`` newest become a short placeholder, and
    reasoning parts of earlier turns are dropped.

    The placeholder keeps the ``tool_call_id``, so every call still has its result, and says what
    was there: ``[tool result cleared: lookup_order, 412 tokens, turn 3]``. User messages, system
    messages and the current turn are never changed. Edited messages are new objects; the input
    and the store are untouched.

    Args:
        counter: Counts tokens for the target model (reported savings are exact).
        keep_tool_results: Newest tool results kept verbatim.
        clear_reasoning: Drop ``ReasoningPart`` content of turns before the current one.

    Example:
        >>> from windowkeeper import ToolCall
        >>> call = ToolCall(id="c1", name="lookup", arguments="{}")
        >>> msgs = [Message(role="user", content="a"), Message(role="assistant", tool_calls=(call,)),
        ...         Message(role="tool", tool_call_id="c1", content="x " * 300),
        ...         Message(role="assistant", content="done"), Message(role="user", content="b")]
        >>> out = ContextEditor(TokenCounter("gpt-4o"), keep_tool_results=0).edit(msgs)
        >>> out.messages[2].text
        '[tool result cleared: lookup, 301 tokens, turn 0]'
    """

    def __init__(
        self, counter: TokenCounter, *, keep_tool_results: int = 3, clear_reasoning: bool = True
    ) -> None:
        if not isinstance(keep_tool_results, int) or keep_tool_results < 0:
            raise InvalidConfigError(
                f"keep_tool_results must be an int >= 0; got {keep_tool_results!r}"
            )
        self.counter = counter
        self.keep_tool_results = keep_tool_results
        self.clear_reasoning = clear_reasoning

    def _placeholder(
        self, message: Message, names: Mapping[str, str], turn: int | None
    ) -> tuple[str, int] | None:
        """The placeholder and the tokens it clears; ``None`` where it would not save tokens."""
        tokens = self.counter.count(message.text)
        name = names.get(message.tool_call_id or "", message.name or "tool")
        where = "" if turn is None else f", turn {turn}"
        note = f"[tool result cleared: {name}, {tokens} tokens{where}]"
        return (note, tokens) if self.counter.count(note) < tokens else None

    def edit(
        self, messages: Sequence[Message], *, tools: Sequence[Mapping[str, Any]] | None = None
    ) -> TrimResult:
        """Return the edited conversation, its exact count and what was cleared."""
        system, rest = split_system(messages)
        units = group_units(rest)
        names = {c.id: c.name for m in rest for c in m.tool_calls if c.id}
        results = [m for u in units for m in u.messages if m.role == "tool"]
        current_ids = {id(m) for m in units[-1].messages} if units else set()
        older = results[: max(0, len(results) - self.keep_tool_results)]
        clear = {
            id(m) for m in older if id(m) not in current_ids
        }  # the current turn is never edited
        edited: list[Message] = list(system)
        cleared: list[Dropped] = []
        for unit in units:
            current = unit is units[-1]
            for m in unit.messages:
                note = self._placeholder(m, names, unit.index) if id(m) in clear else None
                if note is not None:
                    note_text, tokens = note
                    edited.append(replace(m, content=(TextPart(text=note_text),)))
                    cleared.append(
                        Dropped(
                            zone="history",
                            what=f"tool result {m.tool_call_id}",
                            tokens=tokens,
                            reason=f"older than the {self.keep_tool_results} newest tool results",
                        )
                    )
                elif (
                    self.clear_reasoning
                    and not current
                    and any(isinstance(p, ReasoningPart) for p in m.parts)
                ):
                    kept = tuple(p for p in m.parts if not isinstance(p, ReasoningPart))
                    tokens = sum(
                        self.counter.count(p.text) for p in m.parts if isinstance(p, ReasoningPart)
                    )
                    edited.append(replace(m, content=kept))
                    cleared.append(
                        Dropped(
                            zone="history",
                            what=f"reasoning of turn {unit.index}",
                            tokens=tokens,
                            reason="reasoning of earlier turns is not needed as input",
                        )
                    )
                else:
                    edited.append(m)
        return TrimResult(
            messages=tuple(edited),
            tokens=self.counter.count_messages(edited, tools=tools),
            dropped=tuple(cleared),
            kept_units=len(units),
        )

    def fit_turn(
        self,
        system: Sequence[Message],
        turn: Sequence[Message],
        limit: int,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> tuple[list[Message], list[Dropped]]:
        """Clear the current turn's older tool results, oldest first, until the request fits.

        For an agent's tool loop inside one turn: the results answering the newest assistant
        message with tool calls (the ones the model is about to read) and the user's message are
        never touched; every older result becomes the same placeholder as in :meth:`edit`, keeping
        its ``tool_call_id``, so every call still has its result. Clearing stops as soon as
        ``system + turn`` (with ``tools``) counts at most ``limit`` tokens.

        Returns:
            The turn (edited copies where cleared; the input is untouched) and what was cleared.
            The caller checks whether it now fits: when even clearing every older result is not
            enough, the returned turn is still over ``limit``.
        """
        edited = list(turn)
        last_calls = max(
            (i for i, m in enumerate(edited) if m.role == "assistant" and m.tool_calls), default=-1
        )
        names = {c.id: c.name for m in edited for c in m.tool_calls if c.id}
        total = self.counter.count_messages([*system, *edited], tools=tools)
        cleared: list[Dropped] = []
        for i in range(1, max(last_calls, 0)):
            if total <= limit:
                break
            message = edited[i]
            if message.role not in ("tool", "function"):
                continue
            note = self._placeholder(message, names, None)
            if note is None:
                continue
            note_text, tokens = note
            replacement = replace(message, content=(TextPart(text=note_text),))
            total += self.counter.count_message(replacement) - self.counter.count_message(message)
            edited[i] = replacement
            cleared.append(
                Dropped(
                    zone="history",
                    what=f"tool result {message.tool_call_id} of the current turn",
                    tokens=tokens,
                    reason="an older tool result of this turn; the request was over its budget",
                )
            )
        return edited, cleared
