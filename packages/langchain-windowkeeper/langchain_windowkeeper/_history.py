"""A drop-in ``BaseChatMessageHistory``: every message kept, the budgeted view returned."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage
from windowkeeper import (
    ConversationStore,
    InvalidConfigError,
    Memory,
    MemoryStore,
    TokenCounter,
    TurnLog,
    build_memory,
)
from windowkeeper.stores import open_store

from langchain_windowkeeper._convert import to_core_messages, to_langchain

__all__ = ["WindowkeeperChatMessageHistory"]


class WindowkeeperChatMessageHistory(BaseChatMessageHistory):
    """Chat history for ``RunnableWithMessageHistory`` that stores everything and shows a budget.

    ``add_messages`` stores every message: in windowkeeper's store (a SQLite file by default), or
    in a ``BaseChatMessageHistory`` you already run (Postgres, Redis, ...), which it wraps and
    keeps writing to. ``messages`` returns what fits ``max_tokens``: with the default layered
    memory, a summary of older turns, turns recalled for the newest question and the recent turns
    verbatim, never a tool call without its result. A turn is stored when it is finished (a
    question and its answer, with every tool call answered), which ``RunnableWithMessageHistory``
    always hands over together; a turn still in progress is held in the process and shown.

    ``clear()`` never deletes: the conversation continues in a fresh session
    (``"<session_id>#1"``, ...), and the earlier turns stay in the store.

    Args:
        session_id: The conversation.
        store: A SQLite file path (default ``windowkeeper_history.db``), a
            :class:`~windowkeeper.ConversationStore`, or a ``BaseChatMessageHistory`` to wrap.
        max_tokens: Tokens the returned history may cost (exact, for ``model``).
        model: Model profile to count with (or ``counter``).
        memory: ``"window"``, ``"summary"``, ``"recall"``, ``"layered"`` (default), or
            ``session_id -> Memory``.
        **memory_options: Passed to the memory (``summarizer=``, ``embedder=``, ...).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "chat.db"
        >>> history = WindowkeeperChatMessageHistory("ann", store=path, max_tokens=200, memory="window")
        >>> history.add_user_message("My order is A-17.")
        >>> history.add_ai_message("Thanks, I see order A-17.")
        >>> [m.type for m in history.messages]
        ['human', 'ai']
    """

    def __init__(
        self,
        session_id: str,
        *,
        store: ConversationStore | BaseChatMessageHistory | str | os.PathLike[str] = (
            "windowkeeper_history.db"
        ),
        max_tokens: int = 4000,
        model: str = "gpt-4o",
        counter: TokenCounter | None = None,
        memory: Literal["window", "summary", "recall", "layered"]
        | Callable[[str], Memory] = "layered",
        **memory_options: Any,
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise InvalidConfigError(f"session_id must be a non-empty str; got {session_id!r}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidConfigError(f"max_tokens must be an int >= 1; got {max_tokens!r}")
        self.counter = counter or TokenCounter(model)
        self.inner: BaseChatMessageHistory | None = (
            store if isinstance(store, BaseChatMessageHistory) else None
        )
        # a wrapped history is the source of truth; windowkeeper mirrors it in the process
        self.store: ConversationStore = (
            MemoryStore() if self.inner is not None else open_store(store)  # type: ignore[arg-type]
        )
        if callable(memory):
            self._factory: Callable[[str], Memory] = memory
        else:

            def factory(sid: str) -> Memory:
                return build_memory(
                    memory, self.counter, store=self.store, session_id=sid, **memory_options
                )

            self._factory = factory
        self.session_id = session_id
        self.max_tokens = max_tokens
        self._lock = threading.RLock()
        self.log: TurnLog[BaseMessage] = TurnLog(
            self._factory,
            session_id,
            convert=to_core_messages,
            counter=self.counter,
            store=None if self.inner is not None else self.store,
        )
        if (
            self.inner is not None
        ):  # mirror the wrapped history: finished turns stored, the rest held
            self.log.add(self._inner_messages())

    @property
    def memory(self) -> Memory:
        """The core memory of the current session."""
        return self.log.memory

    def _inner_messages(self) -> list[BaseMessage]:
        assert self.inner is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return list(self.inner.messages)

    # ------------------------------------------------------------------------------ writes

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store the messages (a finished turn is stored at once; see the class notes)."""
        messages = list(messages)
        core = to_core_messages(messages)  # refuse what cannot be converted before writing anywhere
        with self._lock:
            if self.inner is not None:
                self.inner.add_messages(messages)
            self.log.add(messages, converted=core)

    def clear(self) -> None:
        """Start afresh in a new session; windowkeeper's stored turns are kept (never deleted).

        A wrapped history is cleared as it clears itself.
        """
        with self._lock:
            if self.inner is not None:  # the wrapped history decides what clearing means
                self.inner.clear()
                self.store = MemoryStore()
                self.log.restart()
            else:
                self.log.clear()

    # ------------------------------------------------------------------------------ reads

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The budgeted history: what the memory shows for the newest question, then a turn in progress."""
        view, pending = self.log.view(self.max_tokens)
        return [*(to_langchain(m) for m in view.messages()), *pending]

    async def aget_messages(self) -> list[BaseMessage]:
        """Async :attr:`messages`."""
        return self.messages
