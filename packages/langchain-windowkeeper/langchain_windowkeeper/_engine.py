"""What every LangChain face shares: one counter, one budget, one memory per conversation.

The engine turns LangChain's inputs into the core's and back; every decision (what fits, what is
summarised or recalled, which tools are offered) is the core's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from windowkeeper import (
    Assembled,
    Budget,
    ChatSummarizer,
    Compressor,
    ContextAssembler,
    ContextEditor,
    ConversationStore,
    Embedder,
    InvalidConfigError,
    Memory,
    Message,
    ModelProfile,
    Sessions,
    TokenCounter,
    ToolSelector,
    UnknownModelError,
    UtilizationMonitor,
    build_memory,
)
from windowkeeper.adapters import ConvertedUnits, check_compress_zones, check_compressor
from windowkeeper.memory import Summarizer
from windowkeeper.stores import open_store

from langchain_windowkeeper._convert import to_core, to_core_messages, to_langchain
from langchain_windowkeeper._embeddings import as_core_embedder

__all__ = ["Engine", "MemoryChoice", "chat_summarizer"]

MemoryChoice = Literal["window", "summary", "recall", "layered"] | Callable[[str], Memory]
"""A strategy name, or ``session_id -> Memory`` for full control."""
_STRATEGIES = ("window", "summary", "recall", "layered")


def chat_summarizer(model: BaseChatModel, **prompts: str) -> ChatSummarizer:
    """A core summariser that asks a LangChain chat model for notes (``ainvoke``, off the request path).

    ``prompts`` may set ``prompt`` and ``condense_prompt`` (see :class:`~windowkeeper.ChatSummarizer`).
    """
    if not isinstance(model, BaseChatModel):
        raise InvalidConfigError(
            f"model must be a LangChain BaseChatModel; got {type(model).__name__}"
        )

    async def complete(chat: list[dict[str, Any]]) -> str:
        reply = await model.ainvoke([to_langchain(m) for m in chat])
        return reply.text

    return ChatSummarizer(complete, **prompts)


def model_name(model: object) -> str | None:
    """The model name a LangChain chat model carries (``model_name`` or ``model``), if any."""
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


class Engine:
    """Counter, budget, assembler and per-session memories for one LangChain face.

    Built lazily when no model is named: the first request's chat model names it.
    """

    def __init__(
        self,
        model: str | ModelProfile | None,
        *,
        budget: Budget | None,
        counter: TokenCounter | None,
        memory: MemoryChoice,
        store: ConversationStore | str | os.PathLike[str] | None,
        summarizer: BaseChatModel | Summarizer | None,
        embeddings: Embeddings | Embedder | Literal["default"] | None,
        monitor: UtilizationMonitor | None,
        tool_selector: ToolSelector | None,
        max_utilization: float | None,
        memory_options: Mapping[str, Any],
        keep_tool_results: int | None = None,
        compressor: Compressor | None = None,
        compress_zones: Sequence[str] = ("rag",),
    ) -> None:
        self.compressor = check_compressor(compressor)
        self.compress_zones = check_compress_zones(compress_zones)
        if budget is not None and not isinstance(budget, Budget):
            raise InvalidConfigError(
                f"budget must be a Budget or None; got {type(budget).__name__}"
            )
        if counter is not None and not isinstance(counter, TokenCounter):
            raise InvalidConfigError(
                f"counter must be a TokenCounter or None; got {type(counter).__name__}"
            )
        if not callable(memory) and memory not in _STRATEGIES:
            raise InvalidConfigError(
                f"memory must be one of {list(_STRATEGIES)} or a callable (session_id -> Memory); "
                f"got {memory!r}"
            )
        if monitor is not None and not isinstance(monitor, UtilizationMonitor):
            raise InvalidConfigError(
                f"monitor must be a UtilizationMonitor or None; got {type(monitor).__name__}"
            )
        self.memory_choice = memory
        self.store = open_store(store)
        self.summarizer: Summarizer | None = (
            chat_summarizer(summarizer) if isinstance(summarizer, BaseChatModel) else summarizer
        )
        if self.summarizer is not None and not callable(self.summarizer):
            raise InvalidConfigError(
                "summarizer must be a BaseChatModel, a callable (previous, units) -> text or None; "
                f"got {type(summarizer).__name__}"
            )
        self.embedder: Embedder | Literal["default"] | None = (
            embeddings if embeddings in ("default", None) else as_core_embedder(embeddings)  # type: ignore[arg-type]
        )
        self.monitor = monitor
        self.tool_selector = tool_selector
        self.max_utilization = max_utilization
        self.keep_tool_results = keep_tool_results
        self.memory_options = dict(memory_options)
        self._model = model
        self._budget = budget
        self._counter = counter
        self._assembler: ContextAssembler | None = None
        self._sessions: Sessions[BaseMessage] | None = None
        self._lock = threading.Lock()
        # the LangChain copies of the stored units each session's last request showed
        self._shown: ConvertedUnits[BaseMessage] = ConvertedUnits(to_langchain)
        if model is not None or counter is not None:
            self._build(None)

    # ------------------------------------------------------------------------------ set-up

    def _build(self, chat_model: object) -> ContextAssembler:
        with self._lock:
            if self._assembler is not None:
                return self._assembler
            counter = self._counter
            if counter is None:
                name = self._model if self._model is not None else model_name(chat_model)
                if name is None:
                    raise InvalidConfigError(
                        f"model is needed: the chat model {type(chat_model).__name__} names none; "
                        "pass model='gpt-4o' (a registered profile) or counter=TokenCounter(...)"
                    )
                try:
                    counter = TokenCounter(name)
                except UnknownModelError as exc:
                    raise InvalidConfigError(
                        f"model {name!r} has no windowkeeper profile: pass model= with a registered "
                        f"name, or register_model(...) first ({exc})"
                    ) from exc
            budget = self._budget or Budget.for_model(counter.profile)
            self._counter = counter
            self._budget = budget
            self._sessions = Sessions(self._memory_factory(counter))
            self._assembler = ContextAssembler(
                counter,
                budget,
                tool_selector=self.tool_selector,
                max_utilization=self.max_utilization,
                editor=(
                    ContextEditor(counter, keep_tool_results=self.keep_tool_results)
                    if self.keep_tool_results is not None
                    else None
                ),
                compressor=self.compressor,
                compress_zones=tuple(self.compress_zones),
            )
            return self._assembler

    def _memory_factory(self, counter: TokenCounter) -> Callable[[str], Memory]:
        choice = self.memory_choice
        if callable(choice):
            return choice
        options: dict[str, Any] = dict(self.memory_options)
        if choice in ("summary", "layered") and self.summarizer is not None:
            options.setdefault("summarizer", self.summarizer)
        if choice in ("recall", "layered") and self.embedder != "default":
            options.setdefault("embedder", self.embedder)
        store = self.store

        def factory(session_id: str) -> Memory:
            return build_memory(choice, counter, store=store, session_id=session_id, **options)

        return factory

    @property
    def ready(self) -> bool:
        """Whether counter, budget and memories are built (at once when a model was named)."""
        return self._assembler is not None

    def assembler(self, chat_model: object = None) -> ContextAssembler:
        """The assembler (built on first use from the chat model's name when none was given)."""
        return self._assembler if self._assembler is not None else self._build(chat_model)

    @property
    def counter(self) -> TokenCounter:
        """The counter (after the first request when the model is read from it)."""
        return self.assembler().counter

    @property
    def sessions(self) -> Sessions[BaseMessage]:
        """The per-conversation memories."""
        self.assembler()
        assert self._sessions is not None
        return self._sessions

    def memory(self, session_id: str) -> Memory:
        """The memory of one conversation."""
        return self.sessions.memory(session_id)

    # ------------------------------------------------------------------------------ turns

    def store_finished(
        self, session_id: str, messages: Sequence[BaseMessage], stop: int | None = None
    ) -> int:
        """Store the finished turns of ``messages[:stop]`` not stored yet; how many units were stored."""
        return len(
            self.sessions.sync(
                session_id, messages, key=_message_id, convert=to_core_messages, stop=stop
            )
        )

    def assemble(
        self,
        session_id: str,
        current: Sequence[BaseMessage],
        *,
        system: BaseMessage | None,
        tools: Sequence[Mapping[str, Any]] = (),
        chunks: Sequence[Any] = (),
        chat_model: object = None,
    ) -> tuple[Assembled, list[BaseMessage]]:
        """Assemble one request; the LangChain messages to send after the system message.

        Messages of ``current`` come back as the same objects unless the core edited them (a
        cleared tool result); stored turns come back as the LangChain messages they were.
        """
        assembler = self.assembler(chat_model)
        core_current = to_core_messages(current)
        system_core = [to_core(system)] if system is not None else None
        out = assembler.assemble(
            core_current,
            system=system_core,
            tools=tools,
            memory=self.memory(session_id),
            chunks=chunks,
        )
        originals = {id(c): lc for c, lc in zip(core_current, current, strict=True)}
        originals.update(self._shown.mapping(session_id, out.view.recent))
        skip = len(system_core or ())
        messages = [_original_or(originals, m) for m in out.messages[skip:]]
        if self.monitor is not None:
            self.monitor.record(out.report, label=session_id)
        return out, messages


def _original_or(originals: Mapping[int, BaseMessage], message: Message) -> BaseMessage:
    original = originals.get(id(message))
    return original if original is not None else to_langchain(message)


def _message_id(message: BaseMessage) -> str | None:
    return message.id


def last_user_index(messages: Sequence[BaseMessage]) -> int | None:
    """Index of the newest ``HumanMessage`` (scanning from the end: the cost is the turn's)."""
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return i
    return None
