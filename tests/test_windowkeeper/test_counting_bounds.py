"""Shapes no API-checked fixture covers are counted at the highest of the known conventions.

The references below are the two public rules a user would check us against, written out from
their sources: the OpenAI cookbook's ``num_tokens_from_messages`` (encode every string field of a
message; here also the string fields of each tool call, the natural reading for the list it cannot
encode) and langchain-openai 1.8's ``ChatOpenAI.get_num_tokens_from_messages`` (a flat 3 for
``tool_call_id``; a tool call's name and arguments). A request we call "fits" must never count
less than either.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from windowkeeper import Message, TokenCounter, ToolCall, load_encoding, messages_to_openai

from tests.strategies import CALL_IDS, SHORT, TEXT, conversations

MODELS = {"gpt-4o": "o200k_base", "gpt-4": "cl100k_base"}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def cookbook_count(messages: list[dict[str, Any]], encoding: str) -> int:
    """The cookbook rule: 3 per message, every string field encoded, +1 per name, +3 priming."""
    enc = load_encoding(encoding)
    n = 3
    for message in messages:
        n += 3
        for key, value in message.items():
            if key == "content" and isinstance(value, list):
                n += sum(enc.count(p["text"]) for p in value if p.get("type") == "text")
            elif key == "tool_calls":
                n += sum(enc.count(s) for s in _strings(value))
            elif isinstance(value, str):
                n += enc.count(value)
                if key == "name":
                    n += 1
    return n


def langchain_count(messages: list[dict[str, Any]], encoding: str) -> int:
    """langchain-openai's rule (its source, 1.8.1): tool_call_id is a flat 3, calls name + args."""
    enc = load_encoding(encoding)
    n = 3
    for message in messages:
        n += 3
        for key, value in message.items():
            if key == "tool_call_id":
                n += 3
            elif isinstance(value, list):
                for part in value:
                    if part.get("type") == "text":
                        n += enc.count(part["text"])
                    elif part.get("type") == "function":
                        n += enc.count(part["function"]["arguments"])
                        n += enc.count(part["function"]["name"])
            elif value:
                n += enc.count(str(value))
                if key == "name":
                    n += 1
    return n


@pytest.mark.parametrize("model", sorted(MODELS))
@settings(max_examples=300, deadline=None)
@given(messages=conversations())
def test_no_shape_counts_less_than_the_cookbook_or_langchain(
    model: str, messages: list[Message]
) -> None:
    dicts = messages_to_openai(messages)
    ours = TokenCounter(model).count_messages(messages)
    assert ours >= cookbook_count(dicts, MODELS[model])
    assert ours >= langchain_count(dicts, MODELS[model])


@settings(max_examples=300, deadline=None)
@given(
    call_id=CALL_IDS, name=st.from_regex(r"[a-z_]{1,20}", fullmatch=True), args=SHORT, result=TEXT
)
def test_tool_exchange_counts_its_ids(call_id: str, name: str, args: str, result: str) -> None:
    counter = TokenCounter("gpt-4o")
    call = Message(role="assistant", tool_calls=(ToolCall(id=call_id, name=name, arguments=args),))
    answer = Message(role="tool", tool_call_id=call_id, content=result)
    dicts = messages_to_openai([call, answer])
    assert counter.count_messages([call, answer]) >= cookbook_count(dicts, "o200k_base")
    assert counter.count_message(answer) == (
        3 + counter.count("tool") + counter.count(result) + max(counter.count(call_id), 3)
    )


def test_ids_cost_what_they_encode_to() -> None:
    counter = TokenCounter("gpt-4o")

    def result(call_id: str) -> Message:
        return Message(role="tool", content="x", tool_call_id=call_id)

    def call(call_id: str | None) -> Message:
        return Message(role="assistant", tool_calls=(ToolCall(id=call_id, name="f"),))

    long_id = "call_abcdef123"
    assert counter.count_message(result(long_id)) - counter.count_message(result("c")) == (
        counter.count(long_id) - 3  # "c" costs the flat 3 of LangChain's rule, the upper bound
    )
    assert counter.count_message(call(long_id)) - counter.count_message(call(None)) == (
        counter.count(long_id)
    )
    # legacy function calls (no id) keep the API-checked count
    legacy = Message.from_openai(
        {"role": "assistant", "content": "", "function_call": {"name": "f", "arguments": "{}"}}
    )
    assert counter.count_message(legacy) == counter.count_message(call(None))


def test_a_system_note_after_the_first_message_does_not_host_the_tool_block() -> None:
    counter = TokenCounter("gpt-4o")
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    note = Message(role="system", content="The customer is verified.")
    ask = Message(role="user", content="Where is my order?")
    later = [ask, note]
    assert counter.count_messages(later, tools=tools) == (
        counter.count_message(ask)
        + counter.count_message(note)
        + 3
        + counter.count_tools(tools, with_system=False)
    )
    first = [note, ask]  # API-checked shape: the tool block reuses the leading system message
    assert counter.count_messages(first, tools=tools) < counter.count_messages(later, tools=tools)


def test_a_system_prompt_with_tools_counts_the_same_from_the_cache_as_fresh() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    prompts = ["Be brief.", "Be brief and kind.\n", "Answer in French, please.  ", "x" * 300]
    ask = Message(role="user", content="Where is my order?")
    fresh = {
        p: TokenCounter("gpt-4o", cache_size=0).count_messages(
            [Message(role="system", content=p), ask], tools=tools
        )
        for p in prompts
    }
    assert len(set(fresh.values())) == len(prompts)  # a cache keyed wrongly would be caught
    shared = TokenCounter("gpt-4o")
    for _ in range(3):  # interleaved and repeated: each prompt's cached count stays its own
        for p in prompts:
            request = [Message(role="system", content=p), ask]
            assert shared.count_messages(request, tools=tools) == fresh[p], p
    for i in range(300):  # many prompts: the cache stays bounded
        shared.count_messages([Message(role="system", content=f"prompt {i}"), ask], tools=tools)
    assert len(shared._padded) <= 257
