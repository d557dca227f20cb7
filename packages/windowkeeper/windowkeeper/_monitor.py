"""The utilization monitor: records each request's report, fires callbacks, logs, exports metrics."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from windowkeeper._budget import LEVELS, PROMPT_ZONES, BudgetReport, Level
from windowkeeper.exceptions import InvalidConfigError

__all__ = ["MonitorSummary", "QualityBucket", "Record", "UtilizationMonitor"]

logger = logging.getLogger("windowkeeper.monitor")

Callback = Callable[["Record"], object]
_LOG_LEVELS = {
    "ok": logging.DEBUG,
    "alert": logging.INFO,
    "act": logging.WARNING,
    "overflow": logging.ERROR,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """One request as the monitor saw it."""

    report: BudgetReport
    """The request's budget report."""
    timestamp: float
    """``time.time()`` when recorded."""
    quality: float | None = None
    """A quality signal the app reported for this request (any scale, higher is better)."""
    label: str | None = None
    """Free label (session, route, ...)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class QualityBucket:
    """Quality signals of requests whose utilization fell in ``[low, high)``."""

    low: float
    """Lower utilization bound (inclusive)."""
    high: float
    """Upper utilization bound (exclusive, except the last bucket)."""
    count: int
    """Requests with a quality signal in the bucket."""
    mean_quality: float | None
    """Their mean quality, or ``None`` when empty."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MonitorSummary:
    """Utilization over the recorded requests."""

    requests: int
    """Requests recorded (within the monitor's history)."""
    mean_utilization: float
    """Mean utilization."""
    p95_utilization: float
    """95th percentile of utilization."""
    max_utilization: float
    """Highest utilization."""
    levels: dict[Level, int]
    """Requests per level."""
    mean_zone_tokens: dict[str, float]
    """Mean tokens per prompt zone."""
    quality_by_utilization: tuple[QualityBucket, ...]
    """Quality signals bucketed by utilization."""


class UtilizationMonitor:
    """Watches utilization over time.

    Each :meth:`record` logs the report through ``logging`` (DEBUG for ok, INFO alert, WARNING act,
    ERROR overflow), calls the callback for its level, and, when ``opentelemetry-api`` is installed,
    records ``windowkeeper.context.utilization`` (histogram) and ``windowkeeper.context.tokens``
    (histogram, attribute ``zone``) on the global meter provider.

    Args:
        on_alert: Called with the :class:`Record` of every request at ``alert``.
        on_act: Called at ``act``.
        on_overflow: Called at ``overflow``.
        edge_triggered: Call back only when the level rises above the previous request's level.
        history: Requests kept for :meth:`summary`.
        buckets: Utilization bucket edges for the quality summary.
        metrics: ``"auto"`` (use OpenTelemetry if installed), ``"off"``, or ``"on"`` (require it).

    Example:
        >>> from windowkeeper import Budget
        >>> alerts = []
        >>> mon = UtilizationMonitor(on_act=alerts.append, metrics="off")
        >>> _ = mon.record(Budget(context_window=1000, generation_reserve=100).report({"history": 850}))
        >>> alerts[0].report.level
        'act'
    """

    def __init__(
        self,
        *,
        on_alert: Callback | None = None,
        on_act: Callback | None = None,
        on_overflow: Callback | None = None,
        edge_triggered: bool = False,
        history: int = 10_000,
        buckets: Sequence[float] = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 1.0),
        metrics: str = "auto",
    ) -> None:
        if history < 1:
            raise InvalidConfigError(f"history must be >= 1; got {history!r}")
        edges = list(buckets)
        if (
            len(edges) < 2
            or edges != sorted(edges)
            or edges[0] < 0
            or len(set(edges)) != len(edges)
        ):
            raise InvalidConfigError(
                f"buckets must be at least two increasing utilization edges >= 0; got {buckets!r}"
            )
        if metrics not in ("auto", "on", "off"):
            raise InvalidConfigError(f"metrics must be 'auto', 'on' or 'off'; got {metrics!r}")
        for label, cb in (("on_alert", on_alert), ("on_act", on_act), ("on_overflow", on_overflow)):
            if cb is not None and not callable(cb):
                raise InvalidConfigError(f"{label} must be callable or None; got {cb!r}")
        self._callbacks: dict[Level, Callback | None] = {
            "alert": on_alert,
            "act": on_act,
            "overflow": on_overflow,
        }
        self._edge = edge_triggered
        self._edges = edges
        self._records: deque[Record] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._last_level: Level = "ok"
        self._instruments = (
            _otel_instruments(required=metrics == "on") if metrics != "off" else None
        )

    def record(
        self, report: BudgetReport, *, quality: float | None = None, label: str | None = None
    ) -> Record:
        """Record a request's report; fires the level's callback and exports metrics."""
        rec = Record(report=report, timestamp=time.time(), quality=quality, label=label)
        with self._lock:
            self._records.append(rec)
            previous, self._last_level = self._last_level, report.level
        logger.log(
            _LOG_LEVELS[report.level],
            "context %s: %d/%d tokens (%.1f%%)%s",
            report.level,
            report.prompt_tokens,
            report.context_window,
            100 * report.utilization,
            f" [{label}]" if label else "",
        )
        if self._instruments is not None:
            utilization, tokens = self._instruments
            attrs = {"level": report.level, "model": report.model or "unknown"}
            utilization.record(report.utilization, attributes=attrs)
            for zone in PROMPT_ZONES:
                tokens.record(report.zones[zone], attributes={**attrs, "zone": zone})
        callback = self._callbacks.get(report.level)
        rising = LEVELS.index(report.level) > LEVELS.index(previous)
        if callback is not None and (rising or not self._edge):
            callback(rec)
        return rec

    def add_quality(self, quality: float, *, index: int = -1) -> None:
        """Attach a quality signal to an already recorded request (the latest by default)."""
        with self._lock:
            rec = self._records[index]
            self._records[index] = Record(
                report=rec.report, timestamp=rec.timestamp, quality=quality, label=rec.label
            )

    @property
    def records(self) -> tuple[Record, ...]:
        """The recorded requests, oldest first."""
        with self._lock:
            return tuple(self._records)

    def summary(self) -> MonitorSummary:
        """Utilization statistics and quality by utilization bucket."""
        records = self.records
        utils = [r.report.utilization for r in records]
        levels: dict[Level, int] = dict.fromkeys(LEVELS, 0)
        for r in records:
            levels[r.report.level] += 1
        zone_means: dict[str, float] = {
            z: (statistics.fmean(r.report.zones[z] for r in records) if records else 0.0)
            for z in PROMPT_ZONES
        }
        buckets = []
        for i, (low, high) in enumerate(zip(self._edges, self._edges[1:], strict=False)):
            last = i == len(self._edges) - 2
            qs = [
                r.quality
                for r in records
                if r.quality is not None
                and low <= r.report.utilization
                and (r.report.utilization < high or (last and r.report.utilization >= high))
            ]
            buckets.append(
                QualityBucket(
                    low=low,
                    high=high,
                    count=len(qs),
                    mean_quality=statistics.fmean(qs) if qs else None,
                )
            )
        return MonitorSummary(
            requests=len(records),
            mean_utilization=statistics.fmean(utils) if utils else 0.0,
            p95_utilization=_percentile(utils, 0.95),
            max_utilization=max(utils, default=0.0),
            levels=levels,
            mean_zone_tokens=zone_means,
            quality_by_utilization=tuple(buckets),
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _otel_instruments(*, required: bool) -> tuple[Any, Any] | None:
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        if required:
            raise ImportError(
                "metrics='on' needs OpenTelemetry: pip install 'windowkeeper[otel]'"
            ) from exc
        return None
    meter = metrics.get_meter("windowkeeper")
    return (
        meter.create_histogram(
            "windowkeeper.context.utilization",
            unit="1",
            description="Prompt tokens divided by the context window, per request",
        ),
        meter.create_histogram(
            "windowkeeper.context.tokens",
            unit="{token}",
            description="Prompt tokens per zone, per request",
        ),
    )
