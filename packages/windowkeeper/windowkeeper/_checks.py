"""Setting checks shared by every class that takes numbers: one wording for every message."""

from __future__ import annotations

import math

from windowkeeper.exceptions import InvalidConfigError

__all__ = ["check_int", "check_number"]


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` when it is an int (not a bool) from ``low`` (to ``high``), else a typed error.

    Example:
        >>> check_int("budget", -1, 0)
        Traceback (most recent call last):
        ...
        windowkeeper.exceptions.InvalidConfigError: budget must be an int >= 0; got -1
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        allowed = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidConfigError(f"{name} must be an int {allowed}; got {value!r}")
    return value


def check_number(
    name: str, value: object, low: float, high: float | None = None, *, finite: bool = False
) -> float:
    """``value`` as a float when it is a number (not a bool) from ``low`` (to ``high``).

    With ``finite``, infinity is refused too (NaN always is).

    Example:
        >>> check_number("b", 1.5, 0, 1)
        Traceback (most recent call last):
        ...
        windowkeeper.exceptions.InvalidConfigError: b must be a number from 0 to 1; got 1.5
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value >= low  # also refuses NaN
        or (high is not None and not value <= high)
    ):
        allowed = f"from {low} to {high}" if high is not None else f">= {low}"
        raise InvalidConfigError(f"{name} must be a number {allowed}; got {value!r}")
    if finite and value == math.inf:
        raise InvalidConfigError(f"{name} must be a finite number >= {low}; got {value!r}")
    return float(value)
