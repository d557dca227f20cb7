"""LlamaIndex <-> core message conversion: lossless round trips, faithful counts, clear refusals."""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core.base.llms.types import (
    AudioBlock,
    CacheControl,
    CachePoint,
    ChatMessage,
    ChatResponse,
    CitableBlock,
    CitationBlock,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    VideoBlock,
)
from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.llms.llm import ToolSelection
from llama_index.memory.windowkeeper._convert import (
    LLAMA_INDEX_KEY,
    message_key,
    to_core,
    to_core_messages,
    to_llama,
    to_llama_messages,
    usage_input_tokens,
)
from windowkeeper import (
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
HERE = Path(__file__).resolve()  # an existing file, for blocks that name a path


def png(width: int, height: int) -> bytes:
    """The header of a PNG of the given size (all the core reads to count an image)."""
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">II", width, height) + b"\x08\x02"


class FakeFunction(BaseModel):
    name: str
    arguments: str


class FakeToolCall(BaseModel):
    """The shape of openai's ChatCompletionMessageToolCall (openai is not installed here)."""

    id: str
    type: Literal["function"] = "function"
    function: FakeFunction


# ---------------------------------------------------------------------------- strategies

CALL_IDS = st.from_regex(r"call_[A-Za-z0-9]{1,16}", fullmatch=True)
NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | SHORT,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.from_regex(r"[a-z_]{1,10}", fullmatch=True).filter(
    lambda k: k not in ("name", "tool_call_id", "tool_calls", "function_call", "images")
)
KWARGS = st.dictionaries(KEYS, JSON, max_size=3)
ARGS = st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), JSON, max_size=3)
URLS = st.sampled_from(
    [
        "https://example.com/cat.png",
        "https://cdn.example.org/a/b/receipt.jpg?size=large",
        "data:image/png;base64,iVBORw0KGgo=",
        "gs://bucket/photo.webp",
    ]
)
MEDIA_URLS = st.sampled_from(["https://example.com/a.mp3", "https://example.com/v.mp4", "s3://b/k"])
DETAILS = st.none() | st.sampled_from(["auto", "low", "high"])
BYTES = st.binary(max_size=48) | st.builds(png, st.integers(1, 5000), st.integers(1, 5000))


def images() -> st.SearchStrategy[ImageBlock]:
    return st.one_of(
        st.builds(ImageBlock, url=URLS, detail=DETAILS),
        st.builds(ImageBlock, image=BYTES, detail=DETAILS, image_mimetype=st.none() | SHORT),
        st.builds(ImageBlock, path=st.just(HERE), detail=DETAILS),
        st.builds(ImageBlock),
    )


def blocks() -> st.SearchStrategy[Any]:
    text = st.builds(TextBlock, text=TEXT)
    return st.one_of(
        text,
        images(),
        st.builds(AudioBlock, audio=BYTES, format=st.none() | st.just("wav"))
        | st.builds(AudioBlock, url=MEDIA_URLS)
        | st.builds(AudioBlock, path=st.just(HERE)),
        st.builds(VideoBlock, video=BYTES, fps=st.none() | st.integers(1, 60))
        | st.builds(VideoBlock, url=MEDIA_URLS, detail=DETAILS),
        st.builds(DocumentBlock, data=BYTES, title=st.none() | SHORT)
        | st.builds(DocumentBlock, url=MEDIA_URLS)
        | st.builds(DocumentBlock, path=st.just(str(HERE)), document_mimetype=st.none() | SHORT),
        st.builds(
            CachePoint,
            cache_control=st.builds(
                CacheControl, type=st.just("ephemeral"), ttl=st.sampled_from(["5m", "1h"])
            ),
        ),
        st.builds(
            CitableBlock,
            title=SHORT,
            source=SHORT,
            content=st.lists(text | st.builds(ImageBlock, url=URLS), max_size=2),
        ),
        st.builds(
            CitationBlock,
            cited_content=text,
            source=SHORT,
            title=SHORT,
            additional_location_info=st.dictionaries(SHORT, st.integers(0, 10**6), max_size=2),
        ),
        st.builds(
            ThinkingBlock,
            content=st.none() | TEXT,
            num_tokens=st.none() | st.integers(0, 10**5),
            additional_information=KWARGS,
        ),
        st.builds(
            ToolCallBlock,
            tool_call_id=st.none() | CALL_IDS,
            tool_name=NAMES,
            tool_kwargs=ARGS | SHORT,
        ),
    )


@st.composite
def legacy_calls(draw: st.DrawFn) -> list[Any]:
    """OpenAI-style ``additional_kwargs["tool_calls"]``: dicts, openai objects, ToolSelections."""
    calls: list[Any] = []
    for call_id in draw(st.lists(CALL_IDS, max_size=3, unique=True)):
        name, args = draw(NAMES), draw(ARGS)
        shape = draw(st.sampled_from(["dict", "object", "selection"]))
        if shape == "dict":
            function = {"name": name, "arguments": json.dumps(args)}
            calls.append({"id": call_id, "type": "function", "function": function})
        elif shape == "object":
            calls.append(
                FakeToolCall(
                    id=call_id, function=FakeFunction(name=name, arguments=json.dumps(args))
                )
            )
        else:
            calls.append(ToolSelection(tool_id=call_id, tool_name=name, tool_kwargs=args))
    return calls


@st.composite
def messages(draw: st.DrawFn) -> ChatMessage:
    kwargs = draw(KWARGS)
    if draw(st.booleans()):
        kwargs["name"] = draw(NAMES | st.integers(0, 9))
    if draw(st.booleans()):
        kwargs["tool_call_id"] = draw(CALL_IDS | st.none() | st.just(""))
    if draw(st.booleans()):
        kwargs["tool_calls"] = draw(legacy_calls())
    if draw(st.integers(0, 9)) == 0:
        kwargs["function_call"] = {"name": draw(NAMES), "arguments": json.dumps(draw(ARGS))}
    return ChatMessage(
        role=draw(st.sampled_from(list(MessageRole))),
        blocks=draw(st.lists(blocks(), max_size=4)),
        additional_kwargs=kwargs,
    )


MESSAGES = messages()
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------- round trips


@PROPERTY
@given(MESSAGES)
def test_round_trip_is_lossless(message: ChatMessage) -> None:
    back = to_llama(to_core(message))
    assert back == message
    assert back.model_dump() == message.model_dump()


@settings(PROPERTY, max_examples=100)
@given(st.lists(MESSAGES, max_size=5))
def test_list_round_trip_is_lossless_and_input_untouched(items: list[ChatMessage]) -> None:
    before = [m.model_dump() for m in items]
    assert to_llama_messages(to_core_messages(items)) == items
    assert [m.model_dump() for m in items] == before


@settings(PROPERTY, max_examples=120)
@given(message=MESSAGES)
def test_round_trip_through_the_sqlite_store(message: ChatMessage, tmp_path_factory: Any) -> None:
    """What a SQLite store gives back after a restart converts back to the same message."""
    core = to_core(message)
    path = tmp_path_factory.mktemp("store") / "wk.db"
    with SQLiteStore(path) as store:
        store.append(Unit(index=0, messages=(core,), session_id="s"))
    with SQLiteStore(path) as reopened:
        (restored,) = reopened.units("s")[0].messages
    back = to_llama(restored)
    assert back == message
    assert back.model_dump() == message.model_dump()
    assert COUNTER.count_message(restored) == COUNTER.count_message(core)


def test_parallel_calls_without_ids_survive_the_sqlite_store(tmp_path: Path) -> None:
    message = ChatMessage(
        role="assistant",
        blocks=[ToolCallBlock(tool_name="a", tool_kwargs={}), ToolCallBlock(tool_name="b")],
    )
    with SQLiteStore(tmp_path / "wk.db") as store:
        store.append(Unit(index=0, messages=(to_core(message),), session_id="s"))
        (restored,) = store.units("s")[0].messages
    assert len(restored.tool_calls) == 2


@PROPERTY
@given(MESSAGES)
def test_core_message_models_what_is_counted(message: ChatMessage) -> None:
    core = to_core(message)
    kwargs = message.additional_kwargs
    assert core.role == {"chatbot": "assistant", "model": "assistant"}.get(
        message.role.value, core.role
    )
    name = kwargs.get("name")
    assert core.name == (name if isinstance(name, str) else None)
    call_blocks = [b for b in message.blocks if isinstance(b, ToolCallBlock)]
    if core.role == "assistant":
        assert [(c.id, c.name) for c in core.tool_calls][: len(call_blocks)] == [
            (b.tool_call_id, b.tool_name) for b in call_blocks
        ]
    else:
        assert core.tool_calls == ()
    if message.role == MessageRole.TOOL:
        has_id = isinstance(kwargs.get("tool_call_id"), str) and kwargs["tool_call_id"]
        assert core.role == ("tool" if has_id else "function")
        assert core.tool_call_id == (kwargs["tool_call_id"] if has_id else None)
    texts = [b.text for b in message.blocks if isinstance(b, TextBlock)]
    assert [p.text for p in core.parts if isinstance(p, TextPart)] == texts
    others = [p for p in core.parts if isinstance(p, OtherPart)]
    assert all(p.tokens > 0 for p in others if p.kind != "cache")  # never free


def test_blocks_become_core_parts() -> None:
    message = ChatMessage(
        role="user",
        blocks=[
            TextBlock(text="look at this"),
            ImageBlock(url="https://example.com/a.png", detail="low"),
            ImageBlock(image=png(600, 400)),
            ImageBlock(path=HERE),
            ThinkingBlock(content="the user wants a refund", num_tokens=7),
            AudioBlock(audio=b"RIFF....WAVEfmt "),
            DocumentBlock(url="https://example.com/terms.pdf"),
            CachePoint(cache_control=CacheControl(type="ephemeral")),
        ],
    )
    parts = to_core(message).parts
    assert parts[0] == TextPart(text="look at this")
    assert parts[1] == ImagePart(url="https://example.com/a.png", detail="low")
    encoded = base64.b64encode(png(600, 400)).decode()
    assert parts[2] == ImagePart(url=f"data:image/png;base64,{encoded}")
    assert parts[3] == ImagePart(url=HERE.as_uri())  # counted at the tile rule's upper bound
    assert parts[4] == ReasoningPart(text="the user wants a refund")
    assert [(p.kind, p.tokens > 0) for p in parts[5:] if isinstance(p, OtherPart)] == [
        ("audio", True),
        ("document", True),
        ("cache", False),
    ]
    assert isinstance(parts[6], OtherPart)
    assert parts[6].tokens >= 512  # LlamaIndex's own estimate of a document it cannot fetch
    assert to_llama(to_core(message)) == message


def test_a_stream_comes_back_as_its_bytes() -> None:
    data = png(32, 32) + bytes(range(256))
    message = ChatMessage(role="user", blocks=[ImageBlock(image=io.BytesIO(data))])
    core = to_core(message)
    assert core.parts == (
        ImagePart(url=f"data:image/png;base64,{base64.b64encode(data).decode()}"),
    )
    (block,) = to_llama(core).blocks
    assert isinstance(block, ImageBlock)
    assert base64.b64decode(block.image or b"") == data


def test_legacy_image_documents_are_not_appended_twice() -> None:
    from llama_index.core.schema import ImageDocument

    image = ImageDocument(image=base64.b64encode(png(8, 8)).decode())
    message = ChatMessage(role="user", content="see", additional_kwargs={"images": [image]})
    assert len(message.blocks) == 2  # LlamaIndex turned the document into a block
    back = to_llama(to_core(message))
    assert back.blocks == message.blocks
    # LlamaIndex's own dump drops an ImageDocument's bytes, so only the dump compares equal
    assert back.model_dump() == message.model_dump()


def test_values_json_cannot_hold_are_kept_as_repr(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "Opaque()"

    message = ChatMessage(
        role="user",
        content="hi",
        additional_kwargs={"handle": Opaque(), "pair": (1, 2), "raw": b"\xff\x00"},
    )
    with caplog.at_level(logging.WARNING, logger="llama_index.memory.windowkeeper"):
        core = to_core(message)
    assert "additional_kwargs['handle'] holds a Opaque" in caplog.text
    with SQLiteStore(tmp_path / "wk.db") as store:
        store.append(Unit(index=0, messages=(core,), session_id="s"))
        (restored,) = store.units("s")[0].messages
    assert to_llama(restored).additional_kwargs == {
        "handle": "Opaque()",
        "pair": (1, 2),
        "raw": b"\xff\x00",
    }


def test_message_key_is_none_in_llama_index_0_14() -> None:
    message = ChatMessage(role="user", content="hi", additional_kwargs={"id": "m-1"})
    assert message_key(message) is None
    assert "message_id" not in to_core(message).metadata


# ---------------------------------------------------------------------------- tool calls


def test_tool_call_block_is_counted() -> None:
    """LlamaIndex's own Memory counts a ToolCallBlock as 0 tokens; the core counts it in full."""
    arguments = {"text": " ".join(["word"] * 2000)}
    message = ChatMessage(
        role="assistant",
        blocks=[ToolCallBlock(tool_call_id="call_1", tool_name="save", tool_kwargs=arguments)],
    )
    core = to_core(message)
    assert core.tool_calls == (ToolCall(id="call_1", name="save", arguments=json.dumps(arguments)),)
    assert COUNTER.count_message(core) >= 2000


def test_legacy_tool_calls_are_counted_once() -> None:
    same = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    other = FakeToolCall(id="call_2", function=FakeFunction(name="g", arguments='{"x": 1}'))
    message = ChatMessage(
        role="assistant",
        blocks=[ToolCallBlock(tool_call_id="call_1", tool_name="f")],
        additional_kwargs={"tool_calls": [same, other]},
    )
    core = to_core(message)
    assert core.tool_calls == (
        ToolCall(id="call_1", name="f", arguments="{}"),
        ToolCall(id="call_2", name="g", arguments='{"x": 1}'),
    )
    back = to_llama(core)
    assert back == message
    assert isinstance(back.additional_kwargs["tool_calls"][1], FakeToolCall)


def test_tool_call_block_of_a_user_message_is_an_other_part() -> None:
    message = ChatMessage(role="user", blocks=[ToolCallBlock(tool_name="f", tool_kwargs={})])
    core = to_core(message)
    assert core.tool_calls == ()
    assert isinstance(core.parts[0], OtherPart)
    assert core.parts[0].tokens > 0
    assert to_llama(core) == message


def test_tool_result_without_call_id_counts_as_a_function_result() -> None:
    message = ChatMessage(role="tool", content="42", additional_kwargs={"name": "add"})
    core = to_core(message)
    assert (core.role, core.name, core.tool_call_id) == ("function", "add", None)
    assert to_llama(core) == message


def test_core_edit_shows_after_conversion_back() -> None:
    """A cleared tool result (the core edits content) comes back edited, everything else kept."""
    original = ChatMessage(
        role="tool",
        blocks=[
            TextBlock(text="x " * 300),
            CachePoint(cache_control=CacheControl(type="ephemeral")),
        ],
        additional_kwargs={"tool_call_id": "call_1", "name": "lookup", "is_error": False},
    )
    core = to_core(original)
    edited = Message(
        role="tool",
        tool_call_id=core.tool_call_id,
        name=core.name,
        content="[tool result cleared: lookup, 301 tokens]",
        metadata=core.metadata,
    )
    back = to_llama(edited)
    assert back.role == MessageRole.TOOL
    assert back.blocks == [TextBlock(text="[tool result cleared: lookup, 301 tokens]")]
    assert back.additional_kwargs == {"tool_call_id": "call_1", "name": "lookup", "is_error": False}


def test_changed_tool_calls_replace_the_recorded_ones() -> None:
    original = ChatMessage(
        role="model",
        blocks=[TextBlock(text="Checking."), ToolCallBlock(tool_call_id="c1", tool_name="f")],
        additional_kwargs={
            "tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": ""}}]
        },
    )
    core = to_core(original)
    changed = Message(
        role="assistant",
        content=core.content,
        tool_calls=[ToolCall(id="c3", name="h", arguments='{"a": 1}')],
        metadata=core.metadata,
    )
    back = to_llama(changed)
    assert back.role == MessageRole.MODEL
    assert back.blocks == [
        TextBlock(text="Checking."),
        ToolCallBlock(tool_call_id="c3", tool_name="h", tool_kwargs={"a": 1}),
    ]
    assert "tool_calls" not in back.additional_kwargs


def test_core_made_and_openai_messages_convert_to_llama_index() -> None:
    summary = Message(role="system", content="<conversation_summary>notes</conversation_summary>")
    image = "data:image/png;base64," + base64.b64encode(png(4, 4)).decode()
    out = to_llama_messages(
        [
            summary,
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ]
    )
    assert out[0] == ChatMessage(role="system", content=summary.text)
    assert out[1].role == MessageRole.DEVELOPER
    assert out[2].blocks[0] == TextBlock(text="what is this?")
    assert isinstance(out[2].blocks[1], ImageBlock)
    assert (out[2].blocks[1].image_mimetype, out[2].blocks[1].detail) == ("image/png", "low")
    assert isinstance(out[2].blocks[2], AudioBlock)
    assert out[3].blocks == [ToolCallBlock(tool_call_id="c1", tool_name="f", tool_kwargs={"a": 1})]
    assert out[4].additional_kwargs == {"tool_call_id": "c1"}
    # converted again, each counts as the dict it came from
    assert COUNTER.count_message(to_core(out[3])) == COUNTER.count_message(
        Message.from_openai(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ],
            }
        )
    )


# ---------------------------------------------------------------------------- counts


def _calls(*calls: tuple[str, str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
        for i, n, a in calls
    ]


def _plain_pairs() -> list[tuple[list[ChatMessage], list[dict[str, Any]]]]:
    order = ("call_1", "lookup_order", {"order_id": "A-17"})
    weather = ("call_2", "get_weather", {"city": "Paris", "days": 3})
    image = "data:image/png;base64," + base64.b64encode(png(600, 400)).decode()
    return [
        (
            [
                ChatMessage(role="system", content="You are a support agent."),
                ChatMessage(role="user", content="Where is order A-17?"),
            ],
            [
                {"role": "system", "content": "You are a support agent."},
                {"role": "user", "content": "Where is order A-17?"},
            ],
        ),
        (
            [
                ChatMessage(role="developer", content="Be brief."),
                ChatMessage(role="user", content="hi", additional_kwargs={"name": "Ann"}),
                ChatMessage(
                    role="chatbot", content="Hello Ann!", additional_kwargs={"name": "bot"}
                ),
                ChatMessage(role="model", content="Anything else?"),
            ],
            [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "hi", "name": "Ann"},
                {"role": "assistant", "content": "Hello Ann!", "name": "bot"},
                {"role": "assistant", "content": "Anything else?"},
            ],
        ),
        (
            [
                ChatMessage(role="user", content="Order A-17 and the weather in Paris?"),
                ChatMessage(
                    role="assistant",
                    blocks=[
                        ToolCallBlock(tool_call_id=i, tool_name=n, tool_kwargs=a)
                        for i, n, a in (order, weather)
                    ],
                ),
                ChatMessage(
                    role="tool",
                    content="Shipped on 3 May.",
                    additional_kwargs={"tool_call_id": "call_1", "name": "lookup_order"},
                ),
                ChatMessage(
                    role="tool",
                    content='{"temp": 21}',
                    additional_kwargs={"tool_call_id": "call_2"},
                ),
                ChatMessage(role="assistant", content="It shipped; 21 degrees."),
            ],
            [
                {"role": "user", "content": "Order A-17 and the weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": _calls(order, weather)},
                {
                    "role": "tool",
                    "tool_call_id": "call_1",
                    "name": "lookup_order",
                    "content": "Shipped on 3 May.",
                },
                {"role": "tool", "tool_call_id": "call_2", "content": '{"temp": 21}'},
                {"role": "assistant", "content": "It shipped; 21 degrees."},
            ],
        ),
        (
            [
                ChatMessage(
                    role="assistant",
                    content="Let me check.",
                    additional_kwargs={"tool_calls": _calls(order)},
                ),
                ChatMessage(
                    role="tool", content="ok", additional_kwargs={"tool_call_id": "call_1"}
                ),
            ],
            [
                {"role": "assistant", "content": "Let me check.", "tool_calls": _calls(order)},
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            ],
        ),
        (
            [
                ChatMessage(
                    role="user",
                    blocks=[
                        TextBlock(text="What is in these pictures?"),
                        ImageBlock(url="https://example.com/cat.png", detail="low"),
                        ImageBlock(image=png(600, 400)),
                    ],
                ),
            ],
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these pictures?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
                        },
                        {"type": "image_url", "image_url": {"url": image}},
                    ],
                },
            ],
        ),
    ]


@pytest.mark.parametrize(("llama", "openai"), _plain_pairs())
def test_count_equals_the_openai_dicts(
    llama: list[ChatMessage], openai: list[dict[str, Any]]
) -> None:
    counted = COUNTER.count_messages(to_core_messages(llama))
    assert counted == COUNTER.count_messages(openai)
    assert counted > 3 * len(llama)  # really counted, not just overhead


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["user", "assistant", "system", "developer"]), TEXT),
        min_size=1,
        max_size=5,
    )
)
def test_count_of_plain_text_messages_matches_openai(pairs: list[tuple[str, str]]) -> None:
    llama = [ChatMessage(role=role, content=text) for role, text in pairs]
    openai = [{"role": role, "content": text} for role, text in pairs]
    assert COUNTER.count_messages(to_core_messages(llama)) == COUNTER.count_messages(openai)


# ---------------------------------------------------------------------------- refusals


def test_plain_object_is_refused_by_type() -> None:
    with pytest.raises(InvalidMessageError, match="got str"):
        to_core("hello")  # type: ignore[arg-type]


def test_unknown_role_is_refused_by_name() -> None:
    message = ChatMessage(role="user", content="beep")
    message.role = "robot"  # type: ignore[assignment]  # pydantic does not check assignments
    with pytest.raises(InvalidMessageError, match="'robot'"):
        to_core(message)


def test_foreign_block_is_refused_by_type() -> None:
    message = ChatMessage(role="user", content="hi")
    message.blocks.append({"type": "text", "text": "a dict"})  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="dict"):
        to_core(message)


def test_list_refusal_names_the_position() -> None:
    items = [ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="yo")]
    with pytest.raises(InvalidMessageError, match="int") as info:
        to_core_messages([*items, 3])  # type: ignore[list-item]
    assert info.value.index == 2


def test_one_message_instead_of_a_list_is_refused() -> None:
    with pytest.raises(InvalidMessageError, match="ChatMessage"):
        to_core_messages(ChatMessage(role="user", content="hi"))  # type: ignore[arg-type]


def test_part_without_a_llama_index_block_is_refused_by_kind() -> None:
    with pytest.raises(InvalidMessageError, match="'hologram'"):
        to_llama(Message(role="user", content=[OtherPart(kind="hologram", tokens=5)]))


def test_non_message_to_llama_is_refused() -> None:
    with pytest.raises(InvalidMessageError):
        to_llama(42)  # type: ignore[arg-type]


def test_record_survives_a_missing_file(tmp_path: Path) -> None:
    """A block naming a file that is gone comes back rebuilt from what the core counted."""
    picture = tmp_path / "cat.png"
    picture.write_bytes(png(4, 4))
    core = to_core(ChatMessage(role="user", blocks=[ImageBlock(path=picture, detail="low")]))
    picture.unlink()
    (block,) = to_llama(core).blocks
    assert isinstance(block, ImageBlock)
    assert (str(block.url), block.detail) == (picture.as_uri(), "low")
    assert core.metadata[LLAMA_INDEX_KEY]["blocks"][0]["path"] == str(picture)


# ---------------------------------------------------------------------------- provider usage


def _reply(raw: Any = None, **kwargs: Any) -> ChatResponse:
    return ChatResponse(
        message=ChatMessage(role="assistant", content="ok"), raw=raw, additional_kwargs=kwargs
    )


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (_reply({"usage": {"prompt_tokens": 120, "completion_tokens": 4}}), 120),
        (_reply(SimpleNamespace(usage=SimpleNamespace(prompt_tokens=77))), 77),
        (
            _reply(
                {
                    "usage": {
                        "input_tokens": 50,
                        "cache_read_input_tokens": 1000,
                        "cache_creation_input_tokens": None,
                    }
                }
            ),
            1050,
        ),
        (_reply({"usage_metadata": {"prompt_token_count": 33}}), 33),
        (_reply({"id": "x"}, prompt_tokens=12, completion_tokens=3, total_tokens=15), 12),
        (_reply({"usage": {"prompt_tokens": None}}), None),
        (_reply(), None),
        (object(), None),
    ],
)
def test_usage_input_tokens(response: Any, expected: int | None) -> None:
    assert usage_input_tokens(response) == expected
