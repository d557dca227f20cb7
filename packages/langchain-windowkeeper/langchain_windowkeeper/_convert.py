"""LangChain messages to and from windowkeeper's neutral messages, losing nothing.

What the core counts (role, content parts, name, tool calls with their ids and arguments, the tool
call id) lives in the core :class:`~windowkeeper.Message`; everything else LangChain carries
(message id, ``additional_kwargs``, ``response_metadata``, ``usage_metadata``, invalid tool calls,
a tool message's ``status`` and ``artifact``, the exact content blocks, the message class) rides in
``metadata["langchain"]``, which is never sent and never counted. Converting back takes what the
core models from the core message (so an edit the core made, a cleared tool result, say, shows)
and the rest from that record, so ``to_langchain(to_core(m)) == m`` for every message LangChain
can send.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    RemoveMessage,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from windowkeeper import (
    MESSAGE_ID,
    ContentPart,
    ImagePart,
    InvalidMessageError,
    Message,
    OtherPart,
    ReasoningPart,
    TextPart,
    ToolCall,
    as_message,
)
from windowkeeper._messages import SYSTEM_ROLES
from windowkeeper.adapters import convert_each, nonempty_parts, upper_bound_tokens

__all__ = ["LANGCHAIN_KEY", "to_core", "to_core_messages", "to_langchain", "to_langchain_messages"]

logger = logging.getLogger("langchain_windowkeeper")

LANGCHAIN_KEY = "langchain"
"""``Message.metadata`` key of the LangChain fields the core does not model."""

_CLASSES: dict[str, type[BaseMessage]] = {
    cls.__name__: cls
    for cls in (
        AIMessage,
        AIMessageChunk,
        ChatMessage,
        ChatMessageChunk,
        FunctionMessage,
        FunctionMessageChunk,
        HumanMessage,
        HumanMessageChunk,
        SystemMessage,
        SystemMessageChunk,
        ToolMessage,
        ToolMessageChunk,
    )
}
# fields the core message holds (or that are derived): not repeated in the record
_MODELLED = frozenset({"content", "tool_calls", "tool_call_id", "name", "id", "type"})
_CHAT_ROLES = {"human": "user", "ai": "assistant", "user": "user", "assistant": "assistant"}
# content blocks that repeat a structured tool call (counted through tool_calls, not twice)
_CALL_BLOCKS = frozenset({"tool_use", "tool_call", "server_tool_call", "tool_call_chunk"})


@functools.cache
def _defaults(cls: type[BaseMessage]) -> dict[str, Any]:
    """Each field's default value (compared only, never handed out)."""
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in cls.model_fields.items()
    }


def _role(message: BaseMessage) -> str:
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, SystemMessage):
        developer = message.additional_kwargs.get("__openai_role__") == "developer"
        return "developer" if developer else "system"
    if isinstance(message, ToolMessage):
        return "tool"
    if isinstance(message, FunctionMessage):
        return "function"
    if isinstance(message, ChatMessage):
        role = _CHAT_ROLES.get(message.role, message.role)
        if role in ("user", "assistant", *SYSTEM_ROLES):
            return role
        raise InvalidMessageError(
            f"ChatMessage.role must be one of user, assistant, human, ai, system, developer; "
            f"got {message.role!r}"
        )
    raise InvalidMessageError(
        f"cannot convert a {type(message).__name__}: windowkeeper converts HumanMessage, "
        "AIMessage, SystemMessage, ToolMessage, FunctionMessage and ChatMessage (and their chunks)"
    )


def _detail(*candidates: object) -> Literal["auto", "low", "high"]:
    for value in candidates:
        if value == "low":
            return "low"
        if value == "high":
            return "high"
    return "auto"


def _image(block: Mapping[str, Any]) -> ImagePart | None:
    """A LangChain v1 image block (``url`` or ``base64`` + ``mime_type``) as an image part."""
    detail = _detail(block.get("detail"), (block.get("extras") or {}).get("detail"))
    if isinstance(block.get("url"), str):
        return ImagePart(url=block["url"], detail=detail)
    if isinstance(block.get("base64"), str):
        mime = block.get("mime_type") or "image/png"
        return ImagePart(url=f"data:{mime};base64,{block['base64']}", detail=detail)
    return None


def _reasoning_text(block: Mapping[str, Any]) -> str:
    for key in ("reasoning", "thinking", "text"):
        if isinstance(block.get(key), str):
            return str(block[key])
    summary = block.get("summary")
    if isinstance(summary, list):
        return "\n".join(str(s.get("text", "")) for s in summary if isinstance(s, Mapping))
    return ""


def _part(block: str | Mapping[str, Any]) -> ContentPart:
    if isinstance(block, str):
        return TextPart(text=block)
    if not isinstance(block, Mapping):
        raise InvalidMessageError(
            f"a content block must be a str or a dict; got {type(block).__name__}"
        )
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return TextPart(text=block["text"])
    if kind == "image_url":
        image = block.get("image_url")
        if isinstance(image, str):
            return ImagePart(url=image)
        if isinstance(image, Mapping) and isinstance(image.get("url"), str):
            detail = image.get("detail", "auto")
            return ImagePart(
                url=image["url"], detail=detail if detail in ("low", "high") else "auto"
            )
    if kind == "image" and (part := _image(block)) is not None:
        return part
    if kind in ("reasoning", "thinking", "redacted_thinking"):
        return ReasoningPart(text=_reasoning_text(block))
    name = kind if isinstance(kind, str) and kind else "unknown"
    tokens = 0 if kind in _CALL_BLOCKS else upper_bound_tokens(block)
    return OtherPart(kind=name, tokens=tokens, data=dict(block))


def _parts(content: str | Sequence[str | Mapping[str, Any]]) -> tuple[ContentPart, ...]:
    if isinstance(content, str):
        return (TextPart(text=content),) if content else ()
    return tuple(_part(b) for b in content)


def _jsonable(name: str, value: Any) -> Any:
    """``value`` when JSON can hold it (the SQLite store writes JSON); else its repr, logged."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        logger.warning(
            "LangChain field %s holds a %s that JSON cannot store; keeping its repr",
            name,
            type(value).__name__,
        )
        return repr(value)
    return value


def to_core(message: BaseMessage) -> Message:
    """One LangChain message as a core :class:`~windowkeeper.Message` (nothing dropped).

    Raises:
        InvalidMessageError: ``message`` is not a LangChain message we can send to a model
            (a ``RemoveMessage``, another object); the error names its type.
    """
    if isinstance(message, RemoveMessage) or not isinstance(message, BaseMessage):
        raise InvalidMessageError(
            f"expected a LangChain message (HumanMessage, AIMessage, SystemMessage, ToolMessage, "
            f"...); got {type(message).__name__}"
        )
    role = _role(message)
    record: dict[str, Any] = {"class": type(message).__name__}
    defaults = _defaults(type(message))
    for key, value in message.__dict__.items():
        if key in _MODELLED:
            continue
        if key in defaults and value == defaults[key]:
            continue  # the class's default comes back by itself
        record[key] = _jsonable(key, value)
    if isinstance(message.content, list):
        record["content"] = _jsonable("content", message.content)
    name = message.name
    if role in ("tool",) and name is not None:  # a tool message's name is not sent to the model
        record["name"] = name
        name = None
    calls: tuple[ToolCall, ...] = ()
    if isinstance(message, AIMessage):
        calls = tuple(
            ToolCall(id=c.get("id"), name=c["name"], arguments=json.dumps(c.get("args", {})))
            for c in message.tool_calls
        )
    metadata: dict[str, Any] = {LANGCHAIN_KEY: record}
    if message.id is not None:
        metadata[MESSAGE_ID] = message.id
    return Message(
        role=role,  # type: ignore[arg-type]
        content=_parts(message.content),
        name=name if role != "function" else message.name,
        tool_calls=calls,
        tool_call_id=getattr(message, "tool_call_id", None),
        metadata=metadata,
    )


def _block(part: ContentPart) -> str | dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "image_url", "image_url": {"url": part.url, "detail": part.detail}}
    if isinstance(part, ReasoningPart):
        return {"type": "reasoning", "reasoning": part.text}
    return dict(part.data) if part.data else {"type": part.kind}


def _content(message: Message, record: Mapping[str, Any]) -> str | list[str | dict[str, Any]]:
    original = record.get("content")
    if isinstance(original, list):
        try:
            if nonempty_parts(_parts(original)) == nonempty_parts(message.parts):
                return list(original)
        except InvalidMessageError:
            pass
    parts = message.parts
    if not parts:
        return ""
    if len(parts) == 1 and isinstance(parts[0], TextPart) and not isinstance(original, list):
        return parts[0].text
    return [_block(p) for p in parts]


def _default_class(message: Message) -> type[BaseMessage]:
    classes: dict[str, type[BaseMessage]] = {
        "user": HumanMessage,
        "assistant": AIMessage,
        "system": SystemMessage,
        "developer": SystemMessage,
        "tool": ToolMessage,
        "function": FunctionMessage,
    }
    return classes[message.role]


def to_langchain(message: Message | Mapping[str, Any]) -> BaseMessage:
    """A core message (or OpenAI chat dict) as the LangChain message it came from.

    Messages the core made (a summary or recalled block) become ``SystemMessage``s; a message
    converted by :func:`to_core` comes back equal to the original.
    """
    if not isinstance(message, Message):
        message = as_message(message)
    record = message.metadata.get(LANGCHAIN_KEY) or {}
    cls = _CLASSES.get(str(record.get("class"))) or _default_class(message)
    fields: dict[str, Any] = {
        k: v for k, v in record.items() if k not in ("class", "content", "name")
    }
    fields["content"] = _content(message, record)
    fields["id"] = message.metadata.get(MESSAGE_ID)
    name = message.name if message.name is not None else record.get("name")
    if name is not None:
        fields["name"] = name
    if message.role == "developer" and issubclass(cls, SystemMessage):
        kwargs = dict(fields.get("additional_kwargs") or {})
        kwargs["__openai_role__"] = "developer"
        fields["additional_kwargs"] = kwargs
    if issubclass(cls, AIMessage):
        fields["tool_calls"] = [
            {"name": c.name, "args": _args(c.arguments), "id": c.id, "type": "tool_call"}
            for c in message.tool_calls
        ]
    if issubclass(cls, ToolMessage):
        fields["tool_call_id"] = message.tool_call_id or ""
    if issubclass(cls, ChatMessage) and "role" not in fields:
        fields["role"] = message.role
    if issubclass(cls, FunctionMessage) and "name" not in fields:
        fields["name"] = ""
    return cls(**fields)


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"__raw__": arguments}
    return value if isinstance(value, dict) else {"__raw__": arguments}


def to_core_messages(messages: Iterable[BaseMessage]) -> list[Message]:
    """:func:`to_core` over a list; an error names the position of the message it refused."""
    return convert_each(messages, to_core)


def to_langchain_messages(messages: Iterable[Message | Mapping[str, Any]]) -> list[BaseMessage]:
    """:func:`to_langchain` over a list."""
    return [to_langchain(m) for m in messages]
