"""The conformance suite every strategy passes (and, later, every adapter).

Within budget, input unchanged, the user message verbatim, tool calls never split from their
results, the system prompt kept, the same result twice.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from windowkeeper import (
    BudgetExceededError,
    Message,
    TokenCounter,
    messages_to_openai,
    validate_tool_pairs,
)
from windowkeeper._units import group_units, split_system
from windowkeeper.memory import TokenWindow

from tests.strategies import TOOLS, conversations

COUNTER = TokenCounter("gpt-4o")


def check_conformance(
    messages: list[Message],
    result_messages: tuple[Message, ...],
    tokens: int,
    max_tokens: int,
    tools: list | None,
) -> None:  # type: ignore[type-arg]
    assert tokens == COUNTER.count_messages(result_messages, tools=tools)
    assert tokens <= max_tokens
    leading, _ = split_system(messages)
    assert list(result_messages[: len(leading)]) == leading  # system prompt kept, first
    last_user = [m for m in messages if m.role == "user"][-1]
    assert any(m is last_user for m in result_messages)  # the very object, so byte-identical
    validate_tool_pairs(
        list(result_messages)
    )  # no orphan result, no unanswered call (but the last)
    # result is an ordered subsequence of the input
    it = iter(messages)
    assert all(any(m is n for n in it) for m in result_messages)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations(), st.integers(50, 3_000), st.booleans())
def test_token_window_conforms(messages: list[Message], max_tokens: int, with_tools: bool) -> None:
    if not any(m.role == "user" for m in messages):
        return
    tools = TOOLS if with_tools else None
    before = copy.deepcopy(messages_to_openai(messages, include_metadata=True))
    window = TokenWindow(COUNTER, max_tokens=max_tokens)
    try:
        result = window.trim(messages, tools=tools)
    except BudgetExceededError as exc:
        error = exc
    else:
        error = None
    if error is not None:
        # only when the system prompt, tools and the current turn alone exceed the budget
        assert error.required > error.limit == max_tokens
        return
    check_conformance(messages, result.messages, result.tokens, max_tokens, tools)
    assert window.trim(messages, tools=tools) == result  # twice: the same
    assert messages_to_openai(messages, include_metadata=True) == before
    kept = {id(m) for m in result.messages}
    assert len(result.dropped) + result.kept_units == len(group_units(split_system(messages)[1]))
    assert sum(d.tokens for d in result.dropped) == sum(
        COUNTER.count_message(m) for m in messages if id(m) not in kept
    )


def test_window_keeps_newest_units_and_reports_drops() -> None:
    messages = [Message(role="system", content="Be brief.")]
    for i in range(30):
        messages += [
            Message(role="user", content=f"question {i} " * 5),
            Message(role="assistant", content=f"answer {i}"),
        ]
    result = TokenWindow(COUNTER, max_tokens=200).trim(messages)
    kept_questions = [m.text for m in result.messages if m.role == "user"]
    assert kept_questions[-1].startswith("question 29")
    assert [d.what for d in result.dropped] == [f"unit {i}" for i in range(30 - result.kept_units)]
    assert all(d.zone == "history" for d in result.dropped)


def test_window_raises_when_the_current_turn_cannot_fit() -> None:
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="word " * 500),
    ]
    with pytest.raises(BudgetExceededError) as info:
        TokenWindow(COUNTER, max_tokens=100).trim(messages)
    assert info.value.limit == 100
    assert info.value.required > 500


@pytest.mark.parametrize("bad", [0, -3, 1.5])
def test_window_validation(bad: object) -> None:
    from windowkeeper import InvalidConfigError

    with pytest.raises(InvalidConfigError, match="max_tokens"):
        TokenWindow(COUNTER, max_tokens=bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- context editing


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations(), st.integers(0, 3))
def test_context_editor_conforms(messages: list[Message], keep: int) -> None:
    from windowkeeper import ContextEditor

    if not any(m.role == "user" for m in messages):
        return
    before = copy.deepcopy(messages_to_openai(messages, include_metadata=True))
    result = ContextEditor(COUNTER, keep_tool_results=keep).edit(messages)
    assert result.tokens == COUNTER.count_messages(result.messages)
    assert result.tokens <= COUNTER.count_messages(messages)
    assert len(result.messages) == len(messages)
    validate_tool_pairs(list(result.messages))
    for old, new in zip(messages, result.messages, strict=True):
        if old.role in ("user", "system"):
            assert new is old  # user and system messages are never touched
        assert new.role == old.role
        assert new.tool_call_id == old.tool_call_id
        assert new.tool_calls == old.tool_calls
    assert messages_to_openai(messages, include_metadata=True) == before
    assert ContextEditor(COUNTER, keep_tool_results=keep).edit(messages) == result


def test_context_editor_clears_old_results_and_reasoning() -> None:
    from windowkeeper import ContextEditor, ReasoningPart, TextPart, ToolCall

    messages: list[Message] = [Message(role="system", content="Be brief.")]
    for turn in range(4):
        call = ToolCall(id=f"c{turn}", name="lookup_order", arguments="{}")
        messages += [
            Message(role="user", content=f"question {turn}"),
            Message(role="assistant", tool_calls=(call,)),
            Message(role="tool", tool_call_id=f"c{turn}", content='{"status": "shipped"} ' * 50),
            Message(
                role="assistant",
                content=(ReasoningPart(text="thinking " * 30), TextPart(text="ok")),
            ),
        ]
    result = ContextEditor(COUNTER, keep_tool_results=1).edit(messages)
    tool_texts = [m.text for m in result.messages if m.role == "tool"]
    assert tool_texts[0].startswith("[tool result cleared: lookup_order,")
    assert tool_texts[0].endswith("turn 0]")
    assert tool_texts[2].startswith("[tool result cleared")
    assert tool_texts[3] == messages[-2].text  # the current turn's result is kept verbatim
    reasoning = [
        any(isinstance(p, ReasoningPart) for p in m.parts)
        for m in result.messages
        if m.role == "assistant"
    ]
    assert reasoning == [
        False,
        False,
        False,
        False,
        False,
        False,
        False,
        True,
    ]  # only the current turn keeps it
    saved = sum(d.tokens for d in result.dropped)
    assert saved > 0
    assert result.tokens < COUNTER.count_messages(messages)


def test_context_editor_validation() -> None:
    from windowkeeper import ContextEditor, InvalidConfigError

    with pytest.raises(InvalidConfigError, match="keep_tool_results"):
        ContextEditor(COUNTER, keep_tool_results=-1)
