"""Dynamic tool selection: keep the tool schemas most relevant to the current turn within a budget."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from windowkeeper._budget import Dropped
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.tokens._counter import TokenCounter

if TYPE_CHECKING:
    from windowkeeper.memory._vectors import Embedder

__all__ = ["ToolSelection", "ToolSelector", "tool_name", "tool_text"]

SelectionMethod = Literal["lexical", "embedding", "hybrid"]


def tool_name(tool: Mapping[str, Any]) -> str:
    """The function name of an OpenAI ``tools`` entry or a legacy ``functions`` definition."""
    fn = tool.get("function", tool)
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(name, str) or not name:
        raise InvalidConfigError(f"each tool must have a function name; got {dict(tool)!r}")
    return name


def tool_text(tool: Mapping[str, Any]) -> str:
    """What a tool is matched on: its name (split into words), description and parameter names."""
    fn = tool.get("function", tool)
    name = tool_name(tool)
    words = name.replace("_", " ").replace("-", " ")
    desc = fn.get("description", "") if isinstance(fn, Mapping) else ""
    params = fn.get("parameters", {}) if isinstance(fn, Mapping) else {}
    props = params.get("properties", {}) if isinstance(params, Mapping) else {}
    parts = [name, words, desc if isinstance(desc, str) else ""]
    if isinstance(props, Mapping):
        for key, spec in props.items():
            parts.append(str(key).replace("_", " "))
            if isinstance(spec, Mapping) and isinstance(spec.get("description"), str):
                parts.append(spec["description"])
    return "\n".join(p for p in parts if p)


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolSelection:
    """The tools kept (in their original order) and those left out."""

    tools: tuple[Mapping[str, Any], ...]
    """Kept tool schemas, in the order they were given (a stable prefix while the set is stable)."""
    dropped: tuple[Dropped, ...] = ()
    """Tools left out, least relevant first."""
    ranking: tuple[str, ...] = field(default=())
    """Every tool name, most relevant first."""


class ToolSelector:
    """Rank tools by similarity to the current turn and keep the best that fit a token limit.

    No LLM call: lexical (BM25 over name, description and parameter names), embedding similarity
    (any :class:`~windowkeeper.memory.Embedder`), or both fused by reciprocal rank. Tools in
    ``always_include`` are kept first. Kept tools stay in their original order, so the tool block is
    byte-identical across calls as long as the selection does not change (provider prompt caching).

    Args:
        method: ``lexical`` (default), ``embedding`` or ``hybrid``.
        always_include: Tool names that are always kept (first, if space is short).
        embedder: Needed for ``embedding`` and ``hybrid``.

    Example:
        >>> tools = [{"type": "function", "function": {"name": n, "description": d}} for n, d in [
        ...     ("get_weather", "Current weather for a city"),
        ...     ("refund_order", "Refund an order by its id"),
        ...     ("search_docs", "Search the product manual")]]
        >>> sel = ToolSelector().select(tools, "please refund order 1182", limit=30,
        ...                             counter=TokenCounter("gpt-4o"))
        >>> [tool_name(t) for t in sel.tools]
        ['refund_order']
    """

    def __init__(
        self,
        *,
        method: SelectionMethod = "lexical",
        always_include: Sequence[str] = (),
        embedder: Embedder | None = None,
    ) -> None:
        if method not in ("lexical", "embedding", "hybrid"):
            raise InvalidConfigError(
                f"method must be one of 'lexical', 'embedding', 'hybrid'; got {method!r}"
            )
        if method != "lexical" and embedder is None:
            raise InvalidConfigError(
                f"method {method!r} needs an embedder; got embedder=None (use method='lexical')"
            )
        if isinstance(always_include, str):
            raise InvalidConfigError(
                f"always_include must be a sequence of tool names; got the string {always_include!r}"
            )
        self.method = method
        self.always_include = tuple(always_include)
        self.embedder = embedder
        self._vectors: dict[str, Any] = {}

    def rank(self, tools: Sequence[Mapping[str, Any]], query: str) -> list[int]:
        """Indices of ``tools``, most relevant to ``query`` first (ties keep the given order)."""
        texts = [tool_text(t) for t in tools]
        rankings: list[list[int]] = []
        if self.method in ("lexical", "hybrid"):
            rankings.append(self._lexical(texts, query))
        if self.method in ("embedding", "hybrid"):
            rankings.append(self._dense(texts, query))
        if len(rankings) == 1:
            return rankings[0]
        fused = [0.0] * len(tools)
        for ranking in rankings:
            for pos, i in enumerate(ranking):
                fused[i] += 1.0 / (60 + pos + 1)
        return sorted(range(len(tools)), key=lambda i: (-fused[i], i))

    def _lexical(self, texts: Sequence[str], query: str) -> list[int]:
        from windowkeeper.memory._lexical import BM25Index

        index = BM25Index()
        for i, text in enumerate(texts):
            index.add(i, text)
        hits = index.search(query, len(texts)) if query.strip() else []
        scored = dict(hits)
        return sorted(range(len(texts)), key=lambda i: (-scored.get(i, 0.0), i))

    def _dense(self, texts: Sequence[str], query: str) -> list[int]:
        import numpy as np

        assert self.embedder is not None  # checked at construction
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            for text, vec in zip(missing, self.embedder.embed(missing), strict=True):
                self._vectors[text] = np.asarray(vec, dtype=np.float32)
        q = np.asarray(self.embedder.embed([query])[0], dtype=np.float32)
        scores = [float(self._vectors[t] @ q) for t in texts]
        return sorted(range(len(texts)), key=lambda i: (-scores[i], i))

    def select(
        self,
        tools: Sequence[Mapping[str, Any]],
        query: str,
        *,
        limit: int,
        counter: TokenCounter,
        cost: Callable[[Sequence[Mapping[str, Any]]], int] | None = None,
    ) -> ToolSelection:
        """The most relevant tools whose schemas cost at most ``limit`` tokens.

        Args:
            tools: The tool schemas (OpenAI ``tools`` entries or legacy ``functions``).
            query: The current turn's text.
            limit: Tokens the tools zone may use.
            counter: Counts the tool block exactly.
            cost: Exact tokens of a tool list in the request (default: ``counter.count_tools``).
        """
        tools = list(tools)
        names = [tool_name(t) for t in tools]
        unknown = [n for n in self.always_include if n not in names]
        if unknown:
            raise InvalidConfigError(
                f"always_include names tools that are not offered: {unknown!r}; offered: {names!r}"
            )
        measure = cost or (lambda ts: counter.count_tools(ts) if ts else 0)
        ranked = self.rank(tools, query)
        order = [i for i in ranked if names[i] in self.always_include]
        order += [i for i in ranked if names[i] not in self.always_include]
        kept: list[int] = []
        for i in order:
            trial = sorted([*kept, i])
            if measure([tools[j] for j in trial]) <= limit:
                kept = trial
        left = [i for i in reversed(order) if i not in kept]
        dropped = tuple(
            Dropped(
                zone="tools",
                what=f"tool {names[i]}",
                tokens=measure([tools[i]]),
                reason="least relevant to this turn while the tools zone was over its limit",
            )
            for i in left
        )
        return ToolSelection(
            tools=tuple(tools[i] for i in kept),
            dropped=dropped,
            ranking=tuple(names[i] for i in ranked),
        )
