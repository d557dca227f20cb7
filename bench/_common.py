"""Helpers the benchmarks share: taking turns so that drift on a busy machine hits every variant."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def rotated(items: Sequence[T], r: int) -> list[T]:
    """``items`` starting at position ``r`` (wrapping): round ``r`` of a take-turns schedule."""
    k = r % len(items)
    return [*items[k:], *items[:k]]


def interleaved(fns: list[Callable[[], object]], repeat: int) -> list[list[float]]:
    """Seconds of each function per round; the functions take turns so drift hits all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeat):
        for i in rotated(range(len(fns)), r):
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return times
