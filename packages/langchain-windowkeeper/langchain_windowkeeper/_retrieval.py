"""Retrieval pieces: a budget-fitting document compressor, turn recall as a retriever, a budgeted prompt."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun, Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, PrivateAttr, model_validator
from windowkeeper import (
    Budget,
    Chunk,
    Compressor,
    ContextAssembler,
    InvalidConfigError,
    Memory,
    Sessions,
    TokenCounter,
    Unit,
    chunks_from,
)
from windowkeeper.adapters import check_compressor
from windowkeeper.memory import render_unit

from langchain_windowkeeper._convert import to_core, to_core_messages, to_langchain

__all__ = [
    "BudgetedPrompt",
    "TurnRecallRetriever",
    "WindowkeeperDocumentCompressor",
    "document_chunks",
]

SCORE_KEYS = ("relevance_score", "score", "similarity", "rerank_score")
"""Document metadata keys read as a relevance score (higher is better), in this order."""


def document_chunks(
    documents: Sequence[Document], score_keys: Sequence[str] = SCORE_KEYS
) -> list[Chunk]:
    """Documents as core chunks: the score from metadata, else from the rank (first is best).

    A list mixing scored and unscored documents ranks by the given order alone, so a retriever's
    ranking is never second-guessed (the core's :func:`~windowkeeper.chunks_from`).
    """
    scores = [next((d.metadata[k] for k in score_keys if k in d.metadata), None) for d in documents]
    return chunks_from([d.page_content for d in documents], scores, ids=[d.id for d in documents])


class WindowkeeperDocumentCompressor(BaseDocumentCompressor):
    """Keep the best documents that fit a token budget, the best one next to the question.

    For ``ContextualCompressionRetriever`` and ``DocumentCompressorPipeline``. Documents are
    ranked by a metadata score (``relevance_score``, ``score``, ... as a reranker sets them) or,
    without one, by the retriever's order; the core assembler keeps them best first while they
    fit ``max_tokens`` (counted exactly as the ``<document>`` blocks a windowkeeper request sends)
    and places them so the best sits last, next to a question that follows the context
    (``question_first=True`` puts it first). LangChain's ``LongContextReorder`` puts the top
    document first or last depending on whether the count is odd or even. Documents come back as
    copies with their kept rank in ``metadata["windowkeeper_rank"]``; the originals are never
    changed.

    With a ``compressor`` (a :class:`~windowkeeper.Compressor`, e.g. ``windowkeeper-llmlingua``'s
    ``ChunkCompressor``), documents that do not fit ``max_tokens`` together are first compressed
    for the query (which is only read), each on its own: a compressed document keeps its id and
    metadata, its shorter text in ``page_content`` and ``metadata["windowkeeper_compressed"] =
    (tokens before, tokens after)``; documents the compressor drops are left out.

    Example:
        >>> from langchain_core.documents import Document
        >>> docs = [Document("Refunds take 5 days.", metadata={"relevance_score": 0.9}),
        ...         Document("Shipping is free over $50.", metadata={"relevance_score": 0.4}),
        ...         Document("Our office dog is called Biscuit. " * 40, metadata={"relevance_score": 0.1})]
        >>> out = WindowkeeperDocumentCompressor(max_tokens=60).compress_documents(docs, "refund?")
        >>> [d.page_content for d in out]
        ['Shipping is free over $50.', 'Refunds take 5 days.']
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    max_tokens: int
    """Tokens the kept documents may cost together."""
    model: str = "gpt-4o"
    """Model profile to count with."""
    order: Literal["ascending", "edges"] = "ascending"
    """``ascending``: best last; ``edges``: best last, second best first."""
    question_first: bool = False
    """The question comes before the documents in the prompt: the best document goes first."""
    score_keys: tuple[str, ...] = SCORE_KEYS
    """Metadata keys read as the score."""
    counter: TokenCounter | None = None
    """A core counter to share (default: one for ``model``)."""
    compressor: Compressor | None = None
    """Compresses the documents for the query when they do not fit (default: none, drop only)."""

    _assembler: ContextAssembler = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        check_compressor(data.get("compressor"))
        max_tokens = data.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidConfigError(f"max_tokens must be an int >= 1; got {max_tokens!r}")
        if data.get("order", "ascending") not in ("ascending", "edges"):
            raise InvalidConfigError(f"order must be 'ascending' or 'edges'; got {data['order']!r}")
        super().__init__(**data)

    @model_validator(mode="after")
    def _build(self) -> WindowkeeperDocumentCompressor:
        counter = self.counter or TokenCounter(self.model)
        budget = Budget(context_window=self.max_tokens + 1, generation_reserve=1)
        self._assembler = ContextAssembler(
            counter, budget, chunk_order=self.order, compressor=self.compressor
        )
        return self

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The documents that fit (compressed first when a compressor is set), in placement order."""
        chunks = document_chunks(documents, self.score_keys)
        chunks, _ = self._assembler.compress_chunks(chunks, query, self.max_tokens)
        kept, _, _, _ = self._assembler.fit_chunks(chunks, self.max_tokens)
        if self.question_first:
            kept = kept[::-1]
        ranked = sorted(kept, key=lambda c: -c.score)
        rank = {id(c): i for i, c in enumerate(ranked)}
        out: list[Document] = []
        for chunk in kept:
            doc = documents[chunk.metadata["position"]]
            metadata = {**doc.metadata, "windowkeeper_rank": rank[id(chunk)]}
            update: dict[str, Any] = {"metadata": metadata}
            if chunk.text != doc.page_content:
                count = self._assembler.counter.count
                metadata["windowkeeper_compressed"] = (count(doc.page_content), count(chunk.text))
                update["page_content"] = chunk.text
            out.append(doc.model_copy(update=update))
        return out


class TurnRecallRetriever(BaseRetriever):
    """Past turns of one conversation as documents, ranked by the core's hybrid recall.

    Wraps a memory with a recall index (:class:`~windowkeeper.TurnRecall` or
    :class:`~windowkeeper.LayeredMemory`: BM25 plus embeddings, fused), so it searches that
    session only. Each document is one stored turn rendered as ``speaker: text`` lines, with
    ``metadata`` ``session_id``, ``unit`` (its index), ``score`` and ``timestamp``, and the id
    ``"<session>:<unit>"``.

    Example:
        >>> from windowkeeper import TokenCounter, TurnRecall
        >>> memory = TurnRecall(TokenCounter("gpt-4o"), embedder=None, session_id="ann")
        >>> for q, a in [("My dog is Biscuit", "Noted."), ("Ship to Oslo", "Done."), ("Hi", "Hello")]:
        ...     _ = memory.add([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
        >>> TurnRecallRetriever(memory=memory, k=1).invoke("what is my dog called?")[0].id
        'ann:0'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memory: Any
    """A memory with a recall index (``TurnRecall``, ``LayeredMemory``)."""
    k: int = 4
    """Turns to return."""
    skip_recent: int = 0
    """Newest turns never returned (already in the prompt verbatim)."""

    def __init__(self, **data: Any) -> None:
        memory = data.get("memory")
        index = getattr(memory, "index", None)
        if not callable(getattr(index, "search", None)) or not hasattr(memory, "units"):
            raise InvalidConfigError(
                "memory must have a recall index (TurnRecall or LayeredMemory); "
                f"got {type(memory).__name__}"
            )
        for label, least in (("k", 1), ("skip_recent", 0)):
            value = data.get(label, least)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidConfigError(f"{label} must be an int >= {least}; got {value!r}")
        super().__init__(**data)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
    ) -> list[Document]:
        k = self.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidConfigError(f"k must be an int >= 1; got {k!r}")
        units: list[Unit] = self.memory.units
        n = len(units)
        exclude = range(max(n - self.skip_recent, 0), n)
        ranked = self.memory.index.search(query, k, exclude=exclude)
        session = self.memory.session_id
        return [
            Document(
                page_content=render_unit(units[i]),
                id=f"{session}:{i}",
                metadata={
                    "session_id": session,
                    "unit": i,
                    "score": float(score),
                    "timestamp": units[i].timestamp,
                },
            )
            for i, score in ranked
        ]


class BudgetedPrompt(Runnable[Mapping[str, Any], ChatPromptValue]):
    """An LCEL step that assembles system prompt, history, documents and question under a budget.

    Input: a dict with ``question`` (text or a ``HumanMessage``), optional ``documents``
    (``Document``s, fitted and placed as in :class:`WindowkeeperDocumentCompressor`), optional
    ``history`` (LangChain messages; the newest whole turns that fit are kept) and optional
    ``session_id`` (with ``memory``: that conversation's memory supplies the history). Output: a
    ``ChatPromptValue`` for the chat model, and :attr:`last_report` holds the budget report.

    Args:
        budget: Window, reserve and zone limits (``rag``, ``history``, ...).
        system: The system prompt.
        model: Model profile to count with (or ``counter``).
        memory: ``session_id -> Memory`` for history kept by windowkeeper.

    Example:
        >>> from windowkeeper import Budget
        >>> prompt = BudgetedPrompt(Budget(context_window=2000, generation_reserve=200),
        ...                         system="Answer from the documents.")
        >>> value = prompt.invoke({"question": "How long do refunds take?",
        ...                        "documents": [Document("Refunds take 5 days.")]})
        >>> [m.type for m in value.messages]
        ['system', 'human', 'human']
    """

    def __init__(
        self,
        budget: Budget,
        *,
        system: str | None = None,
        model: str = "gpt-4o",
        counter: TokenCounter | None = None,
        memory: Callable[[str], Memory] | None = None,
        order: Literal["ascending", "edges"] = "ascending",
    ) -> None:
        if memory is not None and not callable(memory):
            raise InvalidConfigError(f"memory must be session_id -> Memory or None; got {memory!r}")
        self.assembler = ContextAssembler(counter or TokenCounter(model), budget, chunk_order=order)
        self.system = system
        self.sessions: Sessions[Any] | None = Sessions(memory) if memory is not None else None
        self.last_report: Any = None

    def invoke(
        self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> ChatPromptValue:
        """Assemble one prompt."""
        if not isinstance(input, Mapping) or "question" not in input:
            raise InvalidConfigError(
                "input must be a dict with 'question' (and optional 'documents', 'history', "
                f"'session_id'); got {type(input).__name__}"
            )
        question = input["question"]
        user = question if isinstance(question, BaseMessage) else HumanMessage(str(question))
        documents = input.get("documents") or []
        history = input.get("history")
        memory = None
        if self.sessions is not None and input.get("session_id"):
            memory = self.sessions.memory(str(input["session_id"]))
        out = self.assembler.assemble(
            [to_core(user)],
            system=[to_core(SystemMessage(self.system))] if self.system else None,
            memory=memory,
            history=to_core_messages(history) if history and memory is None else None,
            chunks=document_chunks(documents),
        )
        self.last_report = out.report
        return ChatPromptValue(messages=[to_langchain(m) for m in out.messages])
