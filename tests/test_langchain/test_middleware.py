"""WindowkeeperMiddleware with the real ``create_agent``: every request the model receives is checked.

The model is a scripted fake that records each request (messages and bound tools); the checks
convert what it received with the adapter and count it with the core, so "within budget" means
the exact gpt-4o count of what was sent, tools included.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_windowkeeper import WindowkeeperMiddleware, to_core_messages
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from windowkeeper import (
    Budget,
    BudgetExceededError,
    InvalidConfigError,
    RetryPolicy,
    TokenCounter,
    validate_tool_pairs,
)

from tests.test_langchain.fakes import (
    USAGE_OFFSET,
    RecordingChatModel,
    current_turn,
    plain_answer,
    sequential_calls,
)

CORE = TokenCounter("gpt-4o")
SYSTEM = "You are the support agent of Tidewater Outfitters. Answer from the tool results only."
SMALL = Budget(context_window=3000, generation_reserve=300)


@tool
def lookup_order(query: str) -> str:
    """Look up orders, shipments and deliveries matching the query."""
    return " ".join(
        f"Order {query}-{i}: shipped from the Leeds warehouse on day {i}, carrier NorthPost, "
        f"tracking NP{i:06d}, delivery window two to four working days."
        for i in range(4)
    )


@tool
def search_policies(query: str) -> str:
    """Search the refund, return and warranty policies."""
    return " ".join(
        f"Policy section {i} on {query}: items may be returned within 30 days in their original "
        "packaging; refunds go to the original payment method within five working days."
        for i in range(3)
    )


def log_tool(entries: int) -> BaseTool:
    """``read_log``: one page of a shipment log, ``entries`` lines long (29 lines: 411 tokens)."""

    def read_log(step: int) -> str:
        return f"Log page {step}: " + " ".join(
            f"entry {step}.{i} parcel scanned at depot {i % 7} status in transit"
            for i in range(entries)
        )

    return tool("read_log", description="Read one page of the shipment log.")(read_log)


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def middlewares() -> Iterator[list[WindowkeeperMiddleware]]:
    """Middlewares made by a test; their memories (and background workers) are closed after it."""
    made: list[WindowkeeperMiddleware] = []
    yield made
    for middleware in made:
        # (private: the public .sessions would build an engine that could not be built)
        if middleware.engine._sessions is not None:
            middleware.engine.sessions.close()
        close = getattr(middleware.engine.store, "close", None)
        if callable(close):
            close()


def make(made: list[WindowkeeperMiddleware], *args: Any, **kwargs: Any) -> WindowkeeperMiddleware:
    kwargs.setdefault("embeddings", None)
    middleware = WindowkeeperMiddleware(*args, **kwargs)
    made.append(middleware)
    return middleware


def config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def prompt_limit(budget: Budget) -> int:
    return budget.context_window - budget.generation_reserve


def exact_count(messages: list[BaseMessage], tools: list[dict[str, Any]]) -> int:
    return CORE.count_messages(to_core_messages(messages), tools=tools or None)


def check_request(
    messages: list[BaseMessage],
    tools: list[dict[str, Any]],
    *,
    limit: int,
    system: str,
    user: str,
) -> int:
    """The request's invariants; returns its exact count."""
    assert isinstance(messages[0], SystemMessage)
    assert messages[0].content == system  # the system prompt first, unchanged
    assert not any(isinstance(m, SystemMessage) and m.content == system for m in messages[1:])
    core = to_core_messages(messages)
    validate_tool_pairs(core, finished=True)  # no call without results, no result without call
    turn = current_turn(messages)
    assert turn, "the request has no user message"
    assert turn[0].content == user  # the user's message, byte for byte
    total = exact_count(messages, tools)
    assert total <= limit, f"request of {total} tokens over the limit {limit}"
    return total


def check_all(model: RecordingChatModel, *, limit: int, system: str, users: list[str]) -> list[int]:
    """Check every recorded request; ``users`` is the user message of each request, in order."""
    assert len(model.requests) == len(users)
    return [
        check_request(msgs, tools, limit=limit, system=system, user=user)
        for msgs, tools, user in zip(model.requests, model.request_tools, users, strict=True)
    ]


def question(i: int) -> str:
    topics = ["a late parcel", "a refund", "a broken zip", "a gift card", "an address change"]
    return f"Turn {i}: I need help with {topics[i % len(topics)]} on order TW-{1000 + i}."


# ---------------------------------------------------------------------------- 1. long run


@pytest.mark.parametrize(("memory", "turns"), [("window", 200), ("layered", 60)])
def test_long_conversation_stays_within_budget(
    middlewares: list[WindowkeeperMiddleware], memory: str, turns: int
) -> None:
    model = RecordingChatModel()
    middleware = make(middlewares, "gpt-4o", memory=memory, budget=SMALL)
    agent = create_agent(
        model,
        tools=[lookup_order, search_policies],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    users = []
    for i in range(turns):
        agent.invoke({"messages": [HumanMessage(question(i))]}, config("long"))
        users += [question(i)] * 2  # the tool call, then the answer
    counts = check_all(model, limit=prompt_limit(SMALL), system=SYSTEM, users=users)
    assert max(counts) > prompt_limit(SMALL) // 2  # the budget was really used, not avoided
    assert all(tools for tools in model.request_tools)  # the tools were sent every time

    # history comes along: the last request shows the previous turn
    last = model.requests[-1]
    assert question(turns - 2) in [m.text for m in last]
    assert len(last) < 5 * turns / 4  # bounded, while the thread keeps growing

    state = agent.get_state(config("long")).values
    messages = state["messages"]
    assert len(messages) == 5 * turns  # user, 2 calls, 2 results, answer: nothing erased
    humans = [m for m in messages if isinstance(m, HumanMessage)]
    assert [m.content for m in humans] == [question(i) for i in range(turns)]
    for r, request in enumerate(model.requests):  # the very message the user sent, id and all
        assert current_turn(request)[0] == humans[r // 2]
    assert sum(isinstance(m, ToolMessage) for m in messages) == 2 * turns
    assert all(not m.text.startswith("[tool result cleared") for m in messages)
    report = state["windowkeeper"]["report"]
    assert report["prompt_tokens"] <= prompt_limit(SMALL)
    assert report["level"] in ("ok", "alert", "act")
    assert len(middleware.engine.memory("long").units) == turns


# ---------------------------------------------------------------------------- 2. sync and async


def _run_checks(model: RecordingChatModel, users: list[str]) -> None:
    check_all(model, limit=prompt_limit(SMALL), system=SYSTEM, users=users)


def test_sync_invoke(middlewares: list[WindowkeeperMiddleware]) -> None:
    model = RecordingChatModel()
    middleware = make(middlewares, "gpt-4o", memory="layered", budget=SMALL)
    agent = create_agent(
        model,
        tools=[lookup_order],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    for i in range(3):
        out = agent.invoke({"messages": [HumanMessage(question(i))]}, config("sync"))
    _run_checks(model, [question(i) for i in range(3) for _ in range(2)])
    assert out["windowkeeper"]["report"]["prompt_tokens"] > 0
    assert out["messages"][-1].text.startswith("Here is what I found")


async def test_async_invoke(middlewares: list[WindowkeeperMiddleware]) -> None:
    model = RecordingChatModel()
    middleware = make(middlewares, "gpt-4o", memory="layered", budget=SMALL)
    agent = create_agent(
        model,
        tools=[lookup_order],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    for i in range(3):
        out = await agent.ainvoke({"messages": [HumanMessage(question(i))]}, config("async"))
    _run_checks(model, [question(i) for i in range(3) for _ in range(2)])
    assert out["windowkeeper"]["report"]["prompt_tokens"] > 0
    assert question(1) in [m.text for m in model.requests[-1]]  # earlier turns came along
    assert len(middleware.engine.memory("async").units) == 3


async def test_async_stream(middlewares: list[WindowkeeperMiddleware]) -> None:
    model = RecordingChatModel()
    middleware = make(middlewares, "gpt-4o", memory="window", budget=SMALL)
    agent = create_agent(
        model,
        tools=[lookup_order, search_policies],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    updates: list[dict[str, Any]] = []
    for i in range(3):
        async for chunk in agent.astream(
            {"messages": [HumanMessage(question(i))]}, config("stream"), stream_mode="updates"
        ):
            updates.append(chunk)
    _run_checks(model, [question(i) for i in range(3) for _ in range(2)])
    reports = [
        u[node]["windowkeeper"]["report"]
        for u in updates
        for node in u
        if isinstance(u[node], dict) and "windowkeeper" in u[node]
    ]
    assert len(reports) == 6  # one per model call, streamed with the model's update
    state = (await agent.aget_state(config("stream"))).values
    assert len(state["messages"]) == 15


# ---------------------------------------------------------------------------- 3. threads


def test_threads_never_see_each_other(middlewares: list[WindowkeeperMiddleware]) -> None:
    secret = "PERIWINKLE-4471"
    model = RecordingChatModel()
    middleware = make(middlewares, "gpt-4o", memory="layered", budget=SMALL)
    agent = create_agent(
        model,
        tools=[lookup_order],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    for i in range(4):
        a = f"[A] My locker code is {secret}, turn {i}." if i == 0 else f"[A] turn {i}"
        agent.invoke({"messages": [HumanMessage(a)]}, config("thread-a"))
        agent.invoke({"messages": [HumanMessage(f"[B] turn {i}")]}, config("thread-b"))
    seen = {"A": False, "B": False}
    for request in model.requests:
        owner = current_turn(request)[0].text[1]
        text = "\n".join(m.text for m in request) + "\n".join(
            str(c["args"]) for m in request if isinstance(m, AIMessage) for c in m.tool_calls
        )
        if owner == "B":
            assert secret not in text
            assert "[A]" not in text
        else:
            assert "[B]" not in text
        seen[owner] = seen[owner] or secret in text
    assert seen == {"A": True, "B": False}  # A's memory does carry the secret on
    assert len(middleware.engine.memory("thread-a").units) == 4
    assert len(middleware.engine.memory("thread-b").units) == 4


# ---------------------------------------------------------------------------- 4. restart


def _sqlite_agent(
    made: list[WindowkeeperMiddleware], tmp_path: Path, model: RecordingChatModel
) -> tuple[Any, WindowkeeperMiddleware, sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "checkpoints.db", check_same_thread=False)
    middleware = make(made, "gpt-4o", memory="layered", budget=SMALL, store=tmp_path / "wk.db")
    agent = create_agent(
        model,
        tools=[lookup_order],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=SqliteSaver(connection),
    )
    return agent, middleware, connection


def _shutdown(middleware: WindowkeeperMiddleware, connection: sqlite3.Connection) -> None:
    middleware.engine.sessions.close()
    middleware.engine.store.close()  # type: ignore[attr-defined]
    connection.close()


def test_restart_continues_the_thread(
    middlewares: list[WindowkeeperMiddleware], tmp_path: Path
) -> None:
    first = RecordingChatModel()
    agent, middleware, connection = _sqlite_agent(middlewares, tmp_path, first)
    for i in range(3):
        agent.invoke({"messages": [HumanMessage(question(i))]}, config("t"))
    assert len(middleware.engine.memory("t").units) == 3
    _shutdown(middleware, connection)

    second = RecordingChatModel()
    agent, middleware, connection = _sqlite_agent(middlewares, tmp_path, second)
    try:
        assert len(middleware.engine.memory("t").units) == 3  # read back from the file
        agent.invoke({"messages": [HumanMessage(question(3))]}, config("t"))
        check_all(second, limit=prompt_limit(SMALL), system=SYSTEM, users=[question(3)] * 2)
        sent = [m.text for m in second.requests[0]]
        assert all(question(i) in sent for i in range(3))  # the earlier turns came back
        units = middleware.engine.memory("t").units
        assert [u.messages[0].text for u in units] == [question(i) for i in range(4)]
        ids = [m.metadata["message_id"] for u in units for m in u.messages]
        assert len(ids) == len(set(ids)) == 20  # nothing stored twice
        state = agent.get_state(config("t")).values
        assert len(state["messages"]) == 20
    finally:
        connection.close()


@pytest.mark.parametrize(
    "restart",
    [
        False,
        True,
    ],
)
def test_content_blocks_in_history_stay_in_budget(
    middlewares: list[WindowkeeperMiddleware], tmp_path: Path, restart: bool
) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGR" * 300, "format": "wav"}}
    first = HumanMessage([{"type": "text", "text": "Listen to the voicemail."}, audio])
    notes = "Please also check these notes. " + "The parcel was left at the depot. " * 150
    model = RecordingChatModel(script=plain_answer)
    agent, middleware, connection = _sqlite_agent(middlewares, tmp_path, model)
    agent.invoke({"messages": [first]}, config("t"))
    if restart:
        _shutdown(middleware, connection)
        agent, middleware, connection = _sqlite_agent(middlewares, tmp_path, model)
    try:
        agent.invoke({"messages": [HumanMessage(notes)]}, config("t"))
        assert len(model.requests) == 2
        check_request(
            model.requests[1],
            model.request_tools[1],
            limit=prompt_limit(SMALL),
            system=SYSTEM,
            user=notes,
        )
    finally:
        connection.close()


# ---------------------------------------------------------------------------- 5. tool loops


LOOP_BUDGET = Budget(context_window=3500, generation_reserve=500)
LOOP_ASK = "Trace parcel TW-88 through the whole shipment log, page by page."


def _tool_loop(
    made: list[WindowkeeperMiddleware], entries: int, system: str = SYSTEM
) -> tuple[RecordingChatModel, Any]:
    model = RecordingChatModel(script=sequential_calls(10))
    middleware = make(made, "gpt-4o", memory="window", budget=LOOP_BUDGET)
    agent = create_agent(
        model,
        tools=[log_tool(entries)],
        system_prompt=system,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    return model, agent


def test_long_tool_loop_clears_older_results_of_the_turn(
    middlewares: list[WindowkeeperMiddleware],
) -> None:
    model, agent = _tool_loop(middlewares, 29)
    assert CORE.count(log_tool(29).invoke({"step": 1})) > 400
    out = agent.invoke({"messages": [HumanMessage(LOOP_ASK)]}, config("loop"))
    check_all(model, limit=prompt_limit(LOOP_BUDGET), system=SYSTEM, users=[LOOP_ASK] * 11)
    assert all(len(tools) == 1 for tools in model.request_tools)  # the tool stayed available

    for request in model.requests:
        results = [m for m in request if isinstance(m, ToolMessage)]
        if results:
            assert results[-1].text.startswith("Log page")  # what the model reads now: whole
        cleared = [m for m in results if m.text.startswith("[tool result cleared: read_log")]
        assert results[: len(cleared)] == cleared  # oldest first
    final = model.requests[-1]
    results = [m for m in final if isinstance(m, ToolMessage)]
    assert len(results) == 10  # cleared, never removed: every call keeps its result
    assert results[0].text.startswith("[tool result cleared: read_log, ")
    assert final[1].content == LOOP_ASK  # the user's message untouched
    # the checkpointed thread keeps every result whole
    kept = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert len(kept) == 10
    assert all(m.text.startswith("Log page") for m in kept)
    dropped = out["windowkeeper"]["report"]["dropped"]
    assert any("of the current turn" in d["what"] for d in dropped)


def test_tool_loop_keeps_its_tools_while_results_can_be_cleared(
    middlewares: list[WindowkeeperMiddleware],
) -> None:
    model, agent = _tool_loop(middlewares, 28)  # 397-token pages
    agent.invoke({"messages": [HumanMessage(LOOP_ASK)]}, config("loop"))
    check_all(
        model,
        limit=prompt_limit(LOOP_BUDGET),
        system=SYSTEM,
        users=[LOOP_ASK] * len(model.requests),
    )
    assert [len(tools) for tools in model.request_tools] == [1] * 11
    assert model.requests[-1][-1].text.startswith("Log page")


def test_tool_loop_that_cannot_fit_raises_with_the_shortfall(
    middlewares: list[WindowkeeperMiddleware],
) -> None:
    huge_system = "Follow the shipping handbook exactly. " * 450
    assert 2600 < CORE.count(huge_system) < prompt_limit(LOOP_BUDGET) - 100
    model, agent = _tool_loop(middlewares, 29, system=huge_system)
    with pytest.raises(BudgetExceededError, match=r"short by \d+") as info:
        agent.invoke({"messages": [HumanMessage(LOOP_ASK)]}, config("loop"))
    error = info.value
    assert error.zone == "total"
    assert error.limit == LOOP_BUDGET.context_window
    assert error.required > error.limit
    assert f"short by {error.required - error.limit}" in str(error)
    assert len(model.requests) == 1  # the first call fitted; the next could not
    assert exact_count(model.requests[0], model.request_tools[0]) <= prompt_limit(LOOP_BUDGET)


# ---------------------------------------------------------------------------- 6. tool selection


def _many_tools() -> list[BaseTool]:
    topics = {
        "weather": "Current weather and forecast for a city",
        "refund": "Refund an order to the original payment method",
        "shipping": "Shipping status and tracking of a parcel",
        "invoice": "Download the invoice of an order as PDF",
        "loyalty": "Loyalty points balance of a customer",
        "stock": "Stock level of a product in a warehouse",
        "coupon": "Validate a discount coupon code",
        "address": "Change the delivery address of an order",
        "review": "Post a product review for a customer",
        "warranty": "Open a warranty claim for a broken item",
        "giftcard": "Balance of a gift card",
        "newsletter": "Subscribe or unsubscribe from the newsletter",
    }
    made = []
    for name, description in topics.items():

        def run(query: str, _name: str = name) -> str:
            return f"{_name}: nothing found for {query}"

        made.append(tool(f"{name}_tool", description=description)(run))
    return made


def test_dynamic_tool_selection_shrinks_the_tools(
    middlewares: list[WindowkeeperMiddleware],
) -> None:
    tools = _many_tools()
    budget = Budget(context_window=3000, generation_reserve=300, zone_limits={"tools": 120})
    model = RecordingChatModel()
    middleware = make(middlewares, "gpt-4o", memory="window", budget=budget)
    agent = create_agent(
        model,
        tools=tools,
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    ask = "What is the weather forecast in Lisbon for my trip?"
    out = agent.invoke({"messages": [HumanMessage(ask)]}, config("tools"))
    check_all(model, limit=prompt_limit(budget), system=SYSTEM, users=[ask] * 2)
    for request, bound in zip(model.requests, model.request_tools, strict=True):
        assert 0 < len(bound) < len(tools)
        names = [t["function"]["name"] for t in bound]
        assert "weather_tool" in names  # the relevant tool is kept
        with_tools = exact_count(request, bound)
        assert with_tools - exact_count(request, []) <= 120
    report = out["windowkeeper"]["report"]
    dropped_tools = [d for d in report["dropped"] if d["zone"] == "tools"]
    assert len(dropped_tools) == len(tools) - len(model.request_tools[-1])
    assert out["windowkeeper"]["tools"] == [t["function"]["name"] for t in model.request_tools[-1]]


# ---------------------------------------------------------------------------- 7. bad input


def test_system_prompt_over_the_budget_is_refused(
    middlewares: list[WindowkeeperMiddleware],
) -> None:
    budget = Budget(context_window=1000, generation_reserve=200)
    model = RecordingChatModel()
    middleware = make(middlewares, "gpt-4o", memory="window", budget=budget)
    agent = create_agent(model, system_prompt="Always be thorough. " * 300, middleware=[middleware])
    with pytest.raises(BudgetExceededError, match=r"short by \d+") as info:
        agent.invoke({"messages": [HumanMessage("hi")]})
    assert info.value.required > info.value.limit == 1000
    assert model.requests == []  # nothing was sent


def test_unknown_memory_is_refused_by_value() -> None:
    with pytest.raises(InvalidConfigError, match="'nope'"):
        WindowkeeperMiddleware("gpt-4o", memory="nope")  # type: ignore[arg-type]


def test_model_without_a_name_needs_model(middlewares: list[WindowkeeperMiddleware]) -> None:
    model = RecordingChatModel(model_name=None, script=plain_answer)
    middleware = make(middlewares, memory="window")
    agent = create_agent(model, middleware=[middleware])
    with pytest.raises(InvalidConfigError, match=r"model is needed.*model='gpt-4o'"):
        agent.invoke({"messages": [HumanMessage("hi")]})
    assert model.requests == []
    # with the name given, the same model works
    named = make(middlewares, "gpt-4o", memory="window")
    out = create_agent(model, middleware=[named]).invoke({"messages": [HumanMessage("hi")]})
    assert out["windowkeeper"]["report"]["model"] == "gpt-4o"
    assert len(model.requests) == 1


def test_model_name_is_read_from_the_chat_model(
    middlewares: list[WindowkeeperMiddleware],
) -> None:
    model = RecordingChatModel(model_name="gpt-4o-mini", script=plain_answer)
    middleware = make(middlewares, memory="window")
    create_agent(model, middleware=[middleware]).invoke({"messages": [HumanMessage("hi")]})
    assert middleware.engine.counter.profile.name == "gpt-4o-mini"


# ---------------------------------------------------------------------------- 8. summaries


def test_failing_summariser_loses_no_turn(middlewares: list[WindowkeeperMiddleware]) -> None:
    calls: list[int] = []

    def broken(previous: str, units: Any) -> str:
        calls.append(len(units))
        return str(1 / 0)

    model = RecordingChatModel()
    middleware = make(
        middlewares,
        "gpt-4o",
        memory="summary",
        budget=SMALL,
        summarizer=broken,
        keep_last=2,
        min_batch=1,
        retry=RetryPolicy(attempts=1, initial_delay=0, max_delay=0, timeout=5),
    )
    agent = create_agent(
        model,
        tools=[lookup_order],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    turns = 8
    for i in range(turns):
        agent.invoke({"messages": [HumanMessage(question(i))]}, config("s"))
    memory = middleware.engine.memory("s")
    assert memory.flush(timeout=10)  # type: ignore[attr-defined]
    assert calls  # the summariser was tried ...
    assert memory.keeper.failures >= 1  # type: ignore[attr-defined]
    assert memory.summary == ""  # type: ignore[attr-defined]  # ... and nothing half-made kept
    units = memory.units  # type: ignore[attr-defined]
    assert [u.messages[0].text for u in units] == [question(i) for i in range(turns)]
    agent.invoke({"messages": [HumanMessage(question(turns))]}, config("s"))
    check_all(
        model,
        limit=prompt_limit(SMALL),
        system=SYSTEM,
        users=[question(i) for i in range(turns + 1) for _ in range(2)],
    )


def test_chat_model_summariser_runs_off_the_request_path(
    middlewares: list[WindowkeeperMiddleware],
) -> None:
    summariser = RecordingChatModel(
        script=lambda model, messages: AIMessage("NOTES: the customer asked about orders."),
        report_usage=False,
    )
    model = RecordingChatModel()
    threads: dict[str, set[int]] = {"model": set(), "summariser": set()}
    original = RecordingChatModel._generate

    def generate(self: RecordingChatModel, messages: list[BaseMessage], *a: Any, **k: Any) -> Any:
        threads["summariser" if self is summariser else "model"].add(threading.get_ident())
        return original(self, messages, *a, **k)

    middleware = make(
        middlewares,
        "gpt-4o",
        memory="summary",
        budget=SMALL,
        summarizer=summariser,
        keep_last=2,
        min_batch=2,
    )
    agent = create_agent(
        model,
        tools=[lookup_order],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RecordingChatModel, "_generate", generate)
        for i in range(6):
            agent.invoke({"messages": [HumanMessage(question(i))]}, config("s"))
        memory = middleware.engine.memory("s")
        assert memory.flush(timeout=20)  # type: ignore[attr-defined]
        agent.invoke({"messages": [HumanMessage(question(6))]}, config("s"))
    assert summariser.requests  # the chat model wrote the summary
    assert "NOTES: the customer asked about orders." in memory.summary  # type: ignore[attr-defined]
    assert threads["summariser"].isdisjoint(threads["model"])  # never inside a model call
    assert len(model.requests) == 14  # two calls a turn: no summary call on the agent's path
    last = model.requests[-1]
    blocks = [m for m in last if isinstance(m, SystemMessage) and "<conversation_summary" in m.text]
    assert len(blocks) == 1
    assert "NOTES: the customer" in blocks[0].text
    check_all(
        model,
        limit=prompt_limit(SMALL),
        system=SYSTEM,
        users=[question(i) for i in range(7) for _ in range(2)],
    )


# ---------------------------------------------------------------------------- 9. calibration


def test_reported_usage_calibrates_the_counter(
    middlewares: list[WindowkeeperMiddleware],
) -> None:
    model = RecordingChatModel()
    middleware = make(middlewares, "gpt-4o", memory="window", budget=SMALL)
    agent = create_agent(
        model,
        tools=[lookup_order, search_policies],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    for i in range(4):
        out = agent.invoke({"messages": [HumanMessage(question(i))]}, config("c"))
    stats = middleware.engine.counter.calibration.stats()
    assert stats.observations == len(model.requests) == 8
    # the fake reports the exact count + USAGE_OFFSET: the middleware counted what was sent exactly
    assert stats.max_abs_error == stats.mean_abs_error == USAGE_OFFSET
    assert stats.factor > 1
    record = out["windowkeeper"]
    expected = exact_count(model.requests[-1], model.request_tools[-1]) + USAGE_OFFSET
    assert record["reported_input_tokens"] == expected
    assert record["report"]["prompt_tokens"] == expected - USAGE_OFFSET


def test_no_usage_no_calibration(middlewares: list[WindowkeeperMiddleware]) -> None:
    model = FakeListChatModel(responses=["Hello!", "Hello again!"])
    middleware = make(middlewares, "gpt-4o", memory="window")
    agent = create_agent(model, middleware=[middleware])
    out = agent.invoke({"messages": [HumanMessage("hi")]})
    assert out["windowkeeper"]["reported_input_tokens"] is None
    assert middleware.engine.counter.calibration.stats().observations == 0


def test_a_compressor_shortens_older_tool_results_and_never_the_user_message() -> None:
    """``compress_zones=("history",)``: earlier turns' tool results compressed in the request."""
    from tests.test_windowkeeper.test_assembler_compressor import RateCompressor

    fake = RateCompressor()
    model = RecordingChatModel()
    middleware = WindowkeeperMiddleware(
        "gpt-4o", memory="window", compressor=fake, compress_zones=("rag", "history")
    )
    agent = create_agent(
        model,
        tools=[lookup_order, search_policies],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    asks = [f"Where is order A-{i}, and what is the refund policy?" for i in range(3)]
    for ask in asks:
        out = agent.invoke({"messages": [HumanMessage(ask)]}, config("squeeze"))
    final = model.requests[-1]
    results = [m for m in final if isinstance(m, ToolMessage)]
    whole = {lookup_order.invoke({"query": "first"}), search_policies.invoke({"query": "second"})}
    assert len(results) == 6  # three turns of two calls: every call keeps its result
    assert all(m.text in whole for m in results[2:])  # the newest turns: whole
    assert all(m.text not in whole for m in results[:2])  # the first turn's: compressed
    assert all(0 < CORE.count(m.text) < CORE.count(next(iter(whole))) for m in results[:2])
    assert [m.content for m in final if isinstance(m, HumanMessage)] == asks  # never touched
    assert fake.calls  # the compressor ran with the user's question
    assert all(call[0] in asks for call in fake.calls)
    kept = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert all(m.text in whole for m in kept)  # the checkpointed thread keeps them whole
    with pytest.raises(InvalidConfigError, match=r"compress_zones must be .*got \['user'\]"):
        WindowkeeperMiddleware(compress_zones=["user"])  # checked at once, not on a first call


def test_a_compressor_shortens_tool_descriptions_instead_of_dropping_tools() -> None:
    from tests.test_windowkeeper.test_assembler_compressor import RateCompressor

    prose = " It looks the record up in the order system and returns what it finds there." * 8

    @tool(description="Look up orders, shipments and deliveries matching the query." + prose)
    def find_order(query: str) -> str:
        return f"Order {query}: shipped."

    @tool(description="Search the refund, return and warranty policies." + prose)
    def find_policy(query: str) -> str:
        return f"Policy on {query}: 30 days."

    budget = Budget(context_window=8_000, generation_reserve=500, zone_limits={"tools": 260})
    runs = []
    for compressor in (None, RateCompressor()):
        model = RecordingChatModel()
        agent = create_agent(
            model,
            tools=[find_order, find_policy],
            system_prompt=SYSTEM,
            middleware=[
                WindowkeeperMiddleware(
                    "gpt-4o",
                    memory="window",
                    budget=budget,
                    embeddings=None,
                    compressor=compressor,
                    compress_zones=("tools",),
                )
            ],
            checkpointer=InMemorySaver(),
        )
        out = agent.invoke({"messages": [HumanMessage("Where is order A-7?")]}, config("tools"))
        runs.append((model, out))
    (plain, _), (model, out) = runs
    assert len(plain.request_tools[0]) == 1  # without a compressor one tool had to go
    sent = model.request_tools[0]
    assert [t["function"]["name"] for t in sent] == ["find_order", "find_policy"]
    for schema, original in zip(sent, (find_order, find_policy), strict=True):
        full = convert_to_openai_tool(original)["function"]
        assert schema["function"]["parameters"] == full["parameters"]  # untouched
        assert len(schema["function"]["description"]) < len(full["description"])
    assert out["windowkeeper"]["report"]["zones"]["tools"] <= 260
    request = to_core_messages(model.requests[0])
    assert CORE.count_messages(request, tools=sent) - CORE.count_messages(request) <= 260
    tool_results = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert {m.text for m in tool_results} == {"Order first: shipped.", "Policy on second: 30 days."}
