"""LangChain <-> core message conversion: lossless round trips, faithful counts, clear refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_windowkeeper import to_core, to_core_messages, to_langchain, to_langchain_messages
from windowkeeper import (
    MESSAGE_ID,
    ImagePart,
    InvalidMessageError,
    Message,
    OtherPart,
    ReasoningPart,
    SQLiteStore,
    TextPart,
    TokenCounter,
    ToolCall,
    Unit,
)

from tests.strategies import SHORT, TEXT

COUNTER = TokenCounter("gpt-4o")

# ---------------------------------------------------------------------------- strategies

IDS = st.none() | st.from_regex(r"(run|lc|msg)-[A-Za-z0-9-]{1,20}", fullmatch=True) | SHORT
NAMES = st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | SHORT,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KWARGS = st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), JSON, max_size=3)
URLS = st.sampled_from(
    [
        "https://example.com/cat.png",
        "https://cdn.example.org/a/b/receipt.jpg?size=large",
        "data:image/png;base64,iVBORw0KGgo=",
    ]
)
DETAILS = st.sampled_from(["auto", "low", "high"])


@st.composite
def blocks(draw: st.DrawFn) -> str | dict[str, Any]:
    """One content block as LangChain carries it (OpenAI-style, v1 and provider-native)."""
    kind = draw(
        st.sampled_from(["str", "text", "image_url", "image", "reasoning", "thinking", "audio"])
    )
    if kind == "str":
        return draw(TEXT)
    if kind == "text":
        block: dict[str, Any] = {"type": "text", "text": draw(TEXT)}
        if draw(st.booleans()):
            block["id"] = draw(SHORT)
        return block
    if kind == "image_url":
        if draw(st.booleans()):
            return {"type": "image_url", "image_url": draw(URLS)}
        return {"type": "image_url", "image_url": {"url": draw(URLS), "detail": draw(DETAILS)}}
    if kind == "image":
        return {"type": "image", "url": draw(URLS)}
    if kind == "reasoning":
        return {"type": "reasoning", "reasoning": draw(TEXT)}
    if kind == "thinking":
        return {"type": "thinking", "thinking": draw(TEXT), "signature": draw(SHORT)}
    return {"type": "input_audio", "input_audio": {"data": draw(SHORT), "format": "wav"}}


CONTENT = TEXT | st.lists(blocks(), max_size=4)
ARGS = st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), JSON, max_size=3)


@st.composite
def tool_calls(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(
        st.lists(st.from_regex(r"call_[A-Za-z0-9]{1,16}", fullmatch=True), max_size=3, unique=True)
    )
    return [
        {
            "name": draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True)),
            "args": draw(ARGS),
            "id": call_id,
            "type": "tool_call",
        }
        for call_id in ids
    ]


INVALID_CALLS = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.none() | SHORT,
            "args": st.none() | SHORT,
            "id": st.none() | SHORT,
            "error": st.none() | SHORT,
            "type": st.just("invalid_tool_call"),
        }
    ),
    max_size=2,
)
USAGE = st.none() | st.builds(
    lambda i, o: {"input_tokens": i, "output_tokens": o, "total_tokens": i + o},
    st.integers(0, 10**6),
    st.integers(0, 10**5),
)


def _common(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "content": draw(CONTENT),
        "id": draw(IDS),
        "name": draw(NAMES),
        "additional_kwargs": draw(KWARGS),
        "response_metadata": draw(KWARGS),
    }


@st.composite
def human(draw: st.DrawFn) -> BaseMessage:
    return HumanMessage(**_common(draw))


@st.composite
def ai(draw: st.DrawFn) -> BaseMessage:
    return AIMessage(
        **_common(draw),
        tool_calls=draw(tool_calls()),
        invalid_tool_calls=draw(INVALID_CALLS),
        usage_metadata=draw(USAGE),
    )


@st.composite
def ai_chunk(draw: st.DrawFn) -> BaseMessage:
    fields = _common(draw)
    calls = draw(tool_calls())
    chunks = [
        {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
        for i, c in enumerate(calls)
    ]
    return AIMessageChunk(
        **fields,
        tool_call_chunks=chunks,
        usage_metadata=draw(USAGE),
        chunk_position=draw(st.sampled_from([None, "last"])),
    )


@st.composite
def tool(draw: st.DrawFn) -> BaseMessage:
    return ToolMessage(
        **_common(draw),
        tool_call_id=draw(st.from_regex(r"call_[A-Za-z0-9]{1,16}", fullmatch=True)),
        status=draw(st.sampled_from(["success", "error"])),
        artifact=draw(st.none() | JSON),
    )


@st.composite
def system(draw: st.DrawFn) -> BaseMessage:
    fields = _common(draw)
    if draw(st.booleans()):
        fields["additional_kwargs"] = {
            **fields["additional_kwargs"],
            "__openai_role__": "developer",
        }
    return SystemMessage(**fields)


@st.composite
def chat(draw: st.DrawFn) -> BaseMessage:
    role = draw(st.sampled_from(["user", "assistant", "human", "ai", "system", "developer"]))
    return ChatMessage(**_common(draw), role=role)


LANGCHAIN_MESSAGES = st.one_of(human(), ai(), ai_chunk(), tool(), system(), chat())

# ---------------------------------------------------------------------------- round trips


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LANGCHAIN_MESSAGES)
def test_round_trip_is_lossless(message: BaseMessage) -> None:
    core = to_core(message)
    back = to_langchain(core)
    assert type(back) is type(message)
    assert back == message
    assert back.model_dump() == message.model_dump()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LANGCHAIN_MESSAGES, max_size=6))
def test_list_round_trip_is_lossless_and_input_untouched(messages: list[BaseMessage]) -> None:
    before = [m.model_dump() for m in messages]
    core = to_core_messages(messages)
    assert to_langchain_messages(core) == messages
    assert [m.model_dump() for m in messages] == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=LANGCHAIN_MESSAGES)
def test_round_trip_through_the_sqlite_store(message: BaseMessage, tmp_path_factory: Any) -> None:
    """What a SQLite store gives back after a restart still converts back to the message."""
    path = tmp_path_factory.mktemp("store") / "wk.db"
    with SQLiteStore(path) as store:
        store.append(Unit(index=0, messages=(to_core(message),), session_id="s"))
    with SQLiteStore(path) as reopened:
        (restored,) = reopened.units("s")[0].messages
    back = to_langchain(restored)
    assert back.model_dump(mode="json") == message.model_dump(mode="json")
    assert COUNTER.count_message(restored) == COUNTER.count_message(to_core(message))


def test_reasoning_block_survives_the_sqlite_store(tmp_path: Any) -> None:
    message = AIMessage(
        [
            {"type": "thinking", "thinking": "the order shipped late", "signature": "sig"},
            {"type": "text", "text": "It ships tomorrow."},
        ],
        id="ai-1",
    )
    with SQLiteStore(tmp_path / "wk.db") as store:
        store.append(Unit(index=0, messages=(to_core(message),), session_id="s"))
        (restored,) = store.units("s")[0].messages
    assert to_langchain(restored) == message


def test_content_block_count_survives_the_sqlite_store(tmp_path: Any) -> None:
    message = HumanMessage(
        [{"type": "input_audio", "input_audio": {"data": "A" * 2000, "format": "wav"}}], id="h-1"
    )
    core = to_core(message)
    with SQLiteStore(tmp_path / "wk.db") as store:
        store.append(Unit(index=0, messages=(core,), session_id="s"))
        (restored,) = store.units("s")[0].messages
    assert COUNTER.count_message(restored) == COUNTER.count_message(core)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LANGCHAIN_MESSAGES)
def test_core_message_models_what_is_sent(message: BaseMessage) -> None:
    core = to_core(message)
    if message.id is not None:
        assert core.metadata[MESSAGE_ID] == message.id
    if isinstance(message, AIMessage):
        assert core.role == "assistant"
        assert [(c.id, c.name, json.loads(c.arguments)) for c in core.tool_calls] == [
            (c["id"], c["name"], c["args"]) for c in message.tool_calls
        ]
    else:
        assert core.tool_calls == ()
    if isinstance(message, ToolMessage):
        assert core.role == "tool"
        assert core.tool_call_id == message.tool_call_id
        assert core.name is None  # a tool message's name is not sent to the model
    if isinstance(message, SystemMessage):
        developer = message.additional_kwargs.get("__openai_role__") == "developer"
        assert core.role == ("developer" if developer else "system")
    if isinstance(message.content, str):
        assert core.text == message.content


@pytest.mark.parametrize("artifact", [[], {}])
def test_empty_artifact_round_trips(artifact: Any) -> None:
    """A retriever tool with response_format="content_and_artifact" that found nothing."""
    message = ToolMessage("No documents found.", tool_call_id="call_1", artifact=artifact)
    assert to_langchain(to_core(message)).artifact == artifact


def test_content_blocks_become_core_parts() -> None:
    message = HumanMessage(
        [
            "plain",
            {"type": "text", "text": "look at this"},
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/a.png", "detail": "low"},
            },
            {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"},
            {"type": "reasoning", "reasoning": "the user wants a refund"},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        ]
    )
    parts = to_core(message).parts
    assert parts[:2] == (TextPart(text="plain"), TextPart(text="look at this"))
    assert parts[2] == ImagePart(url="https://example.com/a.png", detail="low")
    assert parts[3] == ImagePart(url="data:image/png;base64,iVBORw0KGgo=")
    assert parts[4] == ReasoningPart(text="the user wants a refund")
    assert isinstance(parts[5], OtherPart)
    assert parts[5].kind == "input_audio"
    assert parts[5].tokens > 0  # an upper bound, never free
    assert to_langchain(to_core(message)) == message


def test_core_edit_shows_after_conversion_back() -> None:
    """A cleared tool result (the core edits content) comes back edited, everything else kept."""
    original = ToolMessage(
        "x " * 300, tool_call_id="call_1", id="t-1", status="error", artifact={"rows": 3}
    )
    core = to_core(original)
    edited = Message(
        role="tool",
        tool_call_id=core.tool_call_id,
        content="[tool result cleared: lookup, 301 tokens]",
        metadata=core.metadata,
    )
    back = to_langchain(edited)
    assert isinstance(back, ToolMessage)
    assert back.content == "[tool result cleared: lookup, 301 tokens]"
    assert (back.id, back.status, back.artifact, back.tool_call_id) == (
        "t-1",
        "error",
        {"rows": 3},
        "call_1",
    )


def test_core_made_and_openai_messages_convert_to_langchain() -> None:
    summary = Message(role="system", content="<conversation_summary>notes</conversation_summary>")
    developer = {"role": "developer", "content": "be brief"}
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
        ],
    }
    out = to_langchain_messages(
        [summary, developer, call, {"role": "tool", "tool_call_id": "c1", "content": "r"}]
    )
    assert isinstance(out[0], SystemMessage)
    assert out[0].content == summary.text
    assert isinstance(out[1], SystemMessage)
    assert out[1].additional_kwargs["__openai_role__"] == "developer"
    assert isinstance(out[2], AIMessage)
    assert out[2].tool_calls == [{"name": "f", "args": {"a": 1}, "id": "c1", "type": "tool_call"}]
    assert isinstance(out[3], ToolMessage)
    assert out[3].tool_call_id == "c1"


# ---------------------------------------------------------------------------- counts


def _plain_pairs() -> list[tuple[list[BaseMessage], list[dict[str, Any]]]]:
    calls = [
        {"name": "lookup_order", "args": {"order_id": "A-17"}, "id": "call_1"},
        {"name": "get_weather", "args": {"city": "Paris", "days": 3}, "id": "call_2"},
    ]
    openai_calls = [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
        }
        for c in calls
    ]
    return [
        (
            [SystemMessage("You are a support agent."), HumanMessage("Where is order A-17?")],
            [
                {"role": "system", "content": "You are a support agent."},
                {"role": "user", "content": "Where is order A-17?"},
            ],
        ),
        (
            [
                SystemMessage("Be brief.", additional_kwargs={"__openai_role__": "developer"}),
                HumanMessage("hi", name="Ann"),
                AIMessage("Hello Ann!", name="bot"),
            ],
            [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "hi", "name": "Ann"},
                {"role": "assistant", "content": "Hello Ann!", "name": "bot"},
            ],
        ),
        (
            [
                HumanMessage("Order A-17 and the weather in Paris?"),
                AIMessage("", tool_calls=calls),
                ToolMessage("Shipped on 3 May.", tool_call_id="call_1", name="lookup_order"),
                ToolMessage('{"temp": 21}', tool_call_id="call_2"),
                AIMessage("It shipped; 21 degrees."),
            ],
            [
                {"role": "user", "content": "Order A-17 and the weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": openai_calls},
                {"role": "tool", "tool_call_id": "call_1", "content": "Shipped on 3 May."},
                {"role": "tool", "tool_call_id": "call_2", "content": '{"temp": 21}'},
                {"role": "assistant", "content": "It shipped; 21 degrees."},
            ],
        ),
        (
            [
                HumanMessage(
                    [
                        {"type": "text", "text": "What is in this picture?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
                        },
                    ]
                ),
                ChatMessage("A cat.", role="ai"),
                ChatMessage("Thanks", role="human"),
            ],
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
                        },
                    ],
                },
                {"role": "assistant", "content": "A cat."},
                {"role": "user", "content": "Thanks"},
            ],
        ),
    ]


@pytest.mark.parametrize(("lc", "openai"), _plain_pairs())
def test_count_equals_the_openai_dicts(lc: list[BaseMessage], openai: list[dict[str, Any]]) -> None:
    counted = COUNTER.count_messages(to_core_messages(lc))
    assert counted == COUNTER.count_messages(openai)
    assert counted > 3 * len(lc)  # really counted, not just overhead


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["user", "assistant", "system"]), TEXT), min_size=1, max_size=5
    )
)
def test_count_of_plain_text_messages_matches_openai(pairs: list[tuple[str, str]]) -> None:
    classes = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}
    lc = [classes[role](text) for role, text in pairs]
    openai = [{"role": role, "content": text} for role, text in pairs]
    assert COUNTER.count_messages(to_core_messages(lc)) == COUNTER.count_messages(openai)


# ---------------------------------------------------------------------------- refusals


def test_remove_message_is_refused_by_type() -> None:
    with pytest.raises(InvalidMessageError, match="RemoveMessage"):
        to_core(RemoveMessage(id="m-1"))


def test_plain_object_is_refused_by_type() -> None:
    class Note:
        content = "hi"

    with pytest.raises(InvalidMessageError, match="Note"):
        to_core(Note())  # type: ignore[arg-type]


def test_unknown_chat_role_is_refused_by_name() -> None:
    with pytest.raises(InvalidMessageError, match="'robot'"):
        to_core(ChatMessage("beep", role="robot"))


def test_list_refusal_names_the_position() -> None:
    messages = [HumanMessage("hi"), AIMessage("hello"), RemoveMessage(id="x")]
    with pytest.raises(InvalidMessageError, match="RemoveMessage") as info:
        to_core_messages(messages)
    assert info.value.index == 2


def test_tool_message_without_call_id_is_refused() -> None:
    with pytest.raises(InvalidMessageError, match="tool_call_id"):
        to_core(ToolMessage("result", tool_call_id=""))


def test_tool_call_ids_survive_as_core_tool_calls() -> None:
    message = AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "call_9"}])
    assert to_core(message).tool_calls == (ToolCall(id="call_9", name="f", arguments="{}"),)
