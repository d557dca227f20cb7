"""Strategy 1 as a memory: the newest whole units that fit the history budget."""

from __future__ import annotations

from windowkeeper._checks import check_int
from windowkeeper.memory._base import MemoryView, StoredMemory

__all__ = ["WindowMemory"]


class WindowMemory(StoredMemory):
    """A stored conversation shown as its newest whole units that fit the history budget.

    The memory form of :class:`TokenWindow`: units are kept or dropped whole (a tool call keeps its
    result), newest first, with no gap. Dropped units stay in the store.

    Args:
        counter: Counts tokens for the target model.
        store: Where units live (default: a new in-memory store).
        session_id: The conversation.

    Example:
        >>> from windowkeeper import Message, TokenCounter
        >>> memory = WindowMemory(TokenCounter("gpt-4o"))
        >>> for i in range(20):
        ...     _ = memory.add([Message(role="user", content=f"question {i}"),
        ...                     Message(role="assistant", content=f"answer {i}")])
        >>> view = memory.view(budget=50)
        >>> view.tokens <= 50, view.recent[0].index, [d.what for d in view.dropped]
        (True, 17, ['units 0-16'])
    """

    def view(self, query: str = "", *, budget: int) -> MemoryView:
        """The newest units that fit ``budget`` (``query`` is not used by this strategy).

        Raises:
            InvalidConfigError: ``budget`` is not an int >= 0.
        """
        check_int("budget", budget, 0)
        self.sync()  # units other app processes added (a shared store)
        with self._lock:
            recent, used = self.newest_fitting(budget)
            dropped = self.dropped_runs(
                (u.index for u in recent),
                reason="older than the newest units that fit the history budget",
            )
        return MemoryView(recent=tuple(recent), dropped=dropped, tokens=used)
