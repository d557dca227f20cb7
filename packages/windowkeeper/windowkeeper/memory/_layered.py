"""Strategy 4: the three distance scales in one memory (recent verbatim, rolling summary, recall)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from windowkeeper._checks import check_int
from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.memory._base import MemoryView, Summarizer
from windowkeeper.memory._guard import RetryPolicy
from windowkeeper.memory._keeper import SummaryError
from windowkeeper.memory._recall import DEFAULT_EMBEDDER, RecallSettings, TurnRecall, _Default
from windowkeeper.memory._summary import SummaryTier
from windowkeeper.memory._vectors import Embedder
from windowkeeper.stores._base import DEFAULT_SESSION, ConversationStore
from windowkeeper.tokens._counter import TokenCounter

__all__ = ["LayerSplit", "LayeredMemory"]


@dataclass(frozen=True, kw_only=True, slots=True)
class LayerSplit:
    """How a layered memory shares its history budget between the three scales.

    Shares are soft: what one tier does not use flows to the next (recent → summary → units not
    yet summarised → recall).

    Example:
        >>> LayerSplit(recent=0.6, summary=0.1, recall=0.3).recall
        0.3
    """

    recent: float = 0.5
    """Share for the newest units, verbatim."""
    summary: float = 0.15
    """Share for the rolling summary (which is also capped by ``summary_tokens``)."""
    recall: float = 0.35
    """Share kept for older units recalled for the query."""

    def __post_init__(self) -> None:
        for name in ("recent", "summary", "recall"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 1
            ):
                raise InvalidConfigError(f"LayerSplit.{name} must be in [0, 1]; got {value!r}")
        total = self.recent + self.summary + self.recall
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise InvalidConfigError(
                f"LayerSplit shares must sum to 1; got recent={self.recent!r} + "
                f"summary={self.summary!r} + recall={self.recall!r} = {total:g}"
            )


class LayeredMemory(SummaryTier, TurnRecall):
    """Recent turns verbatim, a rolling summary of older ones, and recall for anything older.

    Each view is laid out, within the history budget, as

    1. the newest ``recent_units`` units, verbatim, within the ``recent`` share;
    2. the rolling summary of units ``[0, covers)`` (made in the background by a
       :class:`SummaryKeeper`, capped at ``summary_tokens``);
    3. units not yet covered by a committed summary and older than the recent tier, verbatim,
       newest first, while they fit without eating the recall share: until a summary covers a unit,
       it stays available verbatim;
    4. older units recalled for the query (BM25 + embeddings, :class:`RecallIndex`), in the rest.

    Units older than the recent tier are summarised off the request path, ``min_batch`` at a time,
    or at once when the units waiting verbatim reach ``alert_threshold`` of the last budget. A
    failing or slow summariser loses nothing: uncovered units stay verbatim or recallable, and the
    view still fits. Vectors and summaries persist in a :class:`~windowkeeper.SQLiteStore`.

    Args:
        counter: Counts tokens for the target model.
        store: Where units, summaries and vectors live (default: a new in-memory store).
        session_id: The conversation; summaries and recall never cross sessions.
        summarizer: ``(previous, units) -> summary``, sync or async; ``None`` for
            :class:`~windowkeeper.memory.FactNotes` (extractive, no model).
        embedder: An :class:`Embedder`; default the embedded MiniLM; ``None`` for BM25 alone.
        recent_units: Newest units in the verbatim tier (seed: 5-8).
        split: The budget split between tiers.
        summary_tokens: Most tokens the summary block may cost.
        min_batch: Units beyond the recent tier that pile up before a summary is started.
        alert_threshold: Share of the last budget at which waiting units start a summary at once.
        retry: Attempts, backoff and timeout of summariser calls.
        on_error: Called with each :class:`SummaryError` (on the worker thread).
        settings: Ranking settings of the recall index.

    Example:
        >>> from windowkeeper import Message, TokenCounter
        >>> def summarize(previous, units):
        ...     return " ".join([previous, *(f"Asked: {u.user.text}." for u in units)]).strip()
        >>> memory = LayeredMemory(TokenCounter("gpt-4o"), summarizer=summarize, embedder=None,
        ...                        recent_units=2, min_batch=2)
        >>> for q in ["My cat is called Pixel.", "Plan a trip to Rome.", "Pasta tips?",
        ...           "Best gelato?", "Museum hours?", "Train to Florence?"]:
        ...     _ = memory.add([Message(role="user", content=q), Message(role="assistant", content="ok")])
        >>> memory.flush(timeout=10)
        True
        >>> view = memory.view("what is my cat called?", budget=300)
        >>> view.summary_covers, [u.index for u in view.recent], 0 in [u.index for u in view.recalled]
        (4, [4, 5], True)
        >>> memory.close()
    """

    def __init__(
        self,
        counter: TokenCounter,
        *,
        store: ConversationStore | None = None,
        session_id: str = DEFAULT_SESSION,
        summarizer: Summarizer | None = None,
        embedder: Embedder | _Default | None = DEFAULT_EMBEDDER,
        recent_units: int = 6,
        split: LayerSplit | None = None,
        summary_tokens: int = 400,
        min_batch: int = 4,
        alert_threshold: float = 0.7,
        retry: RetryPolicy | None = None,
        on_error: Callable[[SummaryError], object] | None = None,
        settings: RecallSettings | None = None,
    ) -> None:
        if split is not None and not isinstance(split, LayerSplit):
            raise InvalidConfigError(f"split must be a LayerSplit or None; got {split!r}")
        check_int("recent_units", recent_units, 1)
        chosen, warm_up = self._summary_settings(
            summarizer, counter, min_batch=min_batch, alert_threshold=alert_threshold
        )
        super().__init__(
            counter,
            store=store,
            session_id=session_id,
            embedder=embedder,
            recent_units=recent_units,
            settings=settings,
        )
        self.split = split or LayerSplit()
        self._init_summary(
            chosen,
            warm_up,
            summary_tokens=summary_tokens,
            min_batch=min_batch,
            alert_threshold=alert_threshold,
            retry=retry,
            on_error=on_error,
        )

    @property
    def _summary_tier(self) -> int:
        return self.recent_units

    def __repr__(self) -> str:
        return (
            f"LayeredMemory(session_id={self.session_id!r}, units={len(self)}, "
            f"covers={self.keeper.covers}, recent_units={self.recent_units})"
        )

    # --------------------------------------------------------------------------------- view

    def view(self, query: str = "", *, budget: int) -> MemoryView:
        """The three tiers for ``query`` within ``budget`` tokens; never waits for a summary.

        Raises:
            InvalidConfigError: ``budget`` is not an int >= 0.
        """
        check_int("budget", budget, 0)
        self.sync()  # units other app processes added (a shared store)
        with self._lock:
            self._last_budget = budget
            n = len(self._units)
            tier_start = max(0, n - self.recent_units)
            recent, used = self.newest_fitting(int(budget * self.split.recent), start=tier_start)
            if not recent and n:  # a share too small for one unit: the newest still gets a chance
                recent, used = self.newest_fitting(budget, start=n - 1)
            first = recent[0].index if recent else n
            record = self.keeper.current()
            covers = min(record.covers, first) if record is not None else 0
            text, cost = self._summary_block(record, covers)
            if text and used + cost <= budget:
                used += cost
            else:
                text, cost = "", 0
            # units no summary covers yet stay verbatim while they fit (newest first)
            reserve = int(budget * self.split.recall)
            gap, gap_used = self.newest_fitting(
                max(budget - used - reserve, 0), start=covers if text else 0, stop=first
            )
            used += gap_used
            waiting = first - (covers if text else 0) - len(gap)
            self._request_summary(pressure=waiting > 0 or used >= self.alert_threshold * budget)
        shown = {u.index for u in (*gap, *recent)}
        recalled, block, recalled_text = self._recall(
            query, budget=budget - used, exclude=frozenset(shown)
        )
        dropped = self.dropped_runs(
            shown | {u.index for u in recalled},
            reason="not shown this turn: in the summary, or older and not recalled for the query "
            "(kept in the store)",
        )
        return MemoryView(
            recent=(*gap, *recent),
            summary=text,
            summary_covers=covers if text else 0,
            recalled=tuple(recalled),
            recalled_text=recalled_text,
            dropped=dropped,
            tokens=used + block,
        )

    # ------------------------------------------------------------------------------ summary

    def _on_add(self, unit: Unit, *, elsewhere: bool = False) -> None:
        super()._on_add(unit, elsewhere=elsewhere)  # index it
        with self._lock:
            self._request_summary(pressure=False)

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Index every unit and summarise every unit older than the recent tier, then wait.

        Returns:
            True when both are done (see ``keeper.last_error`` for a failed summary).
        """
        super().flush()
        return self.flush_summary(timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop both workers (everything committed stays in the store)."""
        self.keeper.close(timeout)
        super().close()

    def __enter__(self) -> LayeredMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
