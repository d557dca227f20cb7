"""What windowkeeper knows about a model: window, output cap, tokenizer, chat rules, prices.

Figures are public list values as of 2026-11 (prices in USD per million tokens, standard tier, prompts
under any long-context surcharge). Register your own profile for anything missing or different.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from windowkeeper.exceptions import InvalidConfigError, UnknownModelError

__all__ = [
    "ChatFormat",
    "ImageRule",
    "ModelProfile",
    "ModelRegistry",
    "default_registry",
    "get_profile",
    "register_model",
]

EncodingName: TypeAlias = Literal["cl100k_base", "o200k_base"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatFormat:
    """Per-message and per-request overhead of a chat format (OpenAI cookbook rules by default).

    Example:
        >>> ChatFormat().tokens_per_message
        3
    """

    tokens_per_message: int = 3
    """Tokens every message costs besides its content (``<|start|>role<|message|>...<|end|>``)."""
    tokens_per_name: int = 1
    """Extra tokens when a message has a ``name`` (``-1`` for gpt-3.5-turbo-0301)."""
    reply_priming: int = 3
    """Tokens that prime the reply (``<|start|>assistant<|message|>``), once per request."""
    reasoning_in_input: bool = True
    """Whether reasoning parts of earlier turns count as input (False where the provider drops them)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageRule:
    """OpenAI's image tile rule: ``base + tile × tiles`` after scaling to fit 2048² and 768 short side.

    Example:
        >>> ImageRule().tile_tokens
        170
    """

    base_tokens: int = 85
    """Tokens every image costs; all that a ``low`` detail image costs."""
    tile_tokens: int = 170
    """Tokens per 512-pixel tile at ``high`` detail."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelProfile:
    """What windowkeeper knows about one model.

    Example:
        >>> p = ModelProfile(name="my-model", context_window=32_768, max_output_tokens=4_096,
        ...                  encoding="cl100k_base", exact=False, error_band=0.15)
        >>> p.context_window
        32768
    """

    name: str
    """Canonical model name."""
    context_window: int
    """Advertised context window in tokens (prompt + output)."""
    max_output_tokens: int
    """Largest number of output tokens the model can produce in one call."""
    encoding: EncodingName
    """The tiktoken encoding used for counting (exact for OpenAI models, a stand-in otherwise)."""
    provider: str = "openai"
    """Who serves the model."""
    exact: bool = True
    """True when ``encoding`` is the model's own tokenizer."""
    error_band: float = 0.0
    """Declared relative error of counts when not exact (0.25 = counts may be off by up to 25 %)."""
    effective_window: int | None = None
    """Tokens up to which quality holds (e.g. RULER's effective length), when known."""
    input_price: float | None = None
    """USD per million input tokens."""
    cached_input_price: float | None = None
    """USD per million cached input tokens."""
    output_price: float | None = None
    """USD per million output tokens."""
    chat_format: ChatFormat = field(default_factory=ChatFormat)
    """Per-message and per-request overhead rules."""
    image_rule: ImageRule | None = field(default_factory=ImageRule)
    """How images are counted; ``None`` if the model takes no images."""
    prompt_cache_min_tokens: int = 1024
    """Shortest prefix the provider caches."""
    tokenizer_file: str | None = None
    """A Hugging Face ``tokenizer.json`` that makes counts exact for non-OpenAI models."""
    aliases: tuple[str, ...] = ()
    """Other names that resolve to this profile."""

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidConfigError("name must be a non-empty string; got ''")
        if self.context_window <= 0:
            raise InvalidConfigError(
                f"context_window must be a positive int; got {self.context_window!r}"
            )
        if not 0 < self.max_output_tokens <= self.context_window:
            raise InvalidConfigError(
                f"max_output_tokens must be between 1 and context_window ({self.context_window}); "
                f"got {self.max_output_tokens!r}"
            )
        if self.encoding not in ("cl100k_base", "o200k_base"):
            raise InvalidConfigError(
                f"encoding must be 'cl100k_base' or 'o200k_base'; got {self.encoding!r}"
            )
        if not 0.0 <= self.error_band < 1.0:
            raise InvalidConfigError(f"error_band must be in [0, 1); got {self.error_band!r}")
        if self.exact and self.error_band:
            raise InvalidConfigError(
                f"an exact profile has no error band; got exact=True, error_band={self.error_band!r}"
            )
        if self.effective_window is not None and not (
            0 < self.effective_window <= self.context_window
        ):
            raise InvalidConfigError(
                f"effective_window must be between 1 and context_window ({self.context_window}); "
                f"got {self.effective_window!r}"
            )
        for label in ("input_price", "cached_input_price", "output_price"):
            value = getattr(self, label)
            if value is not None and value < 0:
                raise InvalidConfigError(f"{label} must be >= 0 or None; got {value!r}")

    def cost(
        self, input_tokens: int, output_tokens: int = 0, *, cached_tokens: int = 0
    ) -> float | None:
        """USD cost of one call, or ``None`` when the profile has no prices.

        Example:
            >>> get_profile("gpt-4o").cost(1_000_000, 0)
            2.5
        """
        if self.input_price is None or self.output_price is None:
            return None
        cached_price = (
            self.cached_input_price if self.cached_input_price is not None else self.input_price
        )
        fresh = input_tokens - cached_tokens
        return (
            fresh * self.input_price
            + cached_tokens * cached_price
            + output_tokens * self.output_price
        ) / 1e6


_OPENAI_0301 = ChatFormat(tokens_per_message=4, tokens_per_name=-1)
_NO_REASONING = ChatFormat(reasoning_in_input=False)
_MINI_IMAGES = ImageRule(base_tokens=2833, tile_tokens=5667)


def _openai(
    name: str,
    window: int,
    out: int,
    enc: EncodingName,
    prices: tuple[float, float | None, float] | None,
    **kw: Any,
) -> ModelProfile:
    inp, cached, outp = prices if prices else (None, None, None)
    return ModelProfile(
        name=name,
        context_window=window,
        max_output_tokens=out,
        encoding=enc,
        input_price=inp,
        cached_input_price=cached,
        output_price=outp,
        **kw,
    )


def _standin(
    name: str,
    provider: str,
    window: int,
    out: int,
    enc: EncodingName,
    band: float,
    prices: tuple[float, float | None, float] | None = None,
    **kw: Any,
) -> ModelProfile:
    inp, cached, outp = prices if prices else (None, None, None)
    return ModelProfile(
        name=name,
        provider=provider,
        context_window=window,
        max_output_tokens=out,
        encoding=enc,
        exact=False,
        error_band=band,
        input_price=inp,
        cached_input_price=cached,
        output_price=outp,
        **kw,
    )


# RULER effective lengths (Hsieh et al. 2024) where published: GPT-4 64k, Llama-3.1-70B 64k,
# Llama-3.1-8B 32k, Qwen2-72B 32k. Claude and Gemini stand-in bands are wide on purpose: calibrate.
BUILTIN_PROFILES: tuple[ModelProfile, ...] = (
    _openai(
        "gpt-5", 400_000, 128_000, "o200k_base", (1.25, 0.125, 10.0), chat_format=_NO_REASONING
    ),
    _openai(
        "gpt-5-mini", 400_000, 128_000, "o200k_base", (0.25, 0.025, 2.0), chat_format=_NO_REASONING
    ),
    _openai(
        "gpt-5-nano", 400_000, 128_000, "o200k_base", (0.05, 0.005, 0.40), chat_format=_NO_REASONING
    ),
    _openai("gpt-4.1", 1_047_576, 32_768, "o200k_base", (2.0, 0.50, 8.0)),
    _openai("gpt-4.1-mini", 1_047_576, 32_768, "o200k_base", (0.40, 0.10, 1.60)),
    _openai("gpt-4.1-nano", 1_047_576, 32_768, "o200k_base", (0.10, 0.025, 0.40)),
    _openai(
        "gpt-4o", 128_000, 16_384, "o200k_base", (2.50, 1.25, 10.0), aliases=("chatgpt-4o-latest",)
    ),
    _openai(
        "gpt-4o-mini", 128_000, 16_384, "o200k_base", (0.15, 0.075, 0.60), image_rule=_MINI_IMAGES
    ),
    _openai("o3", 200_000, 100_000, "o200k_base", (2.0, 0.50, 8.0), chat_format=_NO_REASONING),
    _openai(
        "o4-mini", 200_000, 100_000, "o200k_base", (1.10, 0.275, 4.40), chat_format=_NO_REASONING
    ),
    _openai("o1", 200_000, 100_000, "o200k_base", (15.0, 7.50, 60.0), chat_format=_NO_REASONING),
    _openai(
        "gpt-4-turbo",
        128_000,
        4_096,
        "cl100k_base",
        (10.0, None, 30.0),
        effective_window=64_000,
        aliases=("gpt-4-turbo-preview", "gpt-4-1106-preview", "gpt-4-0125-preview"),
    ),
    _openai(
        "gpt-4",
        8_192,
        8_192,
        "cl100k_base",
        (30.0, None, 60.0),
        image_rule=None,
        aliases=("gpt-4-0613", "gpt-4-0314"),
    ),
    _openai("gpt-4-32k", 32_768, 32_768, "cl100k_base", (60.0, None, 120.0), image_rule=None),
    _openai(
        "gpt-3.5-turbo",
        16_385,
        4_096,
        "cl100k_base",
        (0.50, None, 1.50),
        image_rule=None,
        aliases=("gpt-3.5-turbo-0125", "gpt-3.5-turbo-1106", "gpt-35-turbo"),
    ),
    _openai("gpt-3.5-turbo-0613", 4_096, 4_096, "cl100k_base", (1.50, None, 2.0), image_rule=None),
    _openai(
        "gpt-3.5-turbo-0301",
        4_096,
        4_096,
        "cl100k_base",
        (1.50, None, 2.0),
        image_rule=None,
        chat_format=_OPENAI_0301,
    ),
    _standin(
        "claude-opus-4-1",
        "anthropic",
        200_000,
        32_000,
        "cl100k_base",
        0.30,
        (15.0, 1.50, 75.0),
        chat_format=_NO_REASONING,
        aliases=("claude-opus-4-1-20250805",),
    ),
    _standin(
        "claude-sonnet-4-5",
        "anthropic",
        200_000,
        64_000,
        "cl100k_base",
        0.30,
        (3.0, 0.30, 15.0),
        chat_format=_NO_REASONING,
        aliases=("claude-sonnet-4-5-20250929",),
    ),
    _standin(
        "claude-sonnet-4",
        "anthropic",
        200_000,
        64_000,
        "cl100k_base",
        0.30,
        (3.0, 0.30, 15.0),
        chat_format=_NO_REASONING,
        aliases=("claude-sonnet-4-20250514",),
    ),
    _standin(
        "claude-haiku-4-5",
        "anthropic",
        200_000,
        64_000,
        "cl100k_base",
        0.30,
        (1.0, 0.10, 5.0),
        chat_format=_NO_REASONING,
        prompt_cache_min_tokens=2048,
        aliases=("claude-haiku-4-5-20251001",),
    ),
    _standin(
        "claude-3-5-haiku",
        "anthropic",
        200_000,
        8_192,
        "cl100k_base",
        0.30,
        (0.80, 0.08, 4.0),
        prompt_cache_min_tokens=2048,
        aliases=("claude-3-5-haiku-latest", "claude-3-5-haiku-20241022"),
    ),
    _standin("gemini-2.5-pro", "google", 1_048_576, 65_536, "o200k_base", 0.25, (1.25, 0.31, 10.0)),
    _standin(
        "gemini-2.5-flash", "google", 1_048_576, 65_536, "o200k_base", 0.25, (0.30, 0.075, 2.50)
    ),
    _standin(
        "gemini-2.0-flash", "google", 1_048_576, 8_192, "o200k_base", 0.25, (0.10, 0.025, 0.40)
    ),
    _standin(
        "llama-3.1-8b-instruct",
        "meta",
        131_072,
        8_192,
        "cl100k_base",
        0.10,
        effective_window=32_000,
        image_rule=None,
        aliases=("meta-llama/Llama-3.1-8B-Instruct",),
    ),
    _standin(
        "llama-3.1-70b-instruct",
        "meta",
        131_072,
        8_192,
        "cl100k_base",
        0.10,
        effective_window=64_000,
        image_rule=None,
        aliases=("meta-llama/Llama-3.1-70B-Instruct",),
    ),
    _standin(
        "llama-3.3-70b-instruct",
        "meta",
        131_072,
        8_192,
        "cl100k_base",
        0.10,
        image_rule=None,
        aliases=("meta-llama/Llama-3.3-70B-Instruct",),
    ),
    _standin(
        "mistral-large",
        "mistral",
        131_072,
        8_192,
        "cl100k_base",
        0.20,
        (2.0, None, 6.0),
        image_rule=None,
        aliases=("mistral-large-latest",),
    ),
    _standin(
        "mistral-small",
        "mistral",
        131_072,
        8_192,
        "cl100k_base",
        0.20,
        (0.10, None, 0.30),
        image_rule=None,
        aliases=("mistral-small-latest",),
    ),
    _standin(
        "qwen2.5-7b-instruct",
        "alibaba",
        131_072,
        8_192,
        "cl100k_base",
        0.15,
        image_rule=None,
        aliases=("Qwen/Qwen2.5-7B-Instruct",),
    ),
    _standin(
        "qwen2.5-72b-instruct",
        "alibaba",
        131_072,
        8_192,
        "cl100k_base",
        0.15,
        effective_window=32_000,
        image_rule=None,
        aliases=("Qwen/Qwen2.5-72B-Instruct",),
    ),
    _standin(
        "deepseek-chat",
        "deepseek",
        128_000,
        8_192,
        "cl100k_base",
        0.20,
        (0.27, 0.07, 1.10),
        image_rule=None,
        aliases=("deepseek-v3",),
    ),
)

_PROVIDER_PREFIX = re.compile(
    r"^(?:openai|azure|anthropic|google|vertex_ai|gemini|meta|mistral|"
    r"deepseek|together|groq|bedrock|ollama)[:/]"
)
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")


class ModelRegistry:
    """Model names to profiles; resolves aliases, provider prefixes and dated snapshots.

    Example:
        >>> reg = ModelRegistry()
        >>> reg.get("openai/gpt-4o-2024-08-06").name
        'gpt-4o'
    """

    def __init__(self, profiles: Iterable[ModelProfile] = BUILTIN_PROFILES) -> None:
        self._lock = threading.Lock()
        self._profiles: dict[str, ModelProfile] = {}
        self._aliases: dict[str, str] = {}
        for profile in profiles:
            self.register(profile)

    def register(self, profile: ModelProfile, *, replace_existing: bool = True) -> None:
        """Add (or replace) a profile and its aliases."""
        if not isinstance(profile, ModelProfile):
            raise InvalidConfigError(
                f"profile must be a ModelProfile; got {type(profile).__name__}"
            )
        with self._lock:
            if not replace_existing and profile.name.lower() in self._profiles:
                raise InvalidConfigError(f"a profile named {profile.name!r} already exists")
            self._profiles[profile.name.lower()] = profile
            for alias in profile.aliases:
                self._aliases[alias.lower()] = profile.name.lower()

    def names(self) -> list[str]:
        """Registered canonical names, sorted."""
        return sorted(p.name for p in self._profiles.values())

    def _lookup(self, key: str) -> ModelProfile | None:
        key = self._aliases.get(key, key)
        return self._profiles.get(key)

    def get(self, model: str | ModelProfile) -> ModelProfile:
        """Resolve a model name (or pass a profile through).

        Raises:
            UnknownModelError: No profile; the error suggests close names and how to register one.
        """
        if isinstance(model, ModelProfile):
            return model
        if not isinstance(model, str) or not model:
            raise InvalidConfigError(
                f"model must be a non-empty string or a ModelProfile; got {model!r}"
            )
        key = model.strip().lower()
        candidates = [key, _PROVIDER_PREFIX.sub("", key)]
        candidates += [_DATE_SUFFIX.sub("", c) for c in candidates]
        for candidate in candidates:
            found = self._lookup(candidate)
            if found is not None:
                return found
        known = list(self._profiles) + list(self._aliases)
        close = difflib.get_close_matches(candidates[-1], known, n=3, cutoff=0.6)
        suggestions = tuple(
            dict.fromkeys(self._profiles[self._aliases.get(c, c)].name for c in close)
        )
        raise UnknownModelError(model, suggestions)

    def __contains__(self, model: object) -> bool:
        try:
            self.get(model)  # type: ignore[arg-type]
        except (UnknownModelError, InvalidConfigError):
            return False
        return True


_DEFAULT = ModelRegistry()


def default_registry() -> ModelRegistry:
    """The process-wide registry that :func:`get_profile` and :func:`register_model` use."""
    return _DEFAULT


def get_profile(model: str | ModelProfile) -> ModelProfile:
    """Resolve a model name in the default registry.

    Example:
        >>> get_profile("gpt-4o-mini").context_window
        128000
    """
    return _DEFAULT.get(model)


def register_model(profile: ModelProfile) -> ModelProfile:
    """Add a profile to the default registry and return it.

    Example:
        >>> _ = register_model(ModelProfile(name="acme-7b", context_window=32_768,
        ...     max_output_tokens=4_096, encoding="cl100k_base", exact=False, error_band=0.2))
        >>> get_profile("acme-7b").error_band
        0.2
    """
    _DEFAULT.register(profile)
    return profile
