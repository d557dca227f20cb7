"""An exact token counter for LangChain's ``trim_messages`` and middlewares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_messages
from windowkeeper import InvalidConfigError, ModelProfile, TokenCounter

from langchain_windowkeeper._convert import to_core_messages

__all__ = ["LangChainTokenCounter", "token_counter"]


class LangChainTokenCounter:
    """Counts a list of LangChain messages exactly as the model's provider bills them.

    A callable ``(messages) -> int`` for ``trim_messages(token_counter=...)``,
    ``SummarizationMiddleware(token_counter=...)`` and ``ContextEditingMiddleware(token_counter=...)``.
    Counts text with the model's real tokenizer (offline), plus the chat format's per-message
    overhead, names, tool calls with their ids and arguments, tool call ids, image tiles and
    content blocks; with ``tools``, their schemas too. It never falls back to LangChain's GPT-2
    tokenizer from the model hub (which hangs offline). Dicts and ``(role, text)`` tuples are
    accepted like LangChain accepts them.

    Args:
        counter: The core counter that does the counting (its cache is shared).
        tools: Tool schemas (OpenAI format) to count with every list, when the caller's
            budget includes them.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> count = token_counter("gpt-4o")
        >>> count([HumanMessage("Where is order A-17?"), AIMessage("It ships today.")])
        22
    """

    def __init__(
        self, counter: TokenCounter, *, tools: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        if not isinstance(counter, TokenCounter):
            raise InvalidConfigError(
                f"counter must be a windowkeeper TokenCounter; got {type(counter).__name__}"
            )
        self.counter = counter
        self.tools = list(tools) if tools else None

    def __repr__(self) -> str:
        return f"LangChainTokenCounter({self.counter.profile.name!r})"

    def __call__(self, messages: Iterable[Any]) -> int:
        """Exact prompt tokens of ``messages`` (with the reply priming)."""
        items = list(messages)
        lc = items if all(isinstance(m, BaseMessage) for m in items) else convert_to_messages(items)
        return self.counter.count_messages(to_core_messages(lc), tools=self.tools)


def token_counter(
    model: str | ModelProfile | TokenCounter = "gpt-4o",
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> LangChainTokenCounter:
    """An exact LangChain token counter for a registered model (or a core counter).

    Raises:
        UnknownModelError: ``model`` has no profile (the error suggests close names).
    """
    counter = model if isinstance(model, TokenCounter) else TokenCounter(model)
    return LangChainTokenCounter(counter, tools=tools)
