"""The token window: the newest whole units that fit a token budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from windowkeeper._budget import Dropped
from windowkeeper._messages import Message
from windowkeeper._units import Unit, group_units, split_system
from windowkeeper.exceptions import BudgetExceededError, InvalidConfigError
from windowkeeper.memory._base import fit_newest, older_dropped
from windowkeeper.tokens._counter import TokenCounter

__all__ = ["TokenWindow", "TrimResult"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TrimResult:
    """What a strategy returns: new messages, their exact count, and what was left out."""

    messages: tuple[Message, ...]
    """The messages to send (new list; the input is untouched)."""
    tokens: int
    """Exact prompt tokens of ``messages`` (with tools, if given)."""
    dropped: tuple[Dropped, ...]
    """Units left out, oldest first."""
    kept_units: int
    """Units kept."""


class TokenWindow:
    """Keep the newest whole units that fit ``max_tokens``; never drop the system prompt or the last unit.

    Counts are exact (the counter's, overhead included). Units are kept contiguously from the newest
    back, so the model never sees a gap in the recent conversation; a unit is kept or dropped whole,
    so a tool call never loses its result.

    Args:
        counter: Counts tokens for the target model.
        max_tokens: Prompt tokens the result may use (system, tools and history together).

    Example:
        >>> window = TokenWindow(TokenCounter("gpt-4o"), max_tokens=60)
        >>> msgs = [Message(role="system", content="Be brief.")]
        >>> for i in range(10):
        ...     msgs += [Message(role="user", content=f"question {i}"),
        ...              Message(role="assistant", content=f"answer {i}")]
        >>> result = window.trim(msgs)
        >>> result.tokens <= 60, result.messages[0].role, result.messages[-2].text
        (True, 'system', 'question 9')
    """

    def __init__(self, counter: TokenCounter, *, max_tokens: int) -> None:
        if not isinstance(counter, TokenCounter):
            raise InvalidConfigError(
                f"counter must be a TokenCounter; got {type(counter).__name__}"
            )
        if not isinstance(max_tokens, int) or max_tokens <= 0:
            raise InvalidConfigError(f"max_tokens must be a positive int; got {max_tokens!r}")
        self.counter = counter
        self.max_tokens = max_tokens

    def unit_tokens(self, unit: Unit) -> int:
        """Exact tokens a unit adds to a request."""
        return sum(self.counter.count_message(m) for m in unit.messages)

    def select(self, units: Sequence[Unit], budget: int) -> tuple[list[Unit], list[Dropped]]:
        """The newest contiguous units whose tokens fit ``budget``, and what was left out.

        The last unit is always kept (it holds the current user message); the caller checks that it fits.
        """
        if not units:
            return [], []
        costs = [self.unit_tokens(u) for u in units]
        # the last unit is always kept; the newest of the others that fit what it leaves
        cut = fit_newest(costs[:-1], budget - costs[-1])
        dropped = older_dropped(units, costs, cut)
        return list(units[cut:]), dropped

    def trim(
        self, messages: Sequence[Message], *, tools: Sequence[Mapping[str, Any]] | None = None
    ) -> TrimResult:
        """Trim a conversation (system messages first, then user turns) to ``max_tokens``.

        Raises:
            BudgetExceededError: The system prompt, tools and the last unit alone do not fit.
            InvalidMessageError: Broken tool pairs, or messages before the first user turn.
        """
        system, rest = split_system(messages)
        units = group_units(rest)
        fixed = self.counter.count_messages(system, tools=tools)  # includes reply priming and tools
        if not units:
            return TrimResult(messages=tuple(system), tokens=fixed, dropped=(), kept_units=0)
        kept, dropped = self.select(units, self.max_tokens - fixed)
        while True:
            out = [*system, *(m for u in kept for m in u.messages)]
            tokens = self.counter.count_messages(out, tools=tools)
            if tokens <= self.max_tokens or len(kept) == 1:
                break
            # a RAG chunk with the system role can move the tool block's system interaction
            oldest = kept.pop(0)
            dropped.append(
                Dropped(
                    zone="history",
                    what=f"unit {oldest.index}",
                    tokens=self.unit_tokens(oldest),
                    reason="did not fit with the tool block",
                )
            )
        if tokens > self.max_tokens:
            raise BudgetExceededError(
                required=tokens,
                limit=self.max_tokens,
                zone="history",
                detail="system prompt, tools and the current turn alone",
            )
        return TrimResult(
            messages=tuple(out), tokens=tokens, dropped=tuple(dropped), kept_units=len(kept)
        )
