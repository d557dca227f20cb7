"""The core conformance suite, run through the LangChain middleware and the chat history.

Generated conversations (``tests/strategies.py``: greetings before any user turn, parallel tool
calls answered in any order, several assistant messages in a row, system notes mid-way) are
converted to LangChain messages and handed over as LangGraph would. Every request: within budget by
the core's exact count, the user's message the very object, the system message first and
unchanged, no tool call without its result and no result without its call; every finished turn
stored once and unchanged.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain.agents.middleware.types import ExtendedModelResponse, ModelRequest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_windowkeeper import (
    WindowkeeperChatMessageHistory,
    WindowkeeperMiddleware,
    to_core_messages,
    to_langchain,
)
from windowkeeper import (
    MESSAGE_ID,
    Budget,
    BudgetExceededError,
    LayeredMemory,
    MemoryStore,
    Message,
    TokenCounter,
    WindowMemory,
    group_units,
    validate_tool_pairs,
)
from windowkeeper._units import split_system

from tests.strategies import TOOLS, conversations
from tests.test_windowkeeper.test_memory_conformance import HashEmbedder, fake_summarizer

COUNTER = TokenCounter("gpt-4o")
EXAMPLES = max(int(os.environ.get("WK_CONFORMANCE_EXAMPLES", "2000")) // 4, 25)
MODEL = FakeListChatModel(responses=["ok"])


def memory_factory(kind: str) -> Any:
    if kind == "window":
        return lambda sid: WindowMemory(COUNTER, session_id=sid)
    return lambda sid: LayeredMemory(
        COUNTER,
        session_id=sid,
        summarizer=fake_summarizer,
        embedder=HashEmbedder(),
        recent_units=2,
    )


def as_langchain(messages: list[Message]) -> list[BaseMessage]:
    """Core messages as LangChain ones with ids, as LangGraph's add_messages leaves them."""
    out = []
    for i, m in enumerate(messages):
        lc = to_langchain(
            Message(
                role=m.role,
                content=m.parts,
                name=m.name,
                tool_calls=m.tool_calls,
                tool_call_id=m.tool_call_id,
                metadata={MESSAGE_ID: f"m{i}"},
            )
        )
        out.append(lc)
    return out


def scenario(messages: list[Message]) -> tuple[SystemMessage | None, list[BaseMessage]] | None:
    messages = [m for m in messages if m.zone_hint != "rag"]
    system, rest = split_system(messages)
    if not any(m.role == "user" for m in rest):
        return None
    system_message = SystemMessage(system[0].text) if system else None
    return system_message, as_langchain([*system[1:], *rest])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    conversations(),
    st.integers(300, 4_000),
    st.booleans(),
    st.sampled_from(["window", "layered"]),
)
def test_middleware_conforms(
    messages: list[Message], window: int, with_tools: bool, kind: str
) -> None:
    built = scenario(messages)
    if built is None:
        return
    system, lc = built
    cut = max(i for i, m in enumerate(lc) if isinstance(m, HumanMessage))
    budget = Budget(context_window=window, generation_reserve=min(100, window // 4))
    middleware = WindowkeeperMiddleware(
        "gpt-4o", budget=budget, memory=memory_factory(kind), session_id="c"
    )
    seen: list[ModelRequest[Any]] = []

    def handler(request: ModelRequest[Any]) -> AIMessage:
        seen.append(request)
        return AIMessage("ok")

    request = ModelRequest(
        model=MODEL,
        messages=list(lc),
        system_message=system,
        tools=list(TOOLS) if with_tools else [],
        state={"messages": list(lc)},
        runtime=None,
    )
    try:
        response = middleware.wrap_model_call(request, handler)
    except BudgetExceededError:
        # only when the system prompt, the current turn and the tools alone cannot fit
        fixed = to_core_messages([*([system] if system else []), *lc[cut:]])
        assert (
            COUNTER.count_messages(fixed, tools=TOOLS if with_tools else None) > budget.prompt_limit
        )
        return
    finally:
        close = getattr(middleware.engine.memory("c"), "close", None)
    sent = seen[0]
    core = to_core_messages(
        [*([sent.system_message] if sent.system_message else []), *sent.messages]
    )
    schemas = list(sent.tools) or None
    assert COUNTER.count_messages(core, tools=schemas) <= budget.prompt_limit
    assert sent.system_message is system  # first and unchanged
    assert any(m is lc[cut] for m in sent.messages)  # the user's message, the very object
    validate_tool_pairs(core)
    assert isinstance(response, ExtendedModelResponse)
    report = response.command.update["windowkeeper"]["report"]  # type: ignore[union-attr]
    assert report["prompt_tokens"] == COUNTER.count_messages(core, tools=schemas)
    stored = middleware.engine.memory("c").units  # type: ignore[attr-defined]
    expected = group_units(to_core_messages(lc[:cut]))
    assert [u.messages for u in stored] == [u.messages for u in expected]
    # a second call with the same state stores nothing again
    middleware.wrap_model_call(request, handler)
    assert len(middleware.engine.memory("c")) == len(expected)
    if callable(close):
        close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(conversations(), st.integers(50, 3_000), st.sampled_from(["window", "layered"]))
def test_chat_history_conforms(messages: list[Message], max_tokens: int, kind: str) -> None:
    built = scenario(messages)
    if built is None:
        return
    _, lc = built
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        history = WindowkeeperChatMessageHistory(
            "c", store=MemoryStore(), max_tokens=max_tokens, memory=memory_factory(kind)
        )
    history.add_messages(lc)
    shown = history.messages
    core_shown = to_core_messages(shown)
    units = group_units(to_core_messages(lc))
    stored = len(history.memory)
    pending = len(lc) - sum(len(u.messages) for u in units[:stored])
    assert stored >= len(units) - 1  # at most the last turn is still in progress
    if pending == 0:
        assert COUNTER.count_messages(core_shown) <= max_tokens
    validate_tool_pairs(core_shown)
    assert shown[len(shown) - pending :] == lc[len(lc) - pending :]  # a turn in progress, as given
    assert (
        [u.messages for u in history.memory.units]
        == [  # type: ignore[attr-defined]
            u.messages for u in units[:stored]
        ]
    )
    close = getattr(history.memory, "close", None)
    if callable(close):
        close()
