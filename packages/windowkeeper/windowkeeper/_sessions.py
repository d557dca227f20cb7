"""One memory per conversation, and the bookkeeping that stores a framework's messages once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from windowkeeper._checks import check_int
from windowkeeper._messages import Message, validate_tool_pairs
from windowkeeper._units import Unit, group_units
from windowkeeper.exceptions import InvalidConfigError, InvalidMessageError
from windowkeeper.memory._base import Memory, MemoryView, StoredMemory
from windowkeeper.stores._base import ConversationStore
from windowkeeper.tokens._counter import TokenCounter

__all__ = ["EPOCH", "MESSAGE_ID", "Sessions", "TurnLog", "latest_epoch"]

MESSAGE_ID = "message_id"
"""Metadata key under which an adapter keeps a framework message's own id (LangChain's
``BaseMessage.id``, LlamaIndex's block ids); :meth:`Sessions.sync` matches on it."""

_T = TypeVar("_T")


def _ids(units: Sequence[Unit]) -> set[str]:
    """The framework message ids the units' messages carry."""
    return {
        key for u in units for m in u.messages if isinstance(key := m.metadata.get(MESSAGE_ID), str)
    }


class _Log:
    """What one session has stored: the framework ids, and where the last sync ended."""

    __slots__ = ("anchor", "ids", "lock", "synced")

    def __init__(self, units: Sequence[Unit]) -> None:
        self.ids: set[str] = _ids(units)
        self.synced = 0  # items of the last list known to be stored
        self.anchor: str | None = None  # the id of item synced - 1
        self.lock = threading.Lock()


class Sessions(Generic[_T]):
    """One memory per conversation id, opened on first use, over whatever store the factory shares.

    Framework adapters key conversations by the framework's own id (LangGraph's ``thread_id``, a
    chat history's ``session_id``) and hand over the framework's whole message list each call.
    :meth:`sync` stores, once, the finished turns of that list that are not stored yet, and
    converts only those: each stored message keeps the framework's message id under
    ``metadata["message_id"]``, so after a restart (or with a checkpointer that replays the whole
    thread) nothing is stored twice, and a call costs the same at 100 or 10,000 messages of
    history.

    Args:
        factory: Builds the memory of a session id (give every session the same store).
        max_open: Memories kept open; the least recently used is closed beyond it (its turns
            stay in the store and it reopens on next use).

    Example:
        >>> from windowkeeper import TokenCounter, WindowMemory
        >>> counter = TokenCounter("gpt-4o")
        >>> sessions = Sessions(lambda sid: WindowMemory(counter, session_id=sid))
        >>> msgs = [{"role": "user", "content": "hi", "id": "m1"},
        ...         {"role": "assistant", "content": "hello", "id": "m2"}]
        >>> def convert(items):
        ...     return [Message(role=d["role"], content=d["content"], metadata={MESSAGE_ID: d["id"]}) for d in items]
        >>> len(sessions.sync("a", msgs, key=lambda d: d["id"], convert=convert))
        1
        >>> sessions.sync("a", msgs, key=lambda d: d["id"], convert=convert)  # already stored
        []
        >>> len(sessions.memory("a")), len(sessions.memory("b"))
        (1, 0)
    """

    def __init__(self, factory: Callable[[str], Memory], *, max_open: int = 1024) -> None:
        if not callable(factory):
            raise InvalidConfigError(
                f"factory must be callable (session id -> memory); got {factory!r}"
            )
        check_int("max_open", max_open, 1)
        self.factory = factory
        self.max_open = max_open
        self._open: OrderedDict[str, tuple[Memory, _Log]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Sessions(open={len(self._open)}, max_open={self.max_open})"

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._open

    def memory(self, session_id: str) -> Memory:
        """The memory of ``session_id``, opened (and its stored turns loaded) on first use."""
        return self._entry(session_id)[0]

    def _entry(self, session_id: str) -> tuple[Memory, _Log]:
        if not isinstance(session_id, str) or not session_id:
            raise InvalidConfigError(f"session_id must be a non-empty str; got {session_id!r}")
        closing: list[Memory] = []
        with self._lock:
            entry = self._open.get(session_id)
            if entry is None:
                memory = self.factory(session_id)
                if not callable(getattr(memory, "add", None)) or not callable(
                    getattr(memory, "view", None)
                ):
                    raise InvalidConfigError(
                        f"factory must return a memory (add, view); got {type(memory).__name__}"
                    )
                units = memory.units if isinstance(memory, StoredMemory) else []
                entry = (memory, _Log(units))
                self._open[session_id] = entry
                while len(self._open) > self.max_open:
                    closing.append(self._open.popitem(last=False)[1][0])
            else:
                self._open.move_to_end(session_id)
        for old in closing:
            _close(old)
        return entry

    def sync(
        self,
        session_id: str,
        items: Sequence[_T],
        *,
        key: Callable[[_T], str | None],
        convert: Callable[[Sequence[_T]], list[Message]],
        stop: int | None = None,
    ) -> list[Unit]:
        """Store the turns of ``items`` not stored yet; return the units stored now.

        ``items`` is the framework's conversation, oldest first and without the system prompt,
        holding finished turns only (every tool call answered). New items are those after the
        newest one whose ``key`` is already stored (all of them when none is); only they are
        converted. Items without a key are stored when they follow the newest stored one.
        ``stop`` syncs ``items[:stop]`` without copying the list (the turn in progress after it).

        Raises:
            InvalidMessageError: The new messages are not a valid conversation (a tool call
                without its result, ...); nothing is stored.
        """
        memory, log = self._entry(session_id)
        with log.lock:
            n = len(items) if stop is None else check_int("stop", stop, 0, len(items))
            if isinstance(memory, StoredMemory):
                others = memory.sync()  # turns another app process stored (a shared store)
                if others:
                    log.ids.update(_ids(others))
                    log.synced = 0  # they may follow where this process left off: look again
            if 0 < log.synced <= n and key(items[log.synced - 1]) == log.anchor:
                start = log.synced
            else:
                start = 0
                for i in range(n - 1, -1, -1):
                    k = key(items[i])
                    if k is not None and k in log.ids:
                        start = i + 1
                        break
            if start >= n:
                log.synced, log.anchor = n, key(items[n - 1]) if n else None
                return []
            messages = convert(items[start:n])
            units = group_units(messages, session_id=session_id, finished=True)
            stored = [memory.add(u) for u in units]
            log.ids.update(k for m in messages if isinstance(k := m.metadata.get(MESSAGE_ID), str))
            log.synced, log.anchor = n, key(items[n - 1])
            return stored

    def close(self) -> None:
        """Close every open memory (waiting briefly for background summaries)."""
        with self._lock:
            memories = [m for m, _ in self._open.values()]
            self._open.clear()
        for memory in memories:
            _close(memory)


def _close(memory: Memory) -> None:
    close = getattr(memory, "close", None)
    if callable(close):
        close()


EPOCH = "#"
"""Separates a session id from its epoch: ``clear()`` continues in ``"<session>#1"``, ``#2``, ..."""


class TurnLog(Generic[_T]):
    """A conversation handed over message by message, kept as whole turns in a memory.

    For adapters whose framework adds messages one or a few at a time (a chat history, a
    LlamaIndex memory): a turn is stored as soon as it is finished (its last message an assistant
    reply without open tool calls, every call answered); until then it is held in the process and
    shown after the memory's view. :meth:`clear` deletes nothing: the conversation continues in a
    fresh session (``"<session_id>#1"``, ...), which a reopened log finds in the store once a turn
    has been stored in it.

    Args:
        factory: Builds the memory of a session id.
        session_id: The conversation.
        convert: Framework messages to core messages.
        counter: Counts the held turn when a view is budgeted.
        store: Where the factory's memories live (to find the latest epoch); ``None``: epoch 0.

    Example:
        >>> from windowkeeper import TokenCounter, WindowMemory, MemoryStore
        >>> counter, store = TokenCounter("gpt-4o"), MemoryStore()
        >>> log = TurnLog(lambda sid: WindowMemory(counter, store=store, session_id=sid), "ann",
        ...               convert=lambda items: [Message(**d) for d in items], counter=counter, store=store)
        >>> len(log.add([{"role": "user", "content": "Order A-17?"}])), len(log.pending)
        (0, 1)
        >>> len(log.add([{"role": "assistant", "content": "It ships today."}])), len(log.pending)
        (1, 0)
        >>> view, held = log.view(200)
        >>> [m.text for m in view.messages()]
        ['Order A-17?', 'It ships today.']
    """

    def __init__(
        self,
        factory: Callable[[str], Memory],
        session_id: str,
        *,
        convert: Callable[[Sequence[_T]], list[Message]],
        counter: TokenCounter,
        store: ConversationStore | None = None,
    ) -> None:
        if not callable(factory):
            raise InvalidConfigError(
                f"factory must be callable (session id -> memory); got {factory!r}"
            )
        if not isinstance(session_id, str) or not session_id:
            raise InvalidConfigError(f"session_id must be a non-empty str; got {session_id!r}")
        self.factory = factory
        self.session_id = session_id
        self.convert = convert
        self.counter = counter
        self.store = store
        self._lock = threading.RLock()
        self._pending: list[_T] = []
        self._pending_core: list[Message] = []  # the held turn converted (once per message)
        self.epoch = latest_epoch(store, session_id) if store is not None else 0
        self._memory = factory(self.session)

    def __repr__(self) -> str:
        return f"TurnLog({self.session!r}, pending={len(self._pending)})"

    @property
    def session(self) -> str:
        """The session the log writes to now (``session_id``, then ``session_id#1``, ...)."""
        return self.session_id if self.epoch == 0 else f"{self.session_id}{EPOCH}{self.epoch}"

    @property
    def memory(self) -> Memory:
        """The memory of the current session."""
        return self._memory

    def units(self) -> list[Unit]:
        """Every stored unit of the current session (a shared store is re-read first)."""
        memory = self._memory
        if isinstance(memory, StoredMemory):
            memory.sync()
            return memory.units
        return list(getattr(memory, "units", []))

    @property
    def pending(self) -> list[_T]:
        """The turn in progress (not stored yet), oldest first."""
        with self._lock:
            return list(self._pending)

    def add(self, items: Sequence[_T], *, converted: Sequence[Message] | None = None) -> list[Unit]:
        """Hand over messages; return the units stored now (every finished turn).

        Args:
            items: The new messages, oldest first.
            converted: ``convert(items)`` when the caller has it already (one per item).

        Raises:
            InvalidMessageError: A message cannot be converted (nothing is taken).
            InvalidConfigError: ``converted`` does not hold one message per item.
        """
        fresh = list(self.convert(items) if converted is None else converted)
        if len(fresh) != len(items):
            raise InvalidConfigError(
                f"converted must hold one message per item; got {len(fresh)} for {len(items)}"
            )
        with self._lock:
            held = [*self._pending, *items]
            core = [*self._pending_core, *fresh]
            units = group_units(core)
            stored: list[Unit] = []
            for unit in units:
                try:
                    validate_tool_pairs(unit.messages, finished=True)
                except InvalidMessageError:
                    break
                last = unit.messages[-1]
                if unit is units[-1] and not (last.role == "assistant" and not last.tool_calls):
                    break
                stored.append(self._memory.add(unit))
            taken = sum(len(u.messages) for u in stored)
            self._pending = held[taken:]
            self._pending_core = core[taken:]
            return stored

    def view(self, budget: int, *, query: str | None = None) -> tuple[MemoryView, list[_T]]:
        """The memory's view and the held turn, together within ``budget`` tokens as a request.

        ``query`` defaults to the held turn's newest user message, else the newest stored one.
        """
        check_int("budget", budget, 0)
        with self._lock:
            pending = list(self._pending)
            core = self._pending_core
            if query is None:
                query = next((m.text for m in reversed(core) if m.role == "user"), None)
            if query is None:
                last = getattr(self._memory, "last_unit", None)
                query = last.user.text if isinstance(last, Unit) and last.user else ""
            # the held turn and the reply priming: the returned messages, sent alone, fit budget
            room = max(budget - self.counter.count_messages(core), 0)
            return self._memory.view(query, budget=room), pending

    def clear(self) -> None:
        """Continue in a fresh session; every stored turn stays in the store."""
        with self._lock:
            self.epoch += 1
            self._pending, self._pending_core = [], []
            self._memory = self.factory(self.session)

    def restart(self, factory: Callable[[str], Memory] | None = None) -> None:
        """Drop the held turn and reopen the current session (from ``factory``, if given)."""
        with self._lock:
            if factory is not None:
                self.factory = factory
            self._pending, self._pending_core = [], []
            self._memory = self.factory(self.session)


def latest_epoch(store: ConversationStore, session_id: str) -> int:
    """The highest epoch of ``session_id`` with a stored turn (0 when none)."""
    prefix = f"{session_id}{EPOCH}"
    epochs = [
        int(s[len(prefix) :])
        for s in store.sessions()
        if s.startswith(prefix) and s[len(prefix) :].isdigit()
    ]
    return max(epochs, default=0)
