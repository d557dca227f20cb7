"""Memory blocks for LlamaIndex's ``Memory``: a rolling summary and turn recall, made by the core."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from windowkeeper import (
    ConversationStore,
    InvalidConfigError,
    Memory,
    MemoryStore,
    RollingSummary,
    SQLiteStore,
    TokenCounter,
    TurnLog,
    TurnRecall,
)
from windowkeeper.memory import render_unit
from windowkeeper.memory._keeper import cut_to_tokens

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms import LLM
from llama_index.core.memory.memory import BaseMemoryBlock
from llama_index.memory.windowkeeper._convert import to_core_messages
from llama_index.memory.windowkeeper._embeddings import as_core_embedder
from llama_index.memory.windowkeeper._memory import llm_summarizer

__all__ = ["RecallBlock", "SummaryBlock"]

_SESSION_KEY = "session_id"


def _session(messages: list[ChatMessage] | None, default: str) -> str:
    """The session LlamaIndex's ``Memory`` marks its messages with (``additional_kwargs``)."""
    for message in messages or ():
        value = message.additional_kwargs.get(_SESSION_KEY)
        if isinstance(value, str) and value:
            return value
    return default


def _requested(kwargs: dict[str, Any], messages: list[ChatMessage] | None, default: str) -> str:
    """The session ``Memory.aget`` asks for (its ``session_id`` keyword), else the messages' mark."""
    value = kwargs.get(_SESSION_KEY)
    return value if isinstance(value, str) and value else _session(messages, default)


class _CoreBlock(BaseMemoryBlock[str]):
    """Shared plumbing: one core memory per session, fed whole turns."""

    model: str = Field(default="gpt-4o", description="Model profile to count with.")
    max_tokens: int = Field(default=400, description="Tokens the block's text may cost.")
    path: str | None = Field(default=None, description="SQLite file (default: in-process).")
    session_id: str = Field(default="default", description="Session when messages carry none.")

    _counter: TokenCounter = PrivateAttr()
    _store: ConversationStore = PrivateAttr()
    _logs: dict[str, TurnLog[ChatMessage]] = PrivateAttr(default_factory=dict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, **data: Any) -> None:
        max_tokens = data.get("max_tokens", 400)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidConfigError(f"max_tokens must be an int >= 1; got {max_tokens!r}")
        super().__init__(**data)

    def model_post_init(self, context: Any, /) -> None:
        self._counter = TokenCounter(self.model)
        self._store = SQLiteStore(Path(self.path)) if self.path else MemoryStore()

    def _memory(self, session_id: str) -> Memory:
        raise NotImplementedError

    def log(self, session_id: str) -> TurnLog[ChatMessage]:
        """The turns of one session (opened on first use)."""
        with self._lock:
            log = self._logs.get(session_id)
            if log is None:
                log = TurnLog(
                    self._memory,
                    session_id,
                    convert=to_core_messages,
                    counter=self._counter,
                    store=self._store,
                )
                self._logs[session_id] = log
            return log

    async def _aput(self, messages: list[ChatMessage]) -> None:
        """Flushed messages: each finished turn is stored (and summarised or indexed off-path)."""
        by_session: dict[str, list[ChatMessage]] = {}
        for message in messages:
            by_session.setdefault(_session([message], self.session_id), []).append(message)
        for session_id, items in by_session.items():
            self.log(session_id).add(items)

    async def atruncate(self, content: str, tokens_to_truncate: int) -> str | None:
        """The block's text shortened by about ``tokens_to_truncate`` tokens (at a sentence or line)."""
        count = self._counter.count
        keep = count(content) - max(tokens_to_truncate, 0)
        if keep <= 0:
            return None
        return cut_to_tokens(content, keep, count) or None


class SummaryBlock(_CoreBlock):
    """A rolling summary of the turns ``Memory`` flushes, made in the background.

    LlamaIndex's ``Memory`` has no summary block. This one hands each flushed turn to the core's
    :class:`~windowkeeper.RollingSummary`: notes are made off the request path (by the LlamaIndex
    ``llm`` you pass, or the core's extractive fact notes), capped at ``max_tokens``, and ``aget``
    never waits for them. Turns not yet summarised are returned verbatim after the summary (within
    ``max_tokens``), so nothing flushed is missing while a summary is being made, or if the
    summariser fails.

    Example:
        >>> from llama_index.core.memory import Memory
        >>> memory = Memory.from_defaults(session_id="ann", token_limit=2000,
        ...                               memory_blocks=[SummaryBlock(name="summary")])
    """

    name: str = Field(default="conversation_summary")
    # Memory truncates in ascending priority (1 first; run-llama/llama_index#23090): recall goes first
    priority: int = Field(default=2, description="Truncated after recall (priority 1).")
    llm: LLM | None = Field(default=None, exclude=True, description="Writes the notes.")

    def _memory(self, session_id: str) -> Memory:
        summarizer = llm_summarizer(self.llm) if self.llm is not None else None
        return RollingSummary(
            self._counter,
            store=self._store,
            session_id=session_id,
            summarizer=summarizer,
            keep_last=1,  # the newest flushed turn is returned verbatim until the next one
            min_batch=1,
            summary_tokens=self.max_tokens,
        )

    async def _aget(self, messages: list[ChatMessage] | None = None, **kwargs: Any) -> str:
        log = self.log(_requested(kwargs, messages, self.session_id))
        view = log.memory.view("", budget=self.max_tokens * 2)
        parts = [view.summary] if view.summary else []
        parts.extend(render_unit(u) for u in view.recent)
        text = "\n".join(parts)
        if self._counter.count(text) > self.max_tokens:
            text = cut_to_tokens(text, self.max_tokens, self._counter.count)
        return text


class RecallBlock(_CoreBlock):
    """Flushed turns recalled for the current question (BM25 + embeddings, whole turns).

    Each turn ``Memory`` flushes is indexed by the core's :class:`~windowkeeper.TurnRecall` for
    its session only; ``aget`` ranks them against the newest user message and returns the best
    whole turns that fit ``max_tokens``, in turn order, as the core's ``<recalled_turns>`` block.

    Example:
        >>> block = RecallBlock(name="recalled", max_tokens=300, use_embeddings=False)
        >>> block.priority
        1
    """

    name: str = Field(default="recalled_turns")
    priority: int = Field(default=1, description="Truncated first (Memory truncates 1 first).")
    max_tokens: int = Field(default=800, description="Tokens the recalled turns may cost.")
    use_embeddings: bool = Field(default=True, description="Dense recall next to BM25.")
    embed_model: BaseEmbedding | None = Field(default=None, exclude=True)

    def _memory(self, session_id: str) -> Memory:
        options: dict[str, Any] = {}
        if not self.use_embeddings:
            options["embedder"] = None
        elif self.embed_model is not None:
            options["embedder"] = as_core_embedder(self.embed_model)
        return TurnRecall(
            self._counter, store=self._store, session_id=session_id, recent_units=0, **options
        )

    async def _aget(self, messages: list[ChatMessage] | None = None, **kwargs: Any) -> str:
        query = next(
            (m.content or "" for m in reversed(messages or []) if m.role.value == "user"), ""
        )
        log = self.log(_requested(kwargs, messages, self.session_id))
        view = log.memory.view(query, budget=self.max_tokens)
        if not view.recalled:
            return ""
        return view.messages()[0].text
