"""The exact LangChain token counter, alone and inside LangChain's own trimming and middlewares."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import (
    ClearToolUsesEdit,
    ContextEditingMiddleware,
    SummarizationMiddleware,
)
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_windowkeeper import LangChainTokenCounter, to_core_messages, token_counter
from windowkeeper import InvalidConfigError, TokenCounter, UnknownModelError

from tests.test_langchain.fakes import RecordingChatModel, plain_answer

CORE = TokenCounter("gpt-4o")
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Look up an order by its id.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "e.g. A-17"}},
            "required": ["order_id"],
        },
    },
}


def conversation(turns: int) -> list[BaseMessage]:
    """A support chat with a tool exchange in every turn (ids set, as a checkpointer keeps them)."""
    out: list[BaseMessage] = [SystemMessage("You are a support agent for an online shop.")]
    for i in range(turns):
        call = {"name": "lookup_order", "args": {"order_id": f"A-{i}"}, "id": f"call_{i}"}
        out += [
            HumanMessage(f"Where is my order A-{i}? I ordered it {i + 2} days ago.", id=f"h{i}"),
            AIMessage("", tool_calls=[call], id=f"a{i}"),
            ToolMessage(
                json.dumps({"order_id": f"A-{i}", "status": "shipped", "eta": f"{i + 1} May"}),
                tool_call_id=f"call_{i}",
                id=f"t{i}",
            ),
            AIMessage(f"Order A-{i} has shipped and arrives on {i + 1} May.", id=f"r{i}"),
        ]
    return out


# ---------------------------------------------------------------------------- the counter alone


def test_counts_exactly_what_the_core_counts() -> None:
    count = token_counter("gpt-4o")
    messages = conversation(3)
    assert count(messages) == CORE.count_messages(to_core_messages(messages))
    pair = [HumanMessage("Where is order A-17?"), AIMessage("It ships today.")]
    openai = [
        {"role": "user", "content": "Where is order A-17?"},
        {"role": "assistant", "content": "It ships today."},
    ]
    assert count(pair) == CORE.count_messages(openai) == 22


def test_tool_calls_are_counted() -> None:
    count = token_counter("gpt-4o")
    bare = AIMessage("Checking.")
    with_calls = AIMessage(
        "Checking.",
        tool_calls=[
            {"name": "lookup_order", "args": {"order_id": "A-17"}, "id": "call_1"},
            {"name": "lookup_order", "args": {"order_id": "B-2"}, "id": "call_2"},
        ],
    )
    one_call = AIMessage("Checking.", tool_calls=with_calls.tool_calls[:1])
    assert count([bare]) < count([one_call]) < count([with_calls])
    openai = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
            }
            for c in with_calls.tool_calls
        ],
    }
    assert count([with_calls]) == CORE.count_messages([openai])


def test_tool_call_ids_and_results_are_counted() -> None:
    count = token_counter("gpt-4o")
    short = ToolMessage("ok", tool_call_id="c1")
    long_id = ToolMessage("ok", tool_call_id="call_" + "x" * 40)
    assert count([long_id]) > count([short])


def test_dicts_and_tuples_are_accepted() -> None:
    count = token_counter("gpt-4o")
    objects = [SystemMessage("Be brief."), HumanMessage("hi"), AIMessage("hello")]
    tuples = [("system", "Be brief."), ("human", "hi"), ("ai", "hello")]
    dicts = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    mixed: list[Any] = [objects[0], tuples[1], dicts[2]]
    expected = count(objects)
    assert count(tuples) == count(dicts) == count(mixed) == expected
    assert count(iter(dicts)) == expected  # any iterable, read once


def test_tools_are_counted_with_every_list() -> None:
    messages = [SystemMessage("Be brief."), HumanMessage("Where is A-17?")]
    plain = token_counter("gpt-4o")(messages)
    with_tools = token_counter("gpt-4o", tools=[LOOKUP])(messages)
    assert with_tools == CORE.count_messages(to_core_messages(messages), tools=[LOOKUP])
    assert with_tools - plain == CORE.count_tools([LOOKUP], with_system=True) > 0


def test_counter_shares_a_core_counter_and_refuses_bad_input() -> None:
    core = TokenCounter("gpt-4o")
    count = token_counter(core)
    assert count.counter is core
    assert repr(count) == "LangChainTokenCounter('gpt-4o')"
    with pytest.raises(UnknownModelError):
        token_counter("gpt-nope-9")
    with pytest.raises(InvalidConfigError, match="str"):
        LangChainTokenCounter("gpt-4o")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- inside LangChain


@pytest.mark.parametrize("max_tokens", [40, 150, 300, 1000])
def test_trim_messages_keeps_within_the_exact_count(max_tokens: int) -> None:
    count = token_counter("gpt-4o")
    messages = conversation(8)
    trimmed = trim_messages(
        messages,
        max_tokens=max_tokens,
        token_counter=count,
        strategy="last",
        start_on="human",
        include_system=True,
    )
    assert count(trimmed) <= max_tokens
    assert isinstance(trimmed[0], SystemMessage)
    if len(trimmed) > 1:
        assert trimmed[-1] == messages[-1]
        assert isinstance(trimmed[1], HumanMessage)  # whole turns, from a user message
    # the next older turn would not have fitted: trimming kept as much as the budget allows
    first_kept = messages.index(trimmed[1]) if len(trimmed) > 1 else len(messages)
    if first_kept > 1:
        older = messages[first_kept - 4 : first_kept]
        assert count([messages[0], *older, *trimmed[1:]]) > max_tokens


def test_summarization_middleware_triggers_on_the_exact_count() -> None:
    count = token_counter("gpt-4o")
    history = conversation(4)[1:]
    question = HumanMessage("And what about my refund?", id="q")
    exact = count([*history, question])

    def run(trigger: int) -> list[BaseMessage]:
        model = RecordingChatModel(script=plain_answer)
        summarizer = FakeListChatModel(responses=["The customer asked about orders A-0 to A-3."])
        middleware = SummarizationMiddleware(
            model=summarizer,
            trigger=("tokens", trigger),
            keep=("messages", 2),
            token_counter=count,
        )
        assert middleware.token_counter is count
        create_agent(model, middleware=[middleware]).invoke({"messages": [*history, question]})
        return model.requests[0]

    summarised = run(exact)  # at the threshold: summarised
    assert "orders A-0 to A-3" in summarised[0].text
    assert len(summarised) < len(history) + 1
    kept = run(exact + 1)  # one token under: sent whole
    assert [m.text for m in kept] == [m.text for m in [*history, question]]


def test_context_editing_middleware_triggers_on_the_exact_count() -> None:
    count = token_counter("gpt-4o")
    history = conversation(3)[1:]
    question = HumanMessage("Thanks. Anything else shipped?", id="q")
    exact = count([*history, question])

    def run(trigger: int) -> list[BaseMessage]:
        model = RecordingChatModel(script=plain_answer)
        middleware = ContextEditingMiddleware(
            edits=[ClearToolUsesEdit(trigger=trigger, keep=1, placeholder="[cleared]")],
            token_counter=count,
        )
        create_agent(model, middleware=[middleware]).invoke({"messages": [*history, question]})
        return model.requests[0]

    edited = run(exact - 1)  # over the trigger: older results cleared
    results = [m for m in edited if isinstance(m, ToolMessage)]
    assert [m.text for m in results[:-1]] == ["[cleared]"] * (len(results) - 1)
    assert results[-1].text != "[cleared]"
    untouched = run(exact)  # at the trigger: nothing cleared
    assert not any(m.text == "[cleared]" for m in untouched)
