"""Calibration: learn how far our counts are from what the provider reports, per model."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from windowkeeper.exceptions import InvalidConfigError

__all__ = ["Calibration", "CalibrationStats", "prompt_tokens_from_usage"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CalibrationStats:
    """How our counts compared with provider-reported prompt tokens.

    Example:
        >>> c = Calibration(); c.observe(counted=100, reported=110); c.stats().factor
        1.1
    """

    observations: int
    """Number of requests compared."""
    factor: float
    """Reported ÷ counted, fitted over all observations (1.0 with none)."""
    mean_abs_error: float
    """Mean |reported − counted| in tokens, before correction."""
    max_abs_error: int
    """Largest |reported − counted| in tokens, before correction."""
    mean_rel_error: float
    """Mean |reported − counted| ÷ reported, before correction."""
    max_rel_error: float
    """Largest |reported − counted| ÷ reported, before correction."""
    max_rel_error_corrected: float
    """Largest relative error left after applying ``factor``: the band calibrated counts keep."""


class Calibration:
    """Collects (counted, reported) pairs and fits a multiplicative correction.

    Thread-safe. ``max_observations`` keeps the most recent pairs so a drifting provider is followed.

    Example:
        >>> c = Calibration()
        >>> c.observe(counted=1000, reported=1040)
        >>> c.correct(2000)
        2080
    """

    def __init__(self, *, max_observations: int = 1000) -> None:
        if max_observations < 1:
            raise InvalidConfigError(f"max_observations must be >= 1; got {max_observations!r}")
        self._max = max_observations
        self._pairs: list[tuple[int, int]] = []
        self._stats: CalibrationStats | None = None  # derived from _pairs; reset by observe()
        self._lock = threading.Lock()

    def observe(self, *, counted: int, reported: int) -> None:
        """Record one request: our count and the provider's ``prompt_tokens``."""
        if counted <= 0 or reported <= 0:
            raise InvalidConfigError(
                f"counted and reported must be positive token counts; got counted={counted!r}, "
                f"reported={reported!r}"
            )
        with self._lock:
            self._pairs.append((counted, reported))
            if len(self._pairs) > self._max:
                del self._pairs[: len(self._pairs) - self._max]
            self._stats = None

    def stats(self) -> CalibrationStats:
        """The fitted factor and the observed errors."""
        with self._lock:
            if self._stats is None:
                self._stats = _fit(self._pairs)
            return self._stats

    def correct(self, tokens: int) -> int:
        """``tokens`` scaled by the fitted factor (unchanged with no observations)."""
        return round(tokens * self.stats().factor)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot, for persisting between runs."""
        with self._lock:
            return {"max_observations": self._max, "pairs": [list(p) for p in self._pairs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_dict` output."""
        calibration = cls(max_observations=int(data.get("max_observations", 1000)))
        for counted, reported in data.get("pairs", ()):
            calibration.observe(counted=int(counted), reported=int(reported))
        return calibration


def _fit(pairs: list[tuple[int, int]]) -> CalibrationStats:
    """Least-squares-through-the-totals factor and the raw and corrected errors."""
    if not pairs:
        return CalibrationStats(
            observations=0,
            factor=1.0,
            mean_abs_error=0.0,
            max_abs_error=0,
            mean_rel_error=0.0,
            max_rel_error=0.0,
            max_rel_error_corrected=0.0,
        )
    factor = sum(r for _, r in pairs) / sum(c for c, _ in pairs)
    abs_err = [abs(r - c) for c, r in pairs]
    rel_err = [abs(r - c) / r for c, r in pairs]
    corrected = [abs(r - c * factor) / r for c, r in pairs]
    return CalibrationStats(
        observations=len(pairs),
        factor=round(factor, 6),
        mean_abs_error=sum(abs_err) / len(pairs),
        max_abs_error=max(abs_err),
        mean_rel_error=sum(rel_err) / len(pairs),
        max_rel_error=max(rel_err),
        max_rel_error_corrected=max(corrected),
    )


def prompt_tokens_from_usage(usage: Any) -> int:
    """Read prompt tokens from a provider usage record.

    Accepts OpenAI ``usage`` (``prompt_tokens``, dict or object), LangChain ``usage_metadata``
    (``input_tokens``) and Anthropic ``usage`` (``input_tokens`` plus cache reads and writes).

    Example:
        >>> prompt_tokens_from_usage({"prompt_tokens": 129, "completion_tokens": 12})
        129
    """

    def get(key: str) -> Any:
        return usage.get(key) if isinstance(usage, Mapping) else getattr(usage, key, None)

    prompt = get("prompt_tokens")
    if isinstance(prompt, int):
        return prompt
    total = get("input_tokens")
    if isinstance(total, int):
        extra = [get("cache_read_input_tokens"), get("cache_creation_input_tokens")]
        return total + sum(x for x in extra if isinstance(x, int))
    raise InvalidConfigError(
        "usage must carry 'prompt_tokens' (OpenAI) or 'input_tokens' (LangChain, Anthropic); "
        f"got {usage!r}"
    )
