"""The token counter: exact prompt counts for a model, overhead included, cached per message."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from windowkeeper._checks import check_int
from windowkeeper._messages import (
    SYSTEM_ROLES,
    ImagePart,
    Message,
    OtherPart,
    ReasoningPart,
    TextPart,
    as_message,
    as_messages,
)
from windowkeeper._profiles import ModelProfile, ModelRegistry, default_registry
from windowkeeper.exceptions import ApproximateCountWarning, InvalidConfigError, InvalidMessageError
from windowkeeper.tokens._calibration import Calibration, CalibrationStats
from windowkeeper.tokens._chat import (
    SYSTEM_WITH_TOOLS,
    TOOLS_OVERHEAD,
    format_tool_definitions,
    image_tokens,
    tool_api_of,
)
from windowkeeper.tokens._encodings import HFTokenizerEncoder, TextEncoder, load_encoding

__all__ = ["TokenCounter", "ToolChoice"]

ToolChoice = str | Mapping[str, Any] | None
"""``"auto"``, ``"none"``, ``"required"``, ``{"type": "function", "function": {"name": ...}}`` or legacy
``{"name": ...}``."""


_K = TypeVar("_K")


class TokenCounter:
    """Counts prompt tokens for one model exactly as the provider bills them.

    Per-message counts are cached (by identity, then by content), so re-counting a growing history
    costs only the new messages. Thread-safe.

    Args:
        model: A model name from the registry, or a :class:`ModelProfile`.
        registry: Where to resolve ``model`` (the default registry if omitted).
        encoder: A tokenizer to use instead of the profile's (any :class:`TextEncoder`).
        calibration: A :class:`Calibration` to share or restore; a fresh one if omitted.
        cache_size: Messages kept in the per-message cache.

    Example:
        >>> counter = TokenCounter("gpt-4o")
        >>> counter.count("tiktoken is great!")
        6
        >>> counter.count_messages([Message(role="user", content="hello")])
        8
    """

    def __init__(
        self,
        model: str | ModelProfile = "gpt-4o",
        *,
        registry: ModelRegistry | None = None,
        encoder: TextEncoder | None = None,
        calibration: Calibration | None = None,
        cache_size: int = 200_000,
    ) -> None:
        if cache_size < 0:
            raise InvalidConfigError(f"cache_size must be >= 0; got {cache_size!r}")
        self.profile: ModelProfile = (registry or default_registry()).get(model)
        if encoder is not None:
            if not isinstance(encoder, TextEncoder):
                raise InvalidConfigError(
                    f"encoder must have name, encode, count and count_batch; got {encoder!r}"
                )
            self.encoder: TextEncoder = encoder
        elif self.profile.tokenizer_file:
            self.encoder = HFTokenizerEncoder(self.profile.tokenizer_file)
        else:
            self.encoder = load_encoding(self.profile.encoding)
        self.exact: bool = (
            self.profile.exact or encoder is not None or bool(self.profile.tokenizer_file)
        )
        if not self.exact:
            warnings.warn(
                f"{self.profile.name}: counting with {self.profile.encoding} as a stand-in for the "
                f"model's own tokenizer (declared error band ±{self.profile.error_band:.0%}); pass a "
                "tokenizer.json (ModelProfile.tokenizer_file) or calibrate() with reported usage",
                ApproximateCountWarning,
                stacklevel=2,
            )
        self.calibration: Calibration = calibration if calibration is not None else Calibration()
        self._format = self.profile.chat_format
        self._cache_size = cache_size
        self._by_id: dict[int, tuple[Message, int]] = {}
        self._by_content: dict[Message, int] = {}
        self._tool_blocks: dict[str, int] = {}
        self._padded: dict[Message, int] = {}  # a system message's count with the tools' newline
        self._roles: dict[str, int] = {}  # tokens of each role name
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenCounter({self.profile.name!r}, encoder={self.encoder.name!r}, exact={self.exact})"

    # ------------------------------------------------------------------------------------ text

    def count(self, text: str) -> int:
        """Tokens of a plain text, no chat overhead."""
        return self.encoder.count(text)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Tokens of many plain texts."""
        return self.encoder.count_batch(texts)

    # -------------------------------------------------------------------------------- messages

    def count_message(self, message: Message | Mapping[str, Any]) -> int:
        """Tokens one message adds to a request: content, role, name, tool calls and framing.

        Cached: the same message (or an equal one) is counted once. An OpenAI chat dict is
        converted first.
        """
        hit = self._by_id.get(id(message))
        if hit is not None and hit[0] is message:
            return hit[1]
        if not isinstance(message, Message):
            message = as_message(message)
        n = self._by_content.get(message)
        if n is None:
            n = self._count_message(message)
        self._remember(message, n)
        return n

    def _remember(self, message: Message, n: int) -> None:
        if not self._cache_size:
            return
        with self._lock:
            if len(self._by_id) >= self._cache_size:
                # dicts keep insertion order: drop the older half in one go (amortised O(1))
                for key in list(self._by_id)[: self._cache_size // 2]:
                    del self._by_id[key]
                for msg in list(self._by_content)[: self._cache_size // 2]:
                    del self._by_content[msg]
            self._by_id[id(message)] = (message, n)
            self._by_content[message] = n

    def _count_message(self, message: Message, *, pad_newline: bool = False) -> int:
        fmt = self._format
        count = self.encoder.count
        role = self._roles.get(message.role)
        if role is None:  # a handful of roles: each encoded once
            role = self._roles[message.role] = count(message.role)
        n = fmt.tokens_per_message + role
        texts = [p.text for p in message.parts if isinstance(p, TextPart)]
        if pad_newline:
            texts = [*texts[:-1], texts[-1] + "\n"] if texts else ["\n"]
        n += sum(count(t) for t in texts)
        for part in message.parts:
            if isinstance(part, ImagePart):
                if self.profile.image_rule is None:
                    raise InvalidMessageError(f"{self.profile.name} takes no images")
                n += image_tokens(part, self.profile.image_rule)
            elif isinstance(part, ReasoningPart):
                n += count(part.text) if fmt.reasoning_in_input else 0
            elif isinstance(part, OtherPart):
                n += part.tokens
        if message.name:
            n += count(message.name) + fmt.tokens_per_name
        for call in message.tool_calls:
            # API-checked for legacy function calls (id None); an id is counted in full: the
            # cookbook rule encodes every string field (docs: accounting, unverified rules)
            n += count(call.name) + count(call.arguments) + 3
            if call.id is not None:
                n += count(call.id)
        if message.tool_call_id is not None:
            # upper bound of the conventions: the cookbook encodes it, LangChain adds a flat 3
            n += max(count(message.tool_call_id), 3)
        if message.role == "function":
            n -= 2
        return n

    def count_messages(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice = None,
    ) -> int:
        """Prompt tokens of a whole request: messages, reply priming, tool schemas and tool choice.

        Example:
            >>> counter = TokenCounter("gpt-4")
            >>> counter.count_messages([Message(role="system", content="hello")])
            8
        """
        if isinstance(messages, (str, bytes, Mapping, Message)) or not isinstance(
            messages, Iterable
        ):
            messages = as_messages(messages)  # raises: not a list of messages
        messages = messages if isinstance(messages, Sequence) else list(messages)
        total = sum(self._counts(messages)) + self._format.reply_priming
        if tools or tool_choice is not None:
            total += self._tools_zone(as_messages(messages), tools, tool_choice)
        return total

    def _counts(self, messages: Sequence[Message | Mapping[str, Any]]) -> list[int]:
        """Per-message counts; the hot path of a re-count is one dict lookup per known message."""
        by_id = self._by_id
        out = []
        for i, message in enumerate(messages):
            hit = by_id.get(id(message))
            if hit is not None and hit[0] is message:
                out.append(hit[1])
            else:
                out.append(self.count_message(as_message(message, index=i)))
        return out

    def count_tools(
        self,
        tools: Sequence[Mapping[str, Any]],
        *,
        tool_choice: ToolChoice = None,
        with_system: bool = True,
    ) -> int:
        """Tokens the tool schemas (and tool choice) add to a request.

        Args:
            tools: OpenAI ``tools`` entries or legacy ``functions`` definitions.
            tool_choice: The request's tool choice.
            with_system: Whether the request has a system message (the tool block then costs 4 less).
        """
        if not tools:
            return self._tool_choice_tokens(tool_choice, "tools") if tool_choice else 0
        api = tool_api_of(tools)
        text = format_tool_definitions(tools, nested_descriptions=api == "tools")
        block = self._tool_blocks.get(text)
        if block is None:
            # tool schemas are re-sent every turn: encode each distinct rendering once
            block = self._keep(self._tool_blocks, text, self.count(text))
        n = block + TOOLS_OVERHEAD
        if with_system:
            n += SYSTEM_WITH_TOOLS
        return n + self._tool_choice_tokens(tool_choice, api)

    def _tool_choice_tokens(self, tool_choice: ToolChoice, api: str) -> int:
        if tool_choice is None or tool_choice in ("auto", "required"):
            return 0
        if tool_choice == "none":
            return 1
        if isinstance(tool_choice, Mapping):
            function = tool_choice.get("function", tool_choice)
            name = function.get("name") if isinstance(function, Mapping) else None
            if isinstance(name, str):
                # API-checked: +7 with the tools API (pamelafox), +4 with legacy functions (hmarr)
                return self.count(name) + (7 if api == "tools" else 4)
        raise InvalidConfigError(
            "tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': "
            f"{{'name': ...}}}}; got {tool_choice!r}"
        )

    def count_zones_of(
        self,
        messages: Sequence[Message | Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice = None,
        system: int | None = None,
    ) -> dict[str, int]:
        """Split a request's exact prompt count into zones; the values sum to the request's count.

        Leading system messages are ``system``; messages marked ``metadata={"zone": "rag"}`` are
        ``rag`` and those marked ``{"zone": "history"}`` (memory blocks such as a summary, even with
        the system role) are ``history``; the last user message (with the reply priming) is
        ``user``; the rest is ``history``;
        tool schemas, tool choice and their interaction with the system message are ``tools``.
        OpenAI chat dicts are accepted.

        Args:
            messages: The request's messages.
            tools: Its tool schemas.
            tool_choice: Its tool choice.
            system: How many leading messages are the system prompt, when the caller knows
                (the assembler does: a stored system note right after the prompt is history).
                Default: every leading system or developer message.
        """
        messages = as_messages(messages)
        if system is not None:
            check_int("system", system, 0, len(messages))
        zones = {
            "system": 0,
            "tools": 0,
            "rag": 0,
            "history": 0,
            "user": self._format.reply_priming,
        }
        last_user = max(
            (i for i, m in enumerate(messages) if m.role == "user" and m.zone_hint != "rag"),
            default=-1,
        )
        leading = True
        for i, (message, n) in enumerate(zip(messages, self._counts(messages), strict=True)):
            if message.zone_hint in ("rag", "history"):
                zone = message.zone_hint
                leading = False
            elif (i < system) if system is not None else (leading and message.role in SYSTEM_ROLES):
                zone = "system"
            elif i == last_user:
                zone = "user"
            else:
                zone = "history"
            if message.role not in SYSTEM_ROLES:
                leading = False
            zones[zone] += n
        if tools or tool_choice is not None:
            zones["tools"] = self._tools_zone(messages, tools, tool_choice)
        return zones

    def _tools_zone(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None,
        tool_choice: ToolChoice,
    ) -> int:
        """Tokens of the tool block, tool choice, and their effect on a leading system message."""
        if not tools:
            return self._tool_choice_tokens(tool_choice, "tools")
        # API-checked only with the system message first: a later one (a stored note) is not
        # assumed to host the tool block, which would count 4 fewer tokens (the upper bound)
        system = messages[0] if messages and messages[0].role in SYSTEM_ROLES else None
        n = self.count_tools(tools, tool_choice=tool_choice, with_system=system is not None)
        if system is not None:
            # a leading system message gets a trailing newline when tools are present; the same
            # prompt comes with every request, so its padded count is kept like the tool block
            padded = self._padded.get(system)
            if padded is None:
                padded = self._keep(
                    self._padded, system, self._count_message(system, pad_newline=True)
                )
            n += padded - self.count_message(system)
        return n

    def _keep(self, cache: dict[_K, int], key: _K, count: int) -> int:
        """Store ``count`` in one of the small per-request caches (oldest out past 256); return it."""
        with self._lock:
            cache[key] = count
            if len(cache) > 256:
                del cache[next(iter(cache))]
        return count

    # ----------------------------------------------------------------------------- calibration

    def calibrate(self, counted: int, usage: int | Mapping[str, Any] | Any) -> CalibrationStats:
        """Record the provider's reported prompt tokens for a request we counted.

        Args:
            counted: What :meth:`count_messages` said for the request.
            usage: The reported prompt tokens, or a usage record (OpenAI ``usage``, LangChain
                ``usage_metadata``, Anthropic ``usage``).

        Returns:
            The updated statistics.
        """
        from windowkeeper.tokens._calibration import prompt_tokens_from_usage

        reported = usage if isinstance(usage, int) else prompt_tokens_from_usage(usage)
        self.calibration.observe(counted=counted, reported=reported)
        return self.calibration.stats()

    def calibrated(self, tokens: int) -> int:
        """``tokens`` corrected by what calibration has learned (unchanged before any observation)."""
        return self.calibration.correct(tokens)

    @property
    def error_band(self) -> float:
        """Relative error to allow for.

        0 when exact; the calibrated residual once at least 5 observations exist; else the
        profile's declared band.
        """
        stats = self.calibration.stats()
        if stats.observations >= 5:
            return stats.max_rel_error_corrected
        return 0.0 if self.exact else self.profile.error_band

    def bounds(self, tokens: int) -> tuple[int, int]:
        """The range the true count of ``tokens`` (our count) lies in, given :attr:`error_band`."""
        centre = self.calibrated(tokens)
        band = self.error_band
        return int(centre * (1 - band)), -int(-centre * (1 + band) // 1)

    def cache_info(self) -> dict[str, int]:
        """Entries in the per-message cache."""
        return {"by_identity": len(self._by_id), "by_content": len(self._by_content)}

    def clear_cache(self) -> None:
        """Empty the per-message cache."""
        with self._lock:
            self._by_id.clear()
            self._by_content.clear()
            self._tool_blocks.clear()
            self._padded.clear()
