"""A drop-in LlamaIndex ``BaseMemory`` backed by windowkeeper's core."""

from __future__ import annotations

import threading
from typing import Any, Literal

from windowkeeper import (
    ChatSummarizer,
    ConversationStore,
    InvalidConfigError,
    Memory,
    MemoryStore,
    TokenCounter,
    TurnLog,
    build_memory,
)
from windowkeeper.adapters import ConvertedUnits, call_blocking
from windowkeeper.stores import open_store

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms import LLM
from llama_index.core.memory.types import BaseMemory
from llama_index.core.storage.chat_store import BaseChatStore
from llama_index.memory.windowkeeper._convert import (
    to_core_messages,
    to_llama,
    to_llama_messages,
)
from llama_index.memory.windowkeeper._embeddings import as_core_embedder

__all__ = ["WindowkeeperMemory", "llm_summarizer"]

Strategy = Literal["window", "summary", "recall", "layered"]
_STRATEGIES = ("window", "summary", "recall", "layered")


def llm_summarizer(llm: LLM, **prompts: str) -> ChatSummarizer:
    """A core summariser that asks a LlamaIndex ``LLM`` for notes (``achat``, off the request path)."""
    if not isinstance(llm, LLM):
        raise InvalidConfigError(f"llm must be a LlamaIndex LLM; got {type(llm).__name__}")

    async def complete(chat: list[dict[str, Any]]) -> str:
        response = await llm.achat([to_llama(m) for m in chat])
        return response.message.content or ""

    return ChatSummarizer(complete, **prompts)


class WindowkeeperMemory(BaseMemory):
    """A LlamaIndex memory that returns exactly what fits its budget and keeps every message.

    Pass it wherever LlamaIndex takes ``memory=``: ``SimpleChatEngine``, ``ContextChatEngine``,
    ``CondensePlusContextChatEngine``, ``FunctionAgent`` / ``AgentWorkflow.run(memory=...)``.
    ``put`` stores every message (a SQLite file by default, or the LlamaIndex chat store you give,
    which it keeps writing to); ``get`` returns what fits ``max_tokens`` for the newest question,
    counted exactly with tool calls, thinking and other blocks: with the default layered memory, a
    summary of older turns (made in the background), turns recalled for the question and the
    recent turns verbatim, never a tool call without its result. A turn is stored when it is
    finished; a turn in progress is held in the process and returned after the history.

    Sync and async methods both work inside a running event loop (the work is synchronous and
    short; nothing waits on the loop). ``reset()`` and ``set()`` delete nothing: the conversation
    continues in a fresh session (``"<session_id>#1"``, ...).

    The memory survives a workflow ``Context`` round trip (its fields are plain settings; it
    reopens its SQLite file); a wrapped ``chat_store`` must serialise too (``SimpleChatStore``
    does not with llama-index-core 0.14.25). A summariser ``llm`` or an ``embed_model`` is not serialised: pass
    them again when you restore (``WindowkeeperMemory.from_defaults(..., llm=llm)``), or the
    restored memory uses the core's extractive notes and the embedded MiniLM.

    Args:
        session_id: The conversation.
        max_tokens: Tokens ``get`` may return (exact, for ``model``).
        model: Model profile to count with.
        strategy: ``"window"``, ``"summary"``, ``"recall"`` or ``"layered"``.
        path: SQLite file of the conversation, or a ``postgresql://`` URI: the process's shared
            :class:`~windowkeeper.stores.PostgresStore`, for several app servers serving the same
            sessions (ignored with ``chat_store``; ``None``: in the process only).
        chat_store: A LlamaIndex chat store to keep every message in instead.
        chat_store_key: The key in ``chat_store`` (default: ``session_id``).
        llm: A LlamaIndex LLM that writes the summaries (default: the core's fact notes).
        embed_model: A LlamaIndex ``BaseEmbedding`` for recall (default: the embedded MiniLM);
            ``use_embeddings=False`` for BM25 alone.
        memory_options: Passed to the core memory (``recent_units``, ``summary_tokens``, ...).

    Example:
        >>> import tempfile, pathlib
        >>> path = str(pathlib.Path(tempfile.mkdtemp()) / "chat.db")
        >>> memory = WindowkeeperMemory.from_defaults(session_id="ann", path=path, strategy="window")
        >>> memory.put_messages([ChatMessage(role="user", content="Order A-17?"),
        ...                      ChatMessage(role="assistant", content="It ships today.")])
        >>> [m.content for m in memory.get()]
        ['Order A-17?', 'It ships today.']
    """

    session_id: str = Field(default="default", description="The conversation.")
    max_tokens: int = Field(default=4000, description="Tokens get() may return.")
    model: str = Field(default="gpt-4o", description="Model profile to count with.")
    strategy: Strategy = Field(default="layered", description="Which core memory.")
    path: str | None = Field(
        default="windowkeeper_memory.db",
        description="SQLite file, or a postgresql:// URI for a store every app server shares.",
    )
    chat_store: SerializeAsAny[BaseChatStore] | None = Field(default=None)
    chat_store_key: str | None = Field(default=None)
    use_embeddings: bool = Field(default=True, description="Dense recall next to BM25.")
    memory_options: dict[str, Any] = Field(default_factory=dict)
    llm: LLM | None = Field(default=None, exclude=True)
    embed_model: BaseEmbedding | None = Field(default=None, exclude=True)

    _counter: TokenCounter = PrivateAttr()
    _store: ConversationStore = PrivateAttr()
    _log: TurnLog[ChatMessage] = PrivateAttr()
    _lock: Any = PrivateAttr(default_factory=threading.RLock)
    _shown: ConvertedUnits[ChatMessage] = PrivateAttr(
        default_factory=lambda: ConvertedUnits(to_llama, max_sessions=4)
    )

    def __init__(self, **data: Any) -> None:
        _check(data)
        super().__init__(**data)

    def model_post_init(self, context: Any, /) -> None:
        self._counter = TokenCounter(self.model)
        self._store = self._open_store()
        self._log = TurnLog(
            self._factory,
            self.session_id,
            convert=to_core_messages,
            counter=self._counter,
            store=None if self.chat_store is not None else self._store,
        )
        if self.chat_store is not None:  # mirror the chat store: finished turns stored, rest held
            self._log.add(self.chat_store.get_messages(self._key))

    @classmethod
    def class_name(cls) -> str:
        """Name LlamaIndex serialises the class under."""
        return "WindowkeeperMemory"

    @classmethod
    def from_defaults(cls, **kwargs: Any) -> WindowkeeperMemory:
        """Build from keyword arguments (the fields above)."""
        return cls(**kwargs)

    # ------------------------------------------------------------------------------ set-up

    @property
    def _key(self) -> str:
        return self.chat_store_key or self.session_id

    def _open_store(self) -> ConversationStore:
        if self.chat_store is not None:
            return MemoryStore()
        return open_store(self.path)

    def _factory(self, session_id: str) -> Memory:
        options: dict[str, Any] = dict(self.memory_options)
        if self.strategy in ("summary", "layered") and self.llm is not None:
            options.setdefault("summarizer", llm_summarizer(self.llm))
        if self.strategy in ("recall", "layered"):
            if not self.use_embeddings:
                options.setdefault("embedder", None)
            elif self.embed_model is not None:
                options.setdefault("embedder", as_core_embedder(self.embed_model))
        return build_memory(
            self.strategy, self._counter, store=self._store, session_id=session_id, **options
        )

    @property
    def core(self) -> Memory:
        """The core memory of the current session."""
        return self._log.memory

    @property
    def counter(self) -> TokenCounter:
        """The counter ``get`` budgets with."""
        return self._counter

    # ------------------------------------------------------------------------------ reads

    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """What fits ``max_tokens`` for ``input`` (default: the newest question), then a turn in progress."""
        view, pending = self._log.view(self.max_tokens, query=input)
        return [*self._shown.view_messages(self._log.session, view), *pending]

    async def aget(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """:meth:`get` (works inside a running event loop; a shared store is read off it)."""
        return await call_blocking(self._store, self.get, input, **kwargs)

    def get_all(self) -> list[ChatMessage]:
        """Every stored message of the current session, then a turn in progress."""
        stored = [m for u in self._log.units() for m in u.messages]
        return [*to_llama_messages(stored), *self._log.pending]

    async def aget_all(self) -> list[ChatMessage]:
        """:meth:`get_all`."""
        return await call_blocking(self._store, self.get_all)

    # ------------------------------------------------------------------------------ writes

    def put(self, message: ChatMessage) -> None:
        """Store one message."""
        self.put_messages([message])

    async def aput(self, message: ChatMessage) -> None:
        """:meth:`put`."""
        await call_blocking(self._store, self.put_messages, [message])

    def put_messages(self, messages: list[ChatMessage]) -> None:
        """Store messages (a finished turn is stored at once)."""
        messages = list(messages)
        core = to_core_messages(messages)  # refuse what cannot be converted before writing anywhere
        with self._lock:
            if self.chat_store is not None:
                for message in messages:
                    self.chat_store.add_message(self._key, message)
            self._log.add(messages, converted=core)

    async def aput_messages(self, messages: list[ChatMessage]) -> None:
        """:meth:`put_messages`."""
        await call_blocking(self._store, self.put_messages, messages)

    def set(self, messages: list[ChatMessage]) -> None:
        """Replace the history: continue in a fresh session holding ``messages`` (nothing deleted)."""
        messages = list(messages)
        to_core_messages(messages)
        with self._lock:
            if self.chat_store is not None:
                self.chat_store.set_messages(self._key, messages)
                self._store = MemoryStore()
                self._log.restart()
                self._shown.forget(self._log.session)  # the same session id starts afresh
            else:
                self._log.clear()
            self._log.add(messages)

    async def aset(self, messages: list[ChatMessage]) -> None:
        """:meth:`set`."""
        await call_blocking(self._store, self.set, messages)

    def reset(self) -> None:
        """Start afresh in a new session; the stored turns are kept (a chat store clears its key)."""
        with self._lock:
            if self.chat_store is not None:
                self.chat_store.delete_messages(self._key)
                self._store = MemoryStore()
                self._log.restart()
                self._shown.forget(self._log.session)  # the same session id starts afresh
            else:
                self._log.clear()

    async def areset(self) -> None:
        """:meth:`reset`."""
        await call_blocking(self._store, self.reset)


def _check(data: dict[str, Any]) -> None:
    """Typed errors for bad settings (pydantic would wrap them in a ValidationError)."""
    session_id = data.get("session_id", "default")
    if not isinstance(session_id, str) or not session_id:
        raise InvalidConfigError(f"session_id must be a non-empty str; got {session_id!r}")
    max_tokens = data.get("max_tokens", 4000)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidConfigError(f"max_tokens must be an int >= 1; got {max_tokens!r}")
    strategy = data.get("strategy", "layered")
    if strategy not in _STRATEGIES:
        raise InvalidConfigError(f"strategy must be one of {list(_STRATEGIES)}; got {strategy!r}")
    store = data.get("chat_store")
    if store is not None and not isinstance(store, BaseChatStore):
        raise InvalidConfigError(
            f"chat_store must be a LlamaIndex BaseChatStore or None; got {type(store).__name__}"
        )
    llm = data.get("llm")
    if llm is not None and not isinstance(llm, LLM):
        raise InvalidConfigError(f"llm must be a LlamaIndex LLM or None; got {type(llm).__name__}")
    embed = data.get("embed_model")
    if embed is not None and not isinstance(embed, BaseEmbedding):
        raise InvalidConfigError(
            f"embed_model must be a LlamaIndex BaseEmbedding or None; got {type(embed).__name__}"
        )
