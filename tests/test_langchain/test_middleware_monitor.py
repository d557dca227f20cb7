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


def test_context_editing_clears_older_tool_results_in_the_shown_history() -> None:
    from langchain.agents.middleware.types import ModelRequest
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    history = []
    for i in range(4):
        call = {"name": "lookup", "args": {"id": str(i)}, "id": f"c{i}"}
        history += [
            HumanMessage(f"Order {i}?", id=f"h{i}"),
            AIMessage("", tool_calls=[call], id=f"a{i}"),
            ToolMessage(f"record {i} " * 150, tool_call_id=f"c{i}", id=f"t{i}"),
            AIMessage(f"Order {i} ships today.", id=f"r{i}"),
        ]
    new = HumanMessage("And the next one?", id="h-new")
    middleware = WindowkeeperMiddleware("gpt-4o", memory="window", keep_tool_results=1)
    sent = []

    def handler(request: ModelRequest) -> AIMessage:
        sent.append(request)
        return AIMessage("ok")

    request = ModelRequest(
        model=FakeListChatModel(responses=["ok"]), messages=[*history, new], runtime=None
    )
    middleware.wrap_model_call(request, handler)
    results = [m for m in sent[0].messages if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in results] == ["c0", "c1", "c2", "c3"]  # every call answered
    cleared = [m for m in results if str(m.content).startswith("[tool result cleared: lookup")]
    assert [m.tool_call_id for m in cleared] == ["c0", "c1", "c2"]  # only the newest kept
    assert sent[0].messages[-1] is new
    stored = middleware.engine.memory("default").units  # type: ignore[attr-defined]
    assert stored[0].messages[2].text.startswith("record 0")  # the store keeps them verbatim
    middleware.close()
