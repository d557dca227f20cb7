"""The neutral chat message and its conversion to and from OpenAI chat dicts.

Every framework adapter converts to this model at its boundary; the core never sees a framework type.
Messages are frozen: strategies build new lists, they never edit a message in place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, TypeVar, cast, get_args

from windowkeeper.exceptions import InvalidMessageError

__all__ = [
    "ContentPart",
    "ImagePart",
    "Message",
    "OtherPart",
    "ReasoningPart",
    "Role",
    "TextPart",
    "ToolCall",
    "as_message",
    "as_messages",
    "messages_from_openai",
    "messages_to_openai",
    "validate_tool_pairs",
]

Role: TypeAlias = Literal["system", "developer", "user", "assistant", "tool", "function"]
"""Message roles. ``developer`` is OpenAI's newer name for system; ``function`` is the legacy tool result."""

ImageDetail: TypeAlias = Literal["auto", "low", "high"]

_ROLES: frozenset[str] = frozenset(get_args(Role))
SYSTEM_ROLES: tuple[str, ...] = ("system", "developer")
"""Roles that carry instructions."""
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_T = TypeVar("_T")


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value)) if value else _EMPTY


@dataclass(frozen=True, kw_only=True, slots=True)
class TextPart:
    """Plain text content.

    Example:
        >>> TextPart(text="hello").text
        'hello'
    """

    text: str
    """The text, counted with the model's encoding."""

    def __post_init__(self) -> None:
        _check_str("TextPart.text", self.text)


@dataclass(frozen=True, kw_only=True, slots=True)
class ImagePart:
    """An image, counted with OpenAI's documented tile rule.

    Example:
        >>> ImagePart(url="https://example.com/cat.png", detail="low").detail
        'low'
    """

    url: str
    """An ``https://`` URL or a ``data:image/...;base64,`` URL."""
    detail: ImageDetail = "auto"
    """OpenAI's detail level; ``auto`` is counted as ``high`` (the upper bound)."""
    width: int | None = None
    """Pixel width when known; read from a data URL's header when not given."""
    height: int | None = None
    """Pixel height when known; read from a data URL's header when not given."""

    def __post_init__(self) -> None:
        _check_str("ImagePart.url", self.url)
        if self.detail not in _DETAILS:
            raise InvalidMessageError(
                f"ImagePart.detail must be one of {list(_DETAILS)}; got {self.detail!r}"
            )
        for label, value in (("width", self.width), ("height", self.height)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise InvalidMessageError(
                    f"ImagePart.{label} must be a positive int (pixels) or None; got {value!r}"
                )


@dataclass(frozen=True, kw_only=True, slots=True)
class ReasoningPart:
    """A reasoning ("thinking") block from a previous assistant turn.

    Example:
        >>> ReasoningPart(text="The user wants a refund...").text[:8]
        'The user'
    """

    text: str
    """The reasoning text as the provider returned it."""

    def __post_init__(self) -> None:
        _check_str("ReasoningPart.text", self.text)


@dataclass(frozen=True, kw_only=True, slots=True)
class OtherPart:
    """Any other content (audio, file, ...) with a declared token estimate.

    Example:
        >>> OtherPart(kind="input_audio", tokens=500).tokens
        500
    """

    kind: str
    """The OpenAI part type, e.g. ``input_audio`` or ``file``."""
    tokens: int
    """Declared token cost; windowkeeper cannot count this content itself."""
    data: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """The original part dict, kept so conversion back to OpenAI is lossless."""

    def __post_init__(self) -> None:
        _check_str("OtherPart.kind", self.kind)
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 0:
            raise InvalidMessageError(
                f"OtherPart.tokens must be an int >= 0 (declared cost); got {self.tokens!r}"
            )
        if not isinstance(self.data, Mapping):
            raise InvalidMessageError(
                f"OtherPart.data must be a dict (the original part); got {type(self.data).__name__}"
            )
        object.__setattr__(self, "data", _frozen_mapping(self.data))


ContentPart: TypeAlias = TextPart | ImagePart | ReasoningPart | OtherPart


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCall:
    """One tool call made by an assistant message.

    Example:
        >>> ToolCall(id="call_1", name="lookup_order", arguments='{"order_id": "A1"}').name
        'lookup_order'
    """

    id: str | None
    """The call id that the tool result refers to; ``None`` for a legacy ``function_call``."""
    name: str
    """The tool (function) name."""
    arguments: str = "{}"
    """The arguments as the JSON text the model produced (kept verbatim, even if invalid JSON)."""

    def __post_init__(self) -> None:
        if self.id is not None:
            _check_str("ToolCall.id", self.id)
        _check_str("ToolCall.name", self.name)
        _check_str("ToolCall.arguments", self.arguments, hint=" (JSON text; json.dumps a dict)")


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """A neutral chat message.

    ``content`` accepts a string for convenience and is stored as a tuple of parts.
    ``metadata`` is free-form and never sent to a model. ``zone`` (``"rag"`` marks a retrieved
    chunk) is read by the counter and the audit; ``turn``, ``timestamp`` and ``session_id`` are
    reserved for the conversation store and kept verbatim.

    Example:
        >>> m = Message(role="user", content="Where is my order?", metadata={"turn": 3})
        >>> m.text, m.metadata["turn"]
        ('Where is my order?', 3)
    """

    role: Role
    """Who speaks."""
    content: Sequence[ContentPart] | str = ()
    """The content parts; a string becomes one ``TextPart``, a list becomes a tuple."""
    name: str | None = None
    """Optional participant name (counted: it costs tokens)."""
    tool_calls: Sequence[ToolCall] = ()
    """Tool calls of an assistant message."""
    tool_call_id: str | None = None
    """For a ``tool`` message: the id of the call it answers."""
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """Turn index, timestamp, session id, zone hint and anything else; not sent, not compared."""

    def __post_init__(self) -> None:
        if not isinstance(self.role, str) or self.role not in _ROLES:
            raise InvalidMessageError(f"role must be one of {sorted(_ROLES)}; got {self.role!r}")
        content = self.content
        if isinstance(content, str):
            object.__setattr__(self, "content", (TextPart(text=content),) if content else ())
        elif isinstance(content, Iterable) and not isinstance(content, (bytes, Mapping)):
            if not isinstance(content, tuple) or not all(
                isinstance(p, _PART_TYPES) for p in content
            ):
                parts = tuple(_content_part(p, i) for i, p in enumerate(content))
                object.__setattr__(self, "content", parts)
        else:
            raise InvalidMessageError(
                "content must be a str or a list of content parts (TextPart, ImagePart, "
                "ReasoningPart, OtherPart, or OpenAI part dicts such as "
                f"{{'type': 'text', 'text': ...}}); got {_describe(content)}"
                + (" (use '' for no content)" if content is None else "")
            )
        for label, value in (("name", self.name), ("tool_call_id", self.tool_call_id)):
            if value is not None and not isinstance(value, str):
                raise InvalidMessageError(f"{label} must be a str or None; got {_describe(value)}")
        calls = self.tool_calls
        if isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Iterable):
            raise InvalidMessageError(
                "tool_calls must be a list of ToolCall or OpenAI tool-call dicts; got "
                f"{_describe(calls)}"
            )
        if not isinstance(calls, tuple) or not all(isinstance(c, ToolCall) for c in calls):
            object.__setattr__(
                self, "tool_calls", tuple(_tool_call(c, i) for i, c in enumerate(calls))
            )
        if self.tool_calls and self.role != "assistant":
            raise InvalidMessageError(
                f"tool_calls are only allowed on assistant messages; got role {self.role!r}"
            )
        if self.role == "tool" and not self.tool_call_id:
            raise InvalidMessageError(
                "a tool message needs tool_call_id (the id of the call it answers); got "
                f"{self.tool_call_id!r}"
            )
        metadata = self.metadata
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidMessageError(f"metadata must be a dict or None; got {_describe(metadata)}")
        object.__setattr__(self, "metadata", _frozen_mapping(metadata))

    @property
    def parts(self) -> tuple[ContentPart, ...]:
        """The content as a tuple of parts (what ``content`` always holds once built)."""
        return cast("tuple[ContentPart, ...]", self.content)

    @property
    def text(self) -> str:
        """The text parts joined with newlines (reasoning, images and other parts left out)."""
        return "\n".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def zone_hint(self) -> str | None:
        """The ``zone`` metadata key, e.g. ``"rag"`` for a retrieved chunk."""
        zone = self.metadata.get("zone")
        return zone if isinstance(zone, str) else None

    # ------------------------------------------------------------------ OpenAI conversion

    @classmethod
    def from_openai(cls, data: Mapping[str, Any], *, index: int | None = None) -> Message:
        """Build a message from an OpenAI chat dict (current or legacy ``function_call`` shape).

        A non-standard ``metadata`` key is read into :attr:`metadata`.

        Raises:
            InvalidMessageError: The dict is not a chat message; the error names ``index``.
        """
        if not isinstance(data, Mapping):
            raise InvalidMessageError(
                f"expected a dict with 'role' and 'content'; got {type(data).__name__}",
                index=index,
            )
        role = data.get("role")
        if role not in _ROLES:
            raise InvalidMessageError(
                f"role must be one of {sorted(_ROLES)}; got {role!r}", index=index
            )
        try:
            parts = _parts_from_openai(data.get("content"))
            calls = tuple(_call_from_openai(c) for c in data.get("tool_calls") or ())
            if data.get("function_call"):
                calls += (_legacy_call(data["function_call"]),)
            metadata = data.get("metadata")
            if metadata is not None and not isinstance(metadata, Mapping):
                raise InvalidMessageError(
                    f"metadata must be an object; got {type(metadata).__name__}"
                )
            return cls(
                role=role,
                content=parts,
                name=data.get("name"),
                tool_calls=calls,
                tool_call_id=data.get("tool_call_id"),
                metadata=metadata or {},
            )
        except InvalidMessageError as exc:
            if exc.index is None and index is not None:
                raise InvalidMessageError(str(exc), index=index) from None
            raise
        except (TypeError, KeyError, AttributeError) as exc:
            raise InvalidMessageError(f"malformed message: {exc!r}", index=index) from exc

    def to_openai(self, *, include_metadata: bool = False) -> dict[str, Any]:
        """Return the OpenAI chat dict for this message.

        Reasoning parts are left out (OpenAI's chat API takes none). Text-only content becomes a string.
        With ``include_metadata`` (how stores write a message) nothing is left out: reasoning parts
        are kept and an :class:`OtherPart` keeps its declared tokens, so what is read back counts
        and sends the same.
        """
        out: dict[str, Any] = {"role": self.role}
        sendable = (
            list(self.parts)
            if include_metadata
            else [p for p in self.parts if not isinstance(p, ReasoningPart)]
        )
        if not sendable:
            out["content"] = None if self.tool_calls else ""
        elif len(sendable) == 1 and isinstance(sendable[0], TextPart):
            out["content"] = sendable[0].text
        else:
            out["content"] = [_part_to_openai(p, stored=include_metadata) for p in sendable]
        if self.name is not None:
            out["name"] = self.name
        modern = [c for c in self.tool_calls if c.id is not None]
        legacy = [c for c in self.tool_calls if c.id is None]
        if include_metadata and len(legacy) > 1:
            modern, legacy = list(self.tool_calls), []  # stored: every call, in order (Gemini's)
        if modern:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in modern
            ]
        if legacy:
            out["function_call"] = {"name": legacy[0].name, "arguments": legacy[0].arguments}
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if include_metadata and self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


_DETAILS: tuple[str, ...] = get_args(ImageDetail)
_PART_TYPES = (TextPart, ImagePart, ReasoningPart, OtherPart)


def _describe(value: object) -> str:
    """A value for an error message: its type, and its repr when short."""
    text = repr(value)
    return f"{type(value).__name__} {text}" if len(text) <= 60 else type(value).__name__


def _check_str(label: str, value: object, *, hint: str = "") -> None:
    if not isinstance(value, str):
        raise InvalidMessageError(f"{label} must be a str{hint}; got {_describe(value)}")


def _content_part(part: object, position: int) -> ContentPart:
    """A content part as given, or built from an OpenAI part dict; anything else is refused."""
    if isinstance(part, _PART_TYPES):
        return part
    return _from_openai_dict(
        part,
        f"content[{position}]",
        _part_from_openai,
        kinds="a TextPart, ImagePart, ReasoningPart, OtherPart or an OpenAI part dict",
        shape="{'type': 'text', 'text': ...}",
    )


def _tool_call(call: object, position: int) -> ToolCall:
    """A tool call as given, or built from an OpenAI tool-call dict."""
    if isinstance(call, ToolCall):
        return call
    return _from_openai_dict(
        call,
        f"tool_calls[{position}]",
        _call_from_openai,
        kinds="a ToolCall or an OpenAI tool-call dict",
        shape="{'id': ..., 'type': 'function', 'function': {'name': ..., 'arguments': ...}}",
    )


def _from_openai_dict(
    item: object, label: str, build: Callable[[Mapping[str, Any]], _T], *, kinds: str, shape: str
) -> _T:
    """``build(item)`` for an OpenAI dict; a typed error naming ``label`` for anything else."""
    if not isinstance(item, Mapping):
        raise InvalidMessageError(f"{label} must be {kinds}; got {_describe(item)}")
    try:
        return build(item)
    except InvalidMessageError as exc:
        raise InvalidMessageError(f"{label}: {exc}") from None
    except (TypeError, KeyError, AttributeError) as exc:
        raise InvalidMessageError(f"{label} must look like {shape}; got {item!r}") from exc


def _parts_from_openai(content: Any) -> tuple[ContentPart, ...]:
    if content is None:
        return ()
    if isinstance(content, str):
        return (TextPart(text=content),) if content else ()
    if not isinstance(content, list):
        raise InvalidMessageError(
            f"content must be a string, null or a list of parts; got {type(content).__name__}"
        )
    return tuple(_part_from_openai(p) for p in content)


def _part_from_openai(part: Mapping[str, Any]) -> ContentPart:
    if not isinstance(part, Mapping):
        raise InvalidMessageError(f"a content part must be a dict; got {_describe(part)}")
    kind = part.get("type")
    if kind == "text":
        return TextPart(text=part["text"])
    if kind == "refusal":
        return TextPart(text=part["refusal"])
    if kind == "image_url":
        image = part["image_url"]
        if isinstance(image, str):
            return ImagePart(url=image)
        detail = image.get("detail", "auto")
        if detail not in _DETAILS:
            raise InvalidMessageError(
                f"image_url.detail must be one of {list(_DETAILS)}; got {detail!r}"
            )
        return ImagePart(
            url=image["url"], detail=detail, width=image.get("width"), height=image.get("height")
        )
    if kind in ("reasoning", "thinking"):
        return ReasoningPart(text=part.get("text") or part.get("thinking") or "")
    if isinstance(kind, str):
        if (
            STORED_TOKENS in part
        ):  # written by a store: the declared tokens beside the original part
            tokens = part[STORED_TOKENS]
            part = {k: v for k, v in part.items() if k != STORED_TOKENS}
        else:
            tokens = part.get("tokens", 0)
        if not isinstance(tokens, int):
            raise InvalidMessageError(f"part {kind!r}: tokens must be an int; got {tokens!r}")
        return OtherPart(kind=kind, tokens=tokens, data=part)
    raise InvalidMessageError(f"content part needs a string 'type'; got {kind!r}")


STORED_TOKENS = "windowkeeper_tokens"
"""Key under which a stored :class:`OtherPart` keeps its declared tokens (never sent)."""


def _part_to_openai(part: ContentPart, *, stored: bool = False) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "image_url", "image_url": {"url": part.url, "detail": part.detail}}
    if isinstance(part, OtherPart):
        out = dict(part.data) if part.data else {"type": part.kind, "tokens": part.tokens}
        if stored:
            out.setdefault("type", part.kind)
            out[STORED_TOKENS] = part.tokens
        return out
    return {"type": "reasoning", "text": part.text}


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def _call_from_openai(call: Mapping[str, Any]) -> ToolCall:
    function = call["function"]
    return ToolCall(
        id=call["id"], name=function["name"], arguments=_arguments_text(function.get("arguments"))
    )


def _legacy_call(call: Mapping[str, Any]) -> ToolCall:
    return ToolCall(id=None, name=call["name"], arguments=_arguments_text(call.get("arguments")))


def messages_from_openai(data: Iterable[Mapping[str, Any]]) -> list[Message]:
    """Convert a list of OpenAI chat dicts; errors name the index of the bad message.

    Example:
        >>> messages_from_openai([{"role": "user", "content": "hi"}])[0].text
        'hi'
    """
    if isinstance(data, (str, bytes, Mapping)):
        raise InvalidMessageError(f"expected a list of messages; got {type(data).__name__}")
    return [Message.from_openai(m, index=i) for i, m in enumerate(data)]


def messages_to_openai(
    messages: Iterable[Message], *, include_metadata: bool = False
) -> list[dict[str, Any]]:
    """Convert messages to OpenAI chat dicts."""
    return [m.to_openai(include_metadata=include_metadata) for m in messages]


def as_message(item: Message | Mapping[str, Any], *, index: int | None = None) -> Message:
    """``item`` itself when it is a :class:`Message`; built from an OpenAI chat dict otherwise.

    Raises:
        InvalidMessageError: ``item`` is neither (names ``index`` and what it got).

    Example:
        >>> as_message({"role": "assistant", "content": "Hi! How can I help?"}).role
        'assistant'
    """
    if isinstance(item, Message):
        return item
    if isinstance(item, Mapping):
        return Message.from_openai(item, index=index)
    raise InvalidMessageError(
        f"expected a Message or an OpenAI chat dict ({{'role': ..., 'content': ...}}); got "
        f"{_describe(item)}",
        index=index,
    )


def as_messages(
    items: Iterable[Message | Mapping[str, Any]], *, param: str = "messages"
) -> list[Message]:
    """A list of messages from :class:`Message` objects and OpenAI chat dicts, mixed freely.

    Messages are kept as the very objects given; dicts are converted (the dict is not changed).

    Raises:
        InvalidMessageError: ``items`` is not a list of messages, or an item is neither a
            Message nor a chat dict; the error names the position.

    Example:
        >>> [m.role for m in as_messages([{"role": "user", "content": "hi"},
        ...                               Message(role="assistant", content="hello")])]
        ['user', 'assistant']
    """
    if isinstance(items, (str, bytes, Mapping, Message)) or not isinstance(items, Iterable):
        raise InvalidMessageError(
            f"{param} must be a list of messages (Message objects or OpenAI chat dicts); got "
            f"{_describe(items)}"
        )
    out = items if isinstance(items, list) else list(items)
    for item in out:
        if type(item) is not Message:
            return [as_message(m, index=j) for j, m in enumerate(out)]
    return cast("list[Message]", out)


def validate_tool_pairs(
    messages: Sequence[Message | Mapping[str, Any]], *, finished: bool = False
) -> None:
    """Check that every tool result answers an earlier call and every call is answered.

    Calls of the last assistant message may still be pending (no result yet), unless
    ``finished``: a finished turn (one to store, or history) has every call answered.

    Raises:
        InvalidMessageError: Names the index of the first offending message.
    """
    messages = as_messages(messages)
    pending: dict[str, int] = {}
    for i, msg in enumerate(messages):
        if msg.role == "tool":
            if msg.tool_call_id not in pending:
                raise InvalidMessageError(
                    f"tool result answers tool_call_id {msg.tool_call_id!r}, which no earlier "
                    "assistant message called (or which was already answered)",
                    index=i,
                )
            del pending[msg.tool_call_id]
            continue
        if pending:
            first = min(pending.values())
            missing = sorted(pending)
            raise InvalidMessageError(
                f"assistant tool call(s) {missing} have no tool result before message {i}",
                index=first,
            )
        if msg.role == "assistant":
            for call in msg.tool_calls:
                if call.id is None:
                    continue
                if call.id in pending:
                    raise InvalidMessageError(f"duplicate tool_call id {call.id!r}", index=i)
                pending[call.id] = i
    if finished and pending:
        raise InvalidMessageError(
            f"assistant tool call(s) {sorted(pending)} have no tool result: a finished turn "
            "answers every call (store the turn once its tool results are in)",
            index=min(pending.values()),
        )
