"""Property tests: zone accounting is exact, deterministic, cache-independent, and never mutates input."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from windowkeeper import Budget, Message, TokenCounter, ToolCall, messages_to_openai

COUNTER = TokenCounter("gpt-4o")
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up a record",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
            },
        },
    }
]


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    messages = []
    if draw(st.booleans()):
        messages.append(Message(role="system", content=draw(TEXT)))
    for turn in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            messages.append(Message(role="system", content=draw(TEXT), metadata={"zone": "rag"}))
        messages.append(Message(role="user", content=draw(TEXT), metadata={"turn": turn}))
        for c in range(draw(st.integers(0, 2))):
            call = ToolCall(id=f"call_{turn}_{c}", name="lookup", arguments=draw(TEXT))
            messages.append(Message(role="assistant", tool_calls=(call,)))
            messages.append(Message(role="tool", tool_call_id=call.id, content=draw(TEXT)))
        messages.append(Message(role="assistant", content=draw(TEXT)))
    return messages[:-1] if draw(st.booleans()) else messages


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations(), st.booleans())
def test_zones_sum_exactly_and_nothing_changes(messages: list[Message], with_tools: bool) -> None:
    tools = TOOLS if with_tools else None
    before = copy.deepcopy(messages_to_openai(messages, include_metadata=True))
    zones = COUNTER.count_zones_of(messages, tools=tools)
    total = COUNTER.count_messages(messages, tools=tools)
    assert sum(zones.values()) == total
    assert all(v >= 0 for v in zones.values())
    assert COUNTER.count_messages(messages, tools=tools) == total  # twice: same answer
    assert TokenCounter("gpt-4o", cache_size=0).count_messages(messages, tools=tools) == total
    assert messages_to_openai(messages, include_metadata=True) == before
    report = Budget(context_window=128_000, generation_reserve=1_000).report(zones)
    assert report.prompt_tokens == total


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=8))
def test_counts_are_additive_per_message(texts: list[str]) -> None:
    messages = [Message(role="user", content=t) for t in texts]
    assert COUNTER.count_messages(messages) == sum(COUNTER.count_message(m) for m in messages) + 3
