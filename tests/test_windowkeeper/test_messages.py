from __future__ import annotations

import pytest
from windowkeeper import (
    ImagePart,
    InvalidMessageError,
    Message,
    OtherPart,
    ReasoningPart,
    TextPart,
    ToolCall,
    messages_from_openai,
    messages_to_openai,
    validate_tool_pairs,
)

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?", "name": "zoe"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    {"role": "assistant", "content": "21 °C."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "And this?"},
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/a.png", "detail": "low"},
            },
        ],
    },
]


def test_openai_round_trip_is_lossless() -> None:
    messages = messages_from_openai(CONVERSATION)
    assert messages_to_openai(messages) == CONVERSATION


def test_string_content_becomes_a_text_part() -> None:
    m = Message(role="user", content="hi")
    assert m.content == (TextPart(text="hi"),)
    assert m.text == "hi"


def test_metadata_is_read_only_and_not_compared() -> None:
    a = Message(role="user", content="hi", metadata={"turn": 1})
    b = Message(role="user", content="hi", metadata={"turn": 2})
    assert a == b
    assert hash(a) == hash(b)
    with pytest.raises(TypeError):
        a.metadata["turn"] = 5  # type: ignore[index]


def test_input_dict_is_not_mutated() -> None:
    import copy

    original = copy.deepcopy(CONVERSATION)
    messages_from_openai(CONVERSATION)
    assert original == CONVERSATION


def test_metadata_round_trips_when_asked() -> None:
    m = Message.from_openai(
        {"role": "system", "content": "chunk", "metadata": {"zone": "rag", "score": 0.4}}
    )
    assert m.zone_hint == "rag"
    assert m.to_openai(include_metadata=True)["metadata"] == {"zone": "rag", "score": 0.4}
    assert "metadata" not in m.to_openai()


def test_reasoning_and_other_parts() -> None:
    m = Message.from_openai(
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "input_audio", "tokens": 120, "input_audio": {"data": "..."}},
                {"type": "text", "text": "ok"},
            ],
        }
    )
    assert isinstance(m.content[0], ReasoningPart)
    assert isinstance(m.content[1], OtherPart)
    assert m.content[1].tokens == 120
    # reasoning is not sent back to OpenAI; the audio part round-trips
    assert m.to_openai()["content"] == [
        {"type": "input_audio", "tokens": 120, "input_audio": {"data": "..."}},
        {"type": "text", "text": "ok"},
    ]


def test_legacy_function_call_round_trip() -> None:
    data = {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}
    m = Message.from_openai(data)
    assert m.tool_calls == (ToolCall(id=None, name="f", arguments="{}"),)
    assert m.to_openai() == data


def test_dict_arguments_are_serialised() -> None:
    m = Message.from_openai(
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
            ],
        }
    )
    assert m.tool_calls[0].arguments == '{"a": 1}'


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"role": "robot", "content": "x"}, "role must be one of"),
        ({"role": "user", "content": 5}, "content must be a string"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}],
            },
            "detail",
        ),
        ({"role": "user", "content": "x", "metadata": [1]}, "metadata must be an object"),
        ("not a dict", "expected a dict"),
    ],
)
def test_bad_messages_name_the_index(bad: object, needle: str) -> None:
    with pytest.raises(InvalidMessageError, match=needle) as info:
        messages_from_openai([{"role": "user", "content": "ok"}, bad])  # type: ignore[list-item]
    assert info.value.index == 1
    assert str(info.value).startswith("message 1:")


def test_tool_calls_only_on_assistant() -> None:
    with pytest.raises(InvalidMessageError, match="only allowed on assistant"):
        Message(role="user", content="x", tool_calls=(ToolCall(id="a", name="f"),))


def test_validate_tool_pairs_accepts_a_good_conversation() -> None:
    validate_tool_pairs(messages_from_openai(CONVERSATION))


def test_tool_result_without_call_is_rejected_with_its_index() -> None:
    messages = messages_from_openai(
        [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}]
    )
    with pytest.raises(InvalidMessageError, match="nope") as info:
        validate_tool_pairs(messages)
    assert info.value.index == 1


def test_unanswered_call_is_rejected_but_a_pending_last_call_is_fine() -> None:
    call = {
        "role": "assistant",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    validate_tool_pairs(messages_from_openai([{"role": "user", "content": "x"}, call]))
    with pytest.raises(InvalidMessageError, match="c1") as info:
        validate_tool_pairs(
            messages_from_openai(
                [{"role": "user", "content": "x"}, call, {"role": "user", "content": "y"}]
            )
        )
    assert info.value.index == 1


def test_image_part_defaults() -> None:
    assert ImagePart(url="u").detail == "auto"
