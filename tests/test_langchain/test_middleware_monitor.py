"""The middleware's report reaches the monitor (callbacks fire) and the prefix stays byte-stable."""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_windowkeeper import WindowkeeperMiddleware
from langgraph.checkpoint.memory import InMemorySaver
from windowkeeper import Budget, Record, UtilizationMonitor


def test_monitor_callbacks_fire_and_the_prefix_is_byte_stable() -> None:
    alerts: list[Record] = []
    acts: list[Record] = []
    monitor = UtilizationMonitor(on_alert=alerts.append, on_act=acts.append, metrics="off")
    middleware = WindowkeeperMiddleware(
        "gpt-4o",
        budget=Budget(context_window=700, generation_reserve=100),
        memory="window",
        monitor=monitor,
    )
    agent = create_agent(
        FakeListChatModel(responses=["Noted, thank you. " * 20] * 30),
        system_prompt="You are Acme's support agent.",
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "t"}}
    fingerprints = []
    for i in range(12):
        state = agent.invoke({"messages": [("user", f"Question {i}: " + "detail " * 30)]}, config)
        record = state["windowkeeper"]
        fingerprints.append(record["prefix_fingerprint"])
        assert record["report"]["prompt_tokens"] <= 600
    assert len(set(fingerprints)) == 1  # system prompt and tools unchanged: cacheable prefix
    records = monitor.records
    assert len(records) == 12  # one per model call
    assert alerts or acts  # the history filled the window past 70 %
    assert all(r.label == "t" for r in records)  # labelled with the thread
    assert {r.report.level for r in [*alerts, *acts]} <= {"alert", "act"}
    middleware.close()
