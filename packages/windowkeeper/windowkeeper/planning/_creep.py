"""Context-creep projection: how many turns until the window reaches a threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from windowkeeper._checks import check_int, check_number
from windowkeeper.exceptions import InvalidConfigError

__all__ = ["CreepProjection", "fit_creep", "project_creep"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CreepProjection:
    """Tokens the window holds after each turn, and when thresholds are crossed.

    The model: after turn ``n`` the window holds ``fixed + n × per_turn`` tokens, where ``per_turn`` is
    what every turn leaves behind (RAG chunks, the user message and the reply), since history is
    re-sent every turn.

    Example:
        >>> p = project_creep(context_window=128_000, fixed=1_800, rag_per_turn=800,
        ...                   user_per_turn=60, reply_per_turn=350)
        >>> p.turns_until(0.8)
        84
    """

    context_window: int
    """The window."""
    fixed: float
    """Tokens present from the first turn (system prompt, tool schemas)."""
    per_turn: float
    """Tokens each turn adds for good."""

    def tokens_after(self, turn: int) -> float:
        """Tokens the window holds after ``turn`` turns."""
        return self.fixed + turn * self.per_turn

    def turns_until(self, threshold: float) -> int | None:
        """First turn after which utilization is at least ``threshold``; ``None`` if never.

        ``threshold`` is a share of the window, above 0 and at most 1 (1 is the full window; a
        prompt can never be longer). Returns 0 when the fixed part alone already reaches it.

        Raises:
            InvalidConfigError: ``threshold`` is not a number in (0, 1].
        """
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1  # also refuses NaN
        ):
            raise InvalidConfigError(
                f"threshold must be a share of the window in (0, 1]; got {threshold!r}"
            )
        target = threshold * self.context_window
        if self.fixed >= target:
            return 0
        if self.per_turn <= 0:
            return None
        return math.ceil((target - self.fixed) / self.per_turn - 1e-9)

    def utilization_after(self, turn: int) -> float:
        """Utilization after ``turn`` turns."""
        return self.tokens_after(turn) / self.context_window


def project_creep(
    *,
    context_window: int,
    fixed: int,
    rag_per_turn: int = 0,
    user_per_turn: int = 0,
    reply_per_turn: int = 0,
) -> CreepProjection:
    """Project creep from per-turn averages (the seed calculator).

    Args:
        context_window: The model's window.
        fixed: System prompt plus tool schemas.
        rag_per_turn: Retrieved-chunk tokens added each turn (and kept in history).
        user_per_turn: Average user message tokens.
        reply_per_turn: Average reply tokens (tool calls and results included).
    """
    check_int("context_window", context_window, 1)
    for label, value in (
        ("fixed", fixed),
        ("rag_per_turn", rag_per_turn),
        ("user_per_turn", user_per_turn),
        ("reply_per_turn", reply_per_turn),
    ):
        check_number(label, value, 0.0, finite=True)
    return CreepProjection(
        context_window=context_window,
        fixed=fixed,
        per_turn=rag_per_turn + user_per_turn + reply_per_turn,
    )


def fit_creep(prompt_tokens_per_turn: Sequence[int], *, context_window: int) -> CreepProjection:
    """Fit the creep line to the prompt sizes observed at turns 1, 2, 3, ... (least squares).

    Example:
        >>> fit_creep([3_000, 4_000, 5_000, 6_000], context_window=10_000).per_turn
        1000.0
    """
    n = len(prompt_tokens_per_turn)
    if n < 2:
        raise InvalidConfigError(
            f"prompt_tokens_per_turn needs at least 2 turns to fit a slope; got {n}"
        )
    check_int("context_window", context_window, 1)
    for i, tokens in enumerate(prompt_tokens_per_turn):
        check_number(f"prompt_tokens_per_turn[{i}]", tokens, 0.0, finite=True)
    xs = range(1, n + 1)
    mean_x = (n + 1) / 2
    mean_y = sum(prompt_tokens_per_turn) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, prompt_tokens_per_turn, strict=True))
    slope = sxy / sxx
    return CreepProjection(
        context_window=context_window, fixed=mean_y - slope * mean_x, per_turn=slope
    )
