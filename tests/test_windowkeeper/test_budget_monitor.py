from __future__ import annotations

import logging

import pytest
from windowkeeper import (
    Budget,
    BudgetExceededError,
    Dropped,
    InvalidConfigError,
    UtilizationMonitor,
)


def test_seed_worked_example() -> None:
    budget = Budget(context_window=128_000, generation_reserve=1_500)
    assert budget.headroom({"system": 1_400, "tools": 800}) == 124_300


@pytest.mark.parametrize(
    ("prompt", "level"),
    [
        (89_599, "ok"),
        (89_600, "alert"),
        (102_399, "alert"),
        (102_400, "act"),
        (126_500, "act"),
        (126_501, "overflow"),
    ],
)
def test_levels_at_the_thresholds(prompt: int, level: str) -> None:
    budget = Budget(context_window=128_000, generation_reserve=1_500)
    report = budget.report({"history": prompt})
    assert report.level == level
    assert report.utilization == prompt / 128_000
    assert report.headroom == 126_500 - prompt


def test_report_lists_zones_limits_and_drops() -> None:
    budget = Budget(context_window=10_000, generation_reserve=1_000, zone_limits={"rag": 2_000})
    dropped = (Dropped(zone="rag", what="chunk a", tokens=500, reason="rag over its limit"),)
    report = budget.report({"system": 500, "rag": 2_500, "user": 50}, dropped=dropped)
    assert report.zones["reserve"] == 1_000
    assert report.prompt_tokens == 3_050
    assert report.over_limit == ("rag",)
    assert report.to_dict()["dropped"][0]["what"] == "chunk a"


def test_custom_thresholds() -> None:
    budget = Budget(
        context_window=1_000, generation_reserve=0, alert_threshold=0.5, act_threshold=0.6
    )
    assert budget.report({"history": 550}).level == "alert"
    assert budget.report({"history": 600}).level == "act"


def test_for_model_uses_the_profile() -> None:
    budget = Budget.for_model("gpt-4o")
    assert (budget.context_window, budget.generation_reserve, budget.model) == (
        128_000,
        4_096,
        "gpt-4o",
    )
    assert Budget.for_model("gpt-4-turbo").effective_window == 64_000
    report = Budget.for_model("gpt-4-turbo").report({"history": 70_000})
    assert report.over_effective_window


def test_require_fits_names_zone_and_amount() -> None:
    budget = Budget(context_window=4_000, generation_reserve=1_000, zone_limits={"system": 500})
    with pytest.raises(BudgetExceededError) as info:
        budget.require_fits({"system": 400, "user": 3_000})
    assert (info.value.required, info.value.limit, info.value.zone) == (4_400, 4_000, "total")
    assert "over by 400" in str(info.value)
    with pytest.raises(BudgetExceededError, match="system"):
        budget.require_fits({"system": 600})
    budget.require_fits({"system": 500, "user": 2_500})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (
            {"generation_reserve": -5},
            r"generation_reserve must be between 0 and context_window \(128000\).*-5",
        ),
        ({"generation_reserve": 128_000}, "generation_reserve"),
        ({"context_window": 0}, "context_window"),
        ({"zone_limits": {"reserve": 5}}, "zone_limits keys"),
        ({"zone_limits": {"rag": -1}}, r"zone_limits\['rag'\]"),
        ({"alert_threshold": 0.9, "act_threshold": 0.8}, "alert_threshold must be <="),
        ({"act_threshold": 1.5}, "act_threshold"),
        ({"effective_window": 200_000}, "effective_window"),
    ],
)
def test_budget_validation(kwargs: dict, needle: str) -> None:  # type: ignore[type-arg]
    base = {"context_window": 128_000, "generation_reserve": 1_500}
    with pytest.raises(InvalidConfigError, match=needle):
        Budget(**{**base, **kwargs})


def test_report_rejects_unknown_zones() -> None:
    with pytest.raises(InvalidConfigError, match="zones keys"):
        Budget(context_window=100, generation_reserve=0).report({"memory": 5})


# ------------------------------------------------------------------------------------- monitor


def _budget() -> Budget:
    return Budget(context_window=1_000, generation_reserve=100, model="m")


def test_monitor_fires_the_callback_of_each_level() -> None:
    seen: list[tuple[str, int]] = []
    monitor = UtilizationMonitor(
        on_alert=lambda r: seen.append(("alert", r.report.prompt_tokens)),
        on_act=lambda r: seen.append(("act", r.report.prompt_tokens)),
        on_overflow=lambda r: seen.append(("overflow", r.report.prompt_tokens)),
        metrics="off",
    )
    for tokens in (100, 700, 750, 800, 950):
        monitor.record(_budget().report({"history": tokens}))
    assert seen == [("alert", 700), ("alert", 750), ("act", 800), ("overflow", 950)]


def test_edge_triggered_monitor_fires_on_rises_only() -> None:
    seen: list[int] = []
    monitor = UtilizationMonitor(
        on_alert=lambda r: seen.append(r.report.prompt_tokens), edge_triggered=True, metrics="off"
    )
    for tokens in (700, 750, 100, 720):
        monitor.record(_budget().report({"history": tokens}))
    assert seen == [700, 720]


def test_monitor_logs_with_level_severity(caplog: pytest.LogCaptureFixture) -> None:
    monitor = UtilizationMonitor(metrics="off")
    with caplog.at_level(logging.DEBUG, logger="windowkeeper.monitor"):
        monitor.record(_budget().report({"history": 100}))
        monitor.record(_budget().report({"history": 850}), label="s1")
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.WARNING]
    assert "[s1]" in caplog.records[1].getMessage()


def test_summary_and_quality_buckets() -> None:
    monitor = UtilizationMonitor(metrics="off", buckets=(0.0, 0.5, 1.0))
    for tokens, quality in ((100, 0.9), (200, 0.7), (600, 0.4), (900, None)):
        monitor.record(_budget().report({"history": tokens}), quality=quality)
    monitor.add_quality(0.2)
    summary = monitor.summary()
    assert summary.requests == 4
    assert summary.levels == {"ok": 3, "alert": 0, "act": 1, "overflow": 0}
    assert summary.max_utilization == 0.9
    low, high = summary.quality_by_utilization
    assert (low.count, low.mean_quality) == (2, pytest.approx(0.8))
    assert (high.count, high.mean_quality) == (2, pytest.approx(0.3))
    assert summary.mean_zone_tokens["history"] == pytest.approx(450)


def test_monitor_exports_opentelemetry_metrics() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monitor = UtilizationMonitor(metrics="on")
    monitor._instruments = (  # use a private provider instead of the process-global one
        provider.get_meter("windowkeeper").create_histogram("windowkeeper.context.utilization"),
        provider.get_meter("windowkeeper").create_histogram("windowkeeper.context.tokens"),
    )
    monitor.record(_budget().report({"system": 50, "history": 700}))
    data = reader.get_metrics_data()
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    util = metrics["windowkeeper.context.utilization"].data.data_points[0]
    assert util.sum == pytest.approx(0.75)
    assert util.attributes["level"] == "alert"
    zones = {
        p.attributes["zone"]: p.sum for p in metrics["windowkeeper.context.tokens"].data.data_points
    }
    assert zones["history"] == 700
    assert zones["system"] == 50


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"history": 0}, "history"),
        ({"buckets": (0.5,)}, "buckets"),
        ({"buckets": (0.5, 0.2)}, "buckets"),
        ({"metrics": "maybe"}, "metrics"),
        ({"on_act": 5}, "on_act"),
    ],
)
def test_monitor_validation(kwargs: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidConfigError, match=needle):
        UtilizationMonitor(**kwargs)
