"""LlamaIndex chat messages to and from windowkeeper's neutral messages, losing nothing.

What the core counts lives in the core :class:`~windowkeeper.Message`: the role, the content
blocks as parts (text, images, reasoning, and every other block with a token estimate), the
name, the tool calls (tool-call blocks and legacy ``additional_kwargs["tool_calls"]``) and a
tool result's call id. Everything else a ``ChatMessage`` carries (the exact blocks, the rest of
``additional_kwargs``, a role the core spells differently) rides in ``metadata["llama_index"]``,
which is never sent and never counted. Converting back takes what the core models from the core
message (so an edit the core made, a cleared tool result, say, shows) and the rest from that
record, so ``to_llama(to_core(m)) == m`` for every message LlamaIndex can hold.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from io import IOBase
from pathlib import Path
from typing import Any, Literal

from windowkeeper import (
    MESSAGE_ID,
    ContentPart,
    ImagePart,
    InvalidConfigError,
    InvalidMessageError,
    Message,
    OtherPart,
    ReasoningPart,
    Role,
    TextPart,
    ToolCall,
    as_message,
    prompt_tokens_from_usage,
)
from windowkeeper.adapters import convert_each, nonempty_parts, upper_bound_tokens

from llama_index.core.base.llms.types import (
    AudioBlock,
    CachePoint,
    ChatMessage,
    ContentBlock,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = [
    "LLAMA_INDEX_KEY",
    "message_key",
    "to_core",
    "to_core_messages",
    "to_llama",
    "to_llama_messages",
    "usage_input_tokens",
]

logger = logging.getLogger("llama_index.memory.windowkeeper")

LLAMA_INDEX_KEY = "llama_index"
"""``Message.metadata`` key of the LlamaIndex fields the core does not model."""

_CORE_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "developer",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "function",
    "chatbot": "assistant",  # Cohere's name for the assistant
    "model": "assistant",  # Gemini's name for the assistant
}
# the ChatMessage fields the converter handles itself; any other field (none in 0.14) is recorded
_HANDLED = frozenset({"role", "additional_kwargs", "blocks"})
# LlamaIndex's own estimate of a medium it cannot measure without fetching it
# (``estimate_tokens`` of each block): the least a referenced audio, video or document counts
_FLOORS = {"audio": 256, "video": 256 * 8, "document": 512}
# modules whose pydantic objects in additional_kwargs (openai's tool calls, LlamaIndex's
# ImageDocument) are rebuilt even before the process imported them
_IMPORTABLE = frozenset({"openai", "anthropic", "llama_index"})
_TAG = "__windowkeeper__"  # marks a value JSON cannot hold as such (bytes, tuple, pydantic object)


# ---------------------------------------------------------------------------- to the core


def to_core(message: ChatMessage) -> Message:
    """One LlamaIndex ``ChatMessage`` as a core :class:`~windowkeeper.Message` (nothing dropped).

    Tool calls count: a ``ToolCallBlock`` (or an OpenAI-style entry of
    ``additional_kwargs["tool_calls"]``) of an assistant message becomes a core
    :class:`~windowkeeper.ToolCall`. An image becomes an image part: its URL, a data URL of its
    bytes (whose header gives the size the tile rule needs) or its file's ``file://`` URL (counted
    at the rule's upper bound). Audio, video, documents, citations and an image without data
    become an :class:`~windowkeeper.OtherPart` costing one token per byte of the block's JSON; a
    medium named only by URL or path costs at least LlamaIndex's own estimate. ``chatbot``
    (Cohere) and ``model`` (Gemini) count as ``assistant``; a ``tool`` message without
    ``additional_kwargs["tool_call_id"]`` counts as a legacy ``function`` result.

    Raises:
        InvalidMessageError: ``message`` is not a ``ChatMessage``, or its role or a block is one
            the core cannot hold; the error names the type or the role.

    Example:
        >>> from llama_index.core.llms import ChatMessage
        >>> core = to_core(ChatMessage(role="chatbot", content="Hello Ann!",
        ...                            additional_kwargs={"name": "bot"}))
        >>> core.role, core.text, core.name
        ('assistant', 'Hello Ann!', 'bot')
    """
    if not isinstance(message, ChatMessage):
        raise InvalidMessageError(
            f"expected a LlamaIndex ChatMessage; got {type(message).__name__}"
        )
    llama_role = _role_value(message.role)
    kwargs = message.additional_kwargs
    if not isinstance(kwargs, Mapping):
        raise InvalidMessageError(
            f"ChatMessage.additional_kwargs must be a dict; got {type(kwargs).__name__}"
        )
    role = _CORE_ROLES[llama_role]
    tool_call_id = kwargs.get("tool_call_id") if role == "tool" else None
    if role == "tool" and not (isinstance(tool_call_id, str) and tool_call_id):
        role, tool_call_id = "function", None  # a result without a call id: a legacy function's
    name = kwargs.get("name")
    name = name if isinstance(name, str) else None
    record: dict[str, Any] = {}
    if role != llama_role:
        record["role"] = llama_role
    rest = {
        k: v
        for k, v in kwargs.items()
        if not (k == "name" and name is not None) and not (k == "tool_call_id" and tool_call_id)
    }
    if rest:
        record["additional_kwargs"] = _encode(rest, "additional_kwargs")
    fields = _extra_fields(message)
    if fields:
        record["fields"] = fields
    blocks = message.blocks
    if all(type(b) is TextBlock and b.text for b in blocks):
        parts: list[ContentPart] = [TextPart(text=b.text) for b in blocks if type(b) is TextBlock]
        calls: list[ToolCall] = []
    else:
        blocks = [_normalised(b) for b in blocks]
        dumps = [_dump(b) for b in blocks]
        record["blocks"] = dumps
        parts, calls = _split(_part(b, d, role) for b, d in zip(blocks, dumps, strict=True))
    metadata: dict[str, Any] = {LLAMA_INDEX_KEY: record}
    key = message_key(message)
    if key is not None:
        metadata[MESSAGE_ID] = key
    return Message(
        role=role,
        content=parts,
        name=name,
        tool_calls=_merge(calls, _kwargs_calls(kwargs, role)),
        tool_call_id=tool_call_id,
        metadata=metadata,
    )


def _role_value(role: object) -> str:
    value = role.value if isinstance(role, MessageRole) else role
    if isinstance(value, str) and value in _CORE_ROLES:
        return value
    raise InvalidMessageError(
        f"ChatMessage.role must be one of {sorted(_CORE_ROLES)}; got {role!r}"
    )


@functools.cache
def _defaults(cls: type[ChatMessage]) -> dict[str, Any]:
    """Each field's default value (compared only, never handed out)."""
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in cls.model_fields.items()
    }


def _extra_fields(message: ChatMessage) -> dict[str, Any]:
    """Fields beyond role, kwargs and blocks that differ from their default (none in 0.14)."""
    defaults = _defaults(type(message))
    return {
        name: _encode(getattr(message, name), name)
        for name in defaults
        if name not in _HANDLED and getattr(message, name) != defaults[name]
    }


def message_key(message: ChatMessage) -> str | None:
    """A stable id of ``message`` when LlamaIndex gives it one; ``None`` otherwise.

    LlamaIndex 0.14's ``ChatMessage`` has no id (its fields are ``role``, ``additional_kwargs``
    and ``blocks``) and no LlamaIndex component writes one into ``additional_kwargs``, so this is
    ``None`` today: key such messages by their position. It reads an ``id`` field should a later
    release add one, and :func:`to_core` keeps it under ``metadata["message_id"]``.

    Example:
        >>> from llama_index.core.llms import ChatMessage
        >>> message_key(ChatMessage(role="user", content="hi")) is None
        True
    """
    if "id" not in type(message).model_fields:
        return None
    value = getattr(message, "id", None)
    return value if isinstance(value, str) and value else None


def _normalised(block: object) -> Any:
    """``block``, with any stream (``BytesIO``, a file) read into base64 bytes, as JSON holds."""
    if not isinstance(block, BaseModel) or not isinstance(getattr(block, "block_type", None), str):
        raise InvalidMessageError(
            f"a ChatMessage block must be one of LlamaIndex's content blocks; got "
            f"{type(block).__name__}"
        )
    if _holds_stream(block):
        return type(block).model_validate(block.model_dump())
    return block


def _holds_stream(value: object) -> bool:
    if isinstance(value, IOBase):
        return True
    if isinstance(value, BaseModel):
        return any(_holds_stream(v) for v in value.__dict__.values())
    if isinstance(value, list):
        return any(_holds_stream(v) for v in value)
    return False


def _dump(block: BaseModel) -> dict[str, Any]:
    """The block as JSON data (what a store writes); values JSON cannot hold are kept as repr."""
    try:
        data = block.model_dump(mode="json", fallback=functools.partial(_repr, "a block"))
    except ValueError:  # bytes that are not UTF-8 text in a free-form field
        data = block.model_dump()
    encoded: dict[str, Any] = _encode(data, type(block).__name__)
    return encoded


def _part(block: Any, dump: Mapping[str, Any], role: str) -> ContentPart | ToolCall:
    """What the core counts for one block: a part, or (an assistant's tool call) a ToolCall."""
    if isinstance(block, TextBlock):
        return TextPart(text=block.text)
    if isinstance(block, ThinkingBlock):
        return ReasoningPart(text=block.content or "")
    if isinstance(block, ToolCallBlock) and role == "assistant":
        return ToolCall(
            id=block.tool_call_id, name=block.tool_name, arguments=_arguments(block.tool_kwargs)
        )
    if isinstance(block, ImageBlock) and (image := _image(block)) is not None:
        return image
    kind = str(block.block_type)
    if isinstance(block, CachePoint):  # a marker: nothing is sent
        return OtherPart(kind=kind, tokens=0, data=dump)
    return OtherPart(
        kind=kind, tokens=max(upper_bound_tokens(dump), _FLOORS.get(kind, 0)), data=dump
    )


def _image(block: ImageBlock) -> ImagePart | None:
    """An image block as an image part: a URL, a data URL of its bytes, or its file's URL."""
    detail: Literal["auto", "low", "high"] = (
        "low" if block.detail == "low" else "high" if block.detail == "high" else "auto"
    )
    if isinstance(block.image, bytes) and block.image:
        try:
            data = block.image.decode("ascii")  # LlamaIndex keeps image bytes base64-encoded
        except UnicodeDecodeError:
            data = base64.b64encode(block.image).decode("ascii")
        mime = block.image_mimetype or ""
        mime = mime if mime.startswith("image/") else "image/png"
        return ImagePart(url=f"data:{mime};base64,{data}", detail=detail)
    if block.url is not None and str(block.url):
        return ImagePart(url=str(block.url), detail=detail)
    if block.path is not None:
        return ImagePart(url=Path(block.path).absolute().as_uri(), detail=detail)
    return None


def _arguments(value: object) -> str:
    """Tool-call arguments as the JSON text the core counts (a string is kept verbatim)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "{}"
    return json.dumps(value, default=str)


def _split(items: Iterable[ContentPart | ToolCall]) -> tuple[list[ContentPart], list[ToolCall]]:
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for item in items:
        if isinstance(item, ToolCall):
            calls.append(item)
        else:
            parts.append(item)
    return parts, calls


def _field(obj: object, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _kwargs_calls(kwargs: Mapping[str, Any], role: str) -> list[ToolCall]:
    """An assistant's legacy tool calls in ``additional_kwargs`` (``tool_calls``, ``function_call``).

    Entries may be OpenAI dicts, openai ``ChatCompletionMessageToolCall`` objects or LlamaIndex
    ``ToolSelection`` objects.
    """
    if role != "assistant":
        return []
    calls: list[ToolCall] = []
    entries = kwargs.get("tool_calls")
    if entries is not None and not isinstance(entries, (list, tuple)):
        logger.warning(
            "additional_kwargs['tool_calls'] is a %s, not a list; its calls are not counted",
            type(entries).__name__,
        )
        entries = None
    for entry in entries or ():
        function = _field(entry, "function")
        if function is not None:  # OpenAI's shape
            name, args = _field(function, "name"), _field(function, "arguments")
            call_id = _field(entry, "id")
        else:  # LlamaIndex's ToolSelection
            name, args, call_id = (
                _field(entry, "tool_name"),
                _field(entry, "tool_kwargs"),
                _field(entry, "tool_id"),
            )
        if not isinstance(name, str):
            logger.warning("a tool call in additional_kwargs has no name (%r); not counted", entry)
            continue
        call_id = call_id if isinstance(call_id, str) else None
        calls.append(ToolCall(id=call_id, name=name, arguments=_arguments(args)))
    legacy = kwargs.get("function_call")
    if legacy and isinstance(name := _field(legacy, "name"), str):
        calls.append(
            ToolCall(id=None, name=name, arguments=_arguments(_field(legacy, "arguments")))
        )
    return calls


def _merge(blocks: list[ToolCall], legacy: list[ToolCall]) -> list[ToolCall]:
    """Block calls, then the legacy ones not repeating a block's call id (never counted twice)."""
    ids = {c.id for c in blocks if c.id}
    return blocks + [c for c in legacy if not (c.id and c.id in ids)]


def _repr(where: str, value: Any) -> str:
    logger.warning(
        "%s holds a %s that JSON cannot store; keeping its repr", where, type(value).__name__
    )
    return repr(value)


def _encode(value: Any, where: str) -> Any:
    """``value`` as JSON data (the SQLite store writes JSON) that :func:`_decode` reverses.

    Bytes, tuples and pydantic objects (openai's tool calls) are tagged so they come back as
    they were; anything else JSON cannot hold is kept as its repr, with a logged warning.
    """
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        out = {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {_TAG: "dict", "value": out} if _TAG in value else out
    if isinstance(value, tuple):
        return {_TAG: "tuple", "value": [_encode(v, where) for v in value]}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "value": base64.b64encode(value).decode("ascii")}
    if isinstance(value, BaseModel):
        cls = type(value)
        try:
            data = value.model_dump(mode="json", round_trip=True)
        except ValueError:
            return _repr(where, value)
        return {
            _TAG: "model",
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "value": _encode(data, where),
        }
    return _repr(where, value)


# ---------------------------------------------------------------------------- back to LlamaIndex


def to_llama(message: Message | Mapping[str, Any]) -> ChatMessage:
    """A core message (or OpenAI chat dict) as the LlamaIndex ``ChatMessage`` it came from.

    A message converted by :func:`to_core` comes back equal to the original (a stream in a
    block comes back as its bytes); messages the core made (a summary, a recalled turn) become
    plain ``ChatMessage`` objects, their tool calls ``ToolCallBlock`` objects.

    Example:
        >>> reply = to_llama({"role": "tool", "tool_call_id": "call_1", "content": "Shipped."})
        >>> reply.role.value, reply.content, reply.additional_kwargs
        ('tool', 'Shipped.', {'tool_call_id': 'call_1'})
    """
    if not isinstance(message, Message):
        message = as_message(message)
    record = message.metadata.get(LLAMA_INDEX_KEY)
    record = record if isinstance(record, Mapping) else {}
    original_role = record.get("role")
    role: str = message.role
    if isinstance(original_role, str) and original_role in _CORE_ROLES:
        # restore the role to_core renamed (chatbot, model; tool without a call id)
        fallback = "function" if original_role == "tool" else _CORE_ROLES[original_role]
        if fallback == message.role:
            role = original_role
    kwargs = _decode(record.get("additional_kwargs"))
    kwargs = dict(kwargs) if isinstance(kwargs, Mapping) else {}
    blocks = _blocks(message, record.get("blocks"), kwargs)
    if message.name is not None:
        kwargs["name"] = message.name
    if message.tool_call_id is not None and message.role == "tool":
        kwargs["tool_call_id"] = message.tool_call_id
    fields = _decode(record.get("fields"))
    fields = dict(fields) if isinstance(fields, Mapping) else {}
    # "images" (legacy ImageDocuments) would be appended to the blocks again on construction
    out = ChatMessage(
        role=MessageRole(role),
        blocks=blocks,
        additional_kwargs={k: v for k, v in kwargs.items() if k != "images"},
        **fields,
    )
    if "images" in kwargs:
        out.additional_kwargs = kwargs
    return out


def _blocks(message: Message, dumps: object, kwargs: dict[str, Any]) -> list[Any]:
    """The blocks: the recorded ones where the core's parts and calls still match them."""
    original = _restore(dumps) if isinstance(dumps, list) else None
    legacy = _kwargs_calls(kwargs, message.role)
    content: list[Any] = []  # the recorded blocks that are not tool calls
    call_blocks: list[Any] = []
    same_parts = False
    if original is not None and isinstance(dumps, list):
        derived = [_part(b, d, message.role) for b, d in zip(original, dumps, strict=True)]
        content = [b for b, d in zip(original, derived, strict=True) if not isinstance(d, ToolCall)]
        call_blocks = [b for b, d in zip(original, derived, strict=True) if isinstance(d, ToolCall)]
        parts, block_calls = _split(derived)
        same_parts = nonempty_parts(parts) == nonempty_parts(message.parts)
    else:
        block_calls = []
    same_calls = _stored_order(_merge(block_calls, legacy)) == _stored_order(message.tool_calls)
    if original is not None and same_parts and same_calls:
        return list(original)  # in their order, tool calls among the rest
    blocks = content if same_parts else [_block(p) for p in message.parts]
    if same_calls:
        return blocks + call_blocks
    if legacy:
        kwargs.pop("tool_calls", None)
        kwargs.pop("function_call", None)
    return blocks + [
        ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=_args(c.arguments))
        for c in message.tool_calls
    ]


def _stored_order(calls: Sequence[ToolCall]) -> tuple[ToolCall, ...]:
    """Calls as a store gives them back: those with an id first, then legacy function calls."""
    return tuple(c for c in calls if c.id is not None) + tuple(c for c in calls if c.id is None)


@functools.cache
def _adapter() -> TypeAdapter[list[ContentBlock]]:
    return TypeAdapter(list[ContentBlock])


@functools.cache
def _block_adapter() -> TypeAdapter[ContentBlock]:
    return TypeAdapter(ContentBlock)


def _restore(dumps: list[Any]) -> list[Any] | None:
    """The recorded blocks, rebuilt; ``None`` (logged) when they no longer validate."""
    data = [_decode(d) for d in dumps]
    try:
        blocks = _adapter().validate_python(data)
    except ValidationError as exc:  # a file a block named is gone, say
        first = exc.errors()[0]
        logger.warning(
            "recorded LlamaIndex blocks no longer validate (%s at %s); rebuilt from the parts",
            first["msg"],
            first["loc"],
        )
        return None
    for block, values in zip(blocks, data, strict=True):
        _keep_nones(block, values)
    return blocks


def _keep_nones(model: BaseModel, data: Mapping[str, Any]) -> None:
    """Undo a validator's guess of a field that was ``None`` (a document's MIME type, say)."""
    for name, value in data.items():
        if name not in type(model).model_fields:
            continue
        current = getattr(model, name)
        if value is None and current is not None:
            setattr(model, name, None)
        elif isinstance(current, BaseModel) and isinstance(value, Mapping):
            _keep_nones(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            for item, item_data in zip(current, value, strict=False):
                if isinstance(item, BaseModel) and isinstance(item_data, Mapping):
                    _keep_nones(item, item_data)


def _block(part: ContentPart) -> Any:
    """A block for a part the core made or changed."""
    if isinstance(part, TextPart):
        return TextBlock(text=part.text)
    if isinstance(part, ReasoningPart):
        return ThinkingBlock(content=part.text)
    if isinstance(part, ImagePart):
        detail = None if part.detail == "auto" else part.detail
        head, sep, data = part.url.partition(";base64,")
        if sep and head.startswith("data:image/"):
            return ImageBlock(image=data.encode(), image_mimetype=head[5:], detail=detail)
        return ImageBlock(url=part.url, detail=detail)
    data = _decode(dict(part.data))
    if isinstance(data.get("block_type"), str):
        try:
            block = _block_adapter().validate_python(data)
        except ValidationError:
            pass
        else:
            _keep_nones(block, data)
            return block
    audio = data.get("input_audio")
    if part.kind == "input_audio" and isinstance(audio, Mapping):
        return AudioBlock(audio=str(audio.get("data", "")).encode(), format=audio.get("format"))
    file = data.get("file")
    if part.kind == "file" and isinstance(file, Mapping) and file.get("file_data"):
        return DocumentBlock(url=file["file_data"], title=file.get("filename"))
    raise InvalidMessageError(
        f"a {part.kind!r} part has no LlamaIndex block (text, image, reasoning, input_audio, "
        "file and parts made by to_core convert)"
    )


def _args(arguments: str) -> dict[str, Any] | str:
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value if isinstance(value, dict) else arguments


def _decode(value: Any) -> Any:
    """The value :func:`_encode` stored."""
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag, inner = value.get(_TAG), value.get("value")
    if tag == "dict" and isinstance(inner, dict):
        return {k: _decode(v) for k, v in inner.items()}
    if tag == "tuple" and isinstance(inner, list):
        return tuple(_decode(v) for v in inner)
    if tag == "bytes" and isinstance(inner, str):
        return base64.b64decode(inner)
    if tag == "model":
        return _model(value.get("class"), _decode(inner))
    return {k: _decode(v) for k, v in value.items()}


def _model(path: object, data: Any) -> Any:
    """The pydantic object of class ``path`` (``module:qualname``) from ``data``; else ``data``."""
    cls = _model_class(path) if isinstance(path, str) else None
    if cls is None:
        return data
    try:
        return cls.model_validate(data)
    except ValidationError:
        logger.warning("recorded %s no longer validates; kept as a dict", path)
        return data


def _model_class(path: str) -> type[BaseModel] | None:
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None and module_name.split(".")[0] in _IMPORTABLE:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
    obj: Any = module
    for name in qualname.split("."):
        obj = getattr(obj, name, None)
    return obj if isinstance(obj, type) and issubclass(obj, BaseModel) else None


# ---------------------------------------------------------------------------- lists and usage


def to_core_messages(messages: Iterable[ChatMessage]) -> list[Message]:
    """:func:`to_core` over a list; an error names the position of the message it refused.

    Example:
        >>> from llama_index.core.llms import ChatMessage
        >>> [m.role for m in to_core_messages([ChatMessage(role="user", content="hi")])]
        ['user']
    """
    if isinstance(messages, (str, bytes, Mapping, ChatMessage)) or not isinstance(
        messages, Iterable
    ):
        raise InvalidMessageError(
            f"expected a list of LlamaIndex ChatMessages; got {type(messages).__name__}"
        )
    return convert_each(messages, to_core)


def to_llama_messages(messages: Iterable[Message | Mapping[str, Any]]) -> list[ChatMessage]:
    """:func:`to_llama` over a list.

    Example:
        >>> [str(m) for m in to_llama_messages([{"role": "user", "content": "hi"}])]
        ['user: hi']
    """
    return [to_llama(m) for m in messages]


def usage_input_tokens(response: Any) -> int | None:
    """The prompt tokens a provider reported for a LlamaIndex ``ChatResponse``; ``None`` if none.

    Reads ``response.raw``'s ``usage`` (OpenAI's ``prompt_tokens``, Anthropic's ``input_tokens``
    plus cache reads and writes, dict or object) or ``usage_metadata`` (Gemini's
    ``prompt_token_count``), then ``response.additional_kwargs`` (where LlamaIndex's OpenAI
    integration puts ``prompt_tokens``). Feed it to ``TokenCounter.calibrate``.

    Example:
        >>> from llama_index.core.llms import ChatMessage, ChatResponse
        >>> reply = ChatResponse(message=ChatMessage(role="assistant", content="hi"),
        ...                      raw={"usage": {"prompt_tokens": 129, "completion_tokens": 3}})
        >>> usage_input_tokens(reply)
        129
    """
    raw = getattr(response, "raw", None)
    for usage in (
        _field(raw, "usage") if raw is not None else None,
        _field(raw, "usage_metadata") if raw is not None else None,
        getattr(response, "additional_kwargs", None),
    ):
        if usage is None:
            continue
        try:
            tokens = prompt_tokens_from_usage(usage)
        except InvalidConfigError:
            tokens = _field(usage, "prompt_token_count")
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0:
            return tokens
    return None
