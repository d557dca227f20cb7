"""Property tests: zone accounting is exact, deterministic, cache-independent, and never mutates input."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from windowkeeper import Budget, Message, TokenCounter, messages_to_openai

from tests.strategies import TEXT, TOOLS, conversations

COUNTER = TokenCounter("gpt-4o")


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
