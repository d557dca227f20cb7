"""Node postprocessors: fit retrieved nodes to a token budget, put the best one next to the query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from windowkeeper import (
    Budget,
    Chunk,
    Compressor,
    ContextAssembler,
    InvalidConfigError,
    TokenCounter,
    chunks_from,
    place_chunks,
)
from windowkeeper.adapters import check_compressor

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

__all__ = ["BestNextToQueryReorder", "TokenBudgetPostprocessor", "node_chunks"]


def node_chunks(
    nodes: Sequence[NodeWithScore], metadata_mode: MetadataMode = MetadataMode.LLM
) -> list[Chunk]:
    """Nodes as core chunks: the text a response synthesizer sends, the node's score or its rank.

    ``metadata["position"]`` is the node's index in ``nodes``. Without a score on every node
    (``NodeWithScore.score``), the input order ranks them, first best.

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> chunks = node_chunks([NodeWithScore(node=TextNode(text="a")), NodeWithScore(node=TextNode(text="b"))])
        >>> [(c.text, c.score, c.metadata["position"]) for c in chunks]
        [('a', 2.0, 0), ('b', 1.0, 1)]
    """
    return chunks_from(
        [n.node.get_content(metadata_mode=metadata_mode) for n in nodes], [n.score for n in nodes]
    )


def _check_placement(data: dict[str, Any], orders: tuple[str, ...]) -> None:
    """``order`` and ``question_first``, where given, before pydantic sees them."""
    if "order" in data and data["order"] not in orders:
        allowed = ", ".join(repr(o) for o in orders[:-1]) + f" or {orders[-1]!r}"
        raise InvalidConfigError(f"order must be {allowed}; got {data['order']!r}")
    if "question_first" in data and not isinstance(data["question_first"], bool):
        raise InvalidConfigError(
            f"question_first must be True or False; got {data['question_first']!r}"
        )


class TokenBudgetPostprocessor(BaseNodePostprocessor):
    """Keep the best nodes that fit a token budget, the best one next to the query.

    Nodes are ranked by ``NodeWithScore.score`` or, when a node has none, by the retriever's
    order (first best). The core assembler keeps them best first while they fit ``max_tokens``
    and places them so the best sits last, next to a query that follows the context as in
    LlamaIndex's default QA prompt (``question_first=True`` puts it first).

    With a ``compressor`` (a :class:`~windowkeeper.Compressor`, e.g. ``windowkeeper-llmlingua``'s
    ``ChunkCompressor``), nodes that do not fit together are first compressed for the query
    (``QueryBundle.query_str``, only read), each node's own text on its own: a compressed node
    comes back as a copy with the shorter text, its score and metadata, and
    ``metadata["windowkeeper_compressed"] = (tokens before, tokens after)`` (excluded from what
    the LLM and the embedder see); nodes the compressor drops are left out. Each node is counted
    exactly, as the text a response synthesizer sends (``node.get_content(metadata_mode=LLM)``)
    in the ``<document>`` block the core sends a chunk as: a few tokens more than the text alone,
    which covers the separators LlamaIndex joins the texts with, so the context it builds from
    the kept nodes stays within ``max_tokens``. The same ``NodeWithScore``
    objects come back, one per kept node, scores and metadata untouched.

    Args:
        max_tokens: Tokens the kept nodes may cost together.
        model: Model profile to count with (ignored when ``counter`` is given).
        order: ``ascending`` (best last), ``edges`` (best last, second best first, the weakest
            in the middle) or ``none`` (kept nodes in their input order).
        question_first: The query comes before the context: the best node goes first.
        metadata_mode: Which metadata the counted text includes.
        counter: A core counter to share (not serialised).
        compressor: Compresses the nodes for the query when they do not fit (not serialised).

    Raises:
        InvalidConfigError: An argument is out of range.

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> nodes = [NodeWithScore(node=TextNode(text="Refunds take 5 days."), score=0.9),
        ...          NodeWithScore(node=TextNode(text="Shipping is free over $50."), score=0.4),
        ...          NodeWithScore(node=TextNode(text="Our office dog is Biscuit. " * 40), score=0.1)]
        >>> kept = TokenBudgetPostprocessor(max_tokens=60).postprocess_nodes(nodes, query_str="refund?")
        >>> [n.node.get_content() for n in kept]
        ['Shipping is free over $50.', 'Refunds take 5 days.']
        >>> kept[-1] is nodes[0]
        True
    """

    max_tokens: int
    """Tokens the kept nodes may cost together."""
    model: str = "gpt-4o"
    """Model profile to count with (ignored when ``counter`` is given)."""
    order: Literal["ascending", "edges", "none"] = "ascending"
    """``ascending``: best last; ``edges``: best last, second best first; ``none``: input order."""
    question_first: bool = False
    """The query comes before the context in the prompt: the best node goes first."""
    metadata_mode: MetadataMode = MetadataMode.LLM
    """Which metadata the counted text includes (``LLM``: what a response synthesizer sends)."""
    counter: TokenCounter | None = Field(default=None, exclude=True)
    """A core counter to share (default: one for ``model``); never serialised."""

    compressor: Compressor | None = Field(default=None, exclude=True)
    """Compresses the nodes for the query when they do not fit (default: none, drop only)."""

    _counter: TokenCounter = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        check_compressor(data.get("compressor"))
        max_tokens = data.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidConfigError(f"max_tokens must be an int >= 1; got {max_tokens!r}")
        _check_placement(data, ("ascending", "edges", "none"))
        if "model" in data and (not isinstance(data["model"], str) or not data["model"]):
            raise InvalidConfigError(
                f"model must be a model name (a non-empty str); got {data['model']!r}"
            )
        if "metadata_mode" in data:
            allowed = tuple(m.value for m in MetadataMode)  # a str enum: members equal values
            mode = data["metadata_mode"]
            if not isinstance(mode, str) or mode not in allowed:
                raise InvalidConfigError(
                    f"metadata_mode must be a MetadataMode or one of {allowed}; got {mode!r}"
                )
        counter = data.get("counter")
        if counter is not None and not isinstance(counter, TokenCounter):
            raise InvalidConfigError(
                f"counter must be a windowkeeper TokenCounter or None; got {type(counter).__name__}"
            )
        super().__init__(**data)
        self._counter = self.counter if self.counter is not None else TokenCounter(self.model)

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this component under."""
        return "TokenBudgetPostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        assembler = ContextAssembler(
            self._counter,
            Budget(context_window=self.max_tokens + 1, generation_reserve=1),
            chunk_order="ascending" if self.order == "none" else self.order,
            compressor=self.compressor,
        )
        if self.compressor is not None:
            nodes = self._compressed(assembler, nodes, query_bundle)
        kept, _, _, _ = assembler.fit_chunks(
            node_chunks(nodes, self.metadata_mode), self.max_tokens
        )
        positions = [c.metadata["position"] for c in kept]
        if self.order == "none":
            positions.sort()
        elif self.question_first:
            positions.reverse()
        return [nodes[i] for i in positions]

    def _compressed(
        self,
        assembler: ContextAssembler,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None,
    ) -> list[NodeWithScore]:
        """The nodes after the core's compression step, compressed ones as copies."""
        own = node_chunks(nodes, MetadataMode.NONE)
        count = self._counter.count
        shown = node_chunks(nodes, self.metadata_mode)  # metadata lines the LLM also sees
        extra = sum(count(a.text) - count(b.text) for a, b in zip(shown, own, strict=True))
        question = query_bundle.query_str if query_bundle is not None else ""
        chunks, _ = assembler.compress_chunks(own, question, max(self.max_tokens - extra, 0))
        out: list[NodeWithScore] = []
        for chunk in chunks:
            original = nodes[chunk.metadata["position"]]
            if chunk.text == own[chunk.metadata["position"]].text:
                out.append(original)
                continue
            node = original.node
            key = "windowkeeper_compressed"
            copy = node.model_copy(
                update={
                    "metadata": {
                        **node.metadata,
                        key: (count(own[chunk.metadata["position"]].text), count(chunk.text)),
                    },
                    "excluded_llm_metadata_keys": [*node.excluded_llm_metadata_keys, key],
                    "excluded_embed_metadata_keys": [*node.excluded_embed_metadata_keys, key],
                }
            )
            copy.set_content(chunk.text)
            out.append(NodeWithScore(node=copy, score=original.score))
        return out


class BestNextToQueryReorder(BaseNodePostprocessor):
    """Reorder nodes so the best one sits next to the query, whatever their number.

    A drop-in for ``LongContextReorder``, which puts the top node first or last depending on
    whether the count is odd or even. Nodes are ranked by ``NodeWithScore.score`` or, when a node
    has none, by their input order (first best), and placed by the core: ``ascending`` puts the
    best last, ``edges`` the best last and the second best first, with relevance falling toward
    the middle. ``question_first=True`` mirrors both, for prompts that state the query before
    the context. Nothing is dropped or counted; the same ``NodeWithScore`` objects come back.

    Args:
        order: ``ascending`` or ``edges``.
        question_first: The query comes before the context: the best node goes first.

    Raises:
        InvalidConfigError: An argument is out of range.

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> nodes = [NodeWithScore(node=TextNode(text=t), score=s)
        ...          for t, s in [("best", 0.9), ("weak", 0.1), ("second", 0.7), ("third", 0.5)]]
        >>> [n.node.get_content() for n in BestNextToQueryReorder().postprocess_nodes(nodes)]
        ['weak', 'third', 'second', 'best']
        >>> [n.node.get_content() for n in BestNextToQueryReorder(order="edges").postprocess_nodes(nodes)]
        ['second', 'weak', 'third', 'best']
    """

    order: Literal["ascending", "edges"] = "ascending"
    """``ascending``: best last; ``edges``: best last, second best first."""
    question_first: bool = False
    """The query comes before the context in the prompt: the best node goes first."""

    def __init__(self, **data: Any) -> None:
        _check_placement(data, ("ascending", "edges"))
        super().__init__(**data)

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this component under."""
        return "BestNextToQueryReorder"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        chunks = chunks_from([""] * len(nodes), [n.score for n in nodes])
        positions = [c.metadata["position"] for c in place_chunks(chunks, self.order)]
        if self.question_first:
            positions.reverse()
        return [nodes[i] for i in positions]

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return self._postprocess_nodes(nodes, query_bundle)  # microseconds: no worker thread
