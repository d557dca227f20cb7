"""Helpers the benchmarks share: taking turns so that drift on a busy machine hits every variant."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
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


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank; with 50 values the p99 is the slowest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table: two decimals below 100 ms."""
    v = seconds * 1e3
    return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"


def machine(packages: Sequence[str]) -> str:
    """Cores, CPU model, memory, Python and the versions of ``packages``."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    libs = ", ".join(f"{p} {version(p)}" for p in packages)
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB, Python {sys.version.split()[0]}, {libs}"


def load() -> str:
    """The load averages, to read beside timings taken on a shared machine."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def overrides(text: str) -> dict[str, float | int]:
    """``key=value,...`` as keyword overrides, e.g. of ``RecallSettings`` (a dotted value is a float)."""
    out: dict[str, float | int] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key.strip()] = float(value) if "." in value else int(value)
    return out
