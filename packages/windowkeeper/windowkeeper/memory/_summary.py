"""Strategy 2 as a memory: a capped, hierarchical rolling summary of older units + recent units.

Summaries are made off the request path by a :class:`SummaryKeeper` (see ``_keeper.py``) and
started ahead of need; :meth:`RollingSummary.view` never waits for one. Until a summary covers a
unit, the unit is shown verbatim while it fits, and reported as dropped (never lost) when not.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from windowkeeper._budget import Dropped
from windowkeeper._checks import check_int
from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.memory._base import MemoryView, StoredMemory, Summarizer, summary_message
from windowkeeper.memory._facts import FactNotes
from windowkeeper.memory._keeper import (
    Condenser,
    RetryPolicy,
    SummaryError,
    SummaryKeeper,
    SummaryTimeoutError,
    cut_to_tokens,
    render_levels,
)
from windowkeeper.stores._base import DEFAULT_SESSION, ConversationStore, SummaryRecord
from windowkeeper.tokens._counter import TokenCounter

__all__ = [
    "Condenser",
    "RetryPolicy",
    "RollingSummary",
    "SummaryError",
    "SummaryKeeper",
    "SummaryTier",
    "SummaryTimeoutError",
    "cut_to_tokens",
    "render_levels",
]

_NOT_COVERED = (
    "not yet in a committed summary and older than the newest units that fit the history budget "
    "(kept in the store; the next summary covers it)"
)


class SummaryTier(StoredMemory):
    """What every memory with a rolling summary shares: the keeper, its cached block, the triggers.

    Units older than the newest ``_summary_tier`` are summarised in the background, ``min_batch``
    at a time or at once under pressure. :class:`RollingSummary` and
    :class:`~windowkeeper.memory.LayeredMemory` build on it: they check the settings with
    :meth:`_summary_settings` before anything else is built, then call :meth:`_init_summary`.
    """

    @property
    def _summary_tier(self) -> int:
        """How many newest units stay verbatim (never summarised)."""
        raise NotImplementedError

    @staticmethod
    def _summary_settings(
        summarizer: Summarizer | None,
        counter: TokenCounter,
        *,
        min_batch: int,
        alert_threshold: float,
    ) -> tuple[Summarizer, Callable[[], object] | None]:
        """Check the summary settings; the summariser (fact notes when None) and its warm-up.

        A summariser with a ``load()`` method (a local model) is loaded on the worker thread
        before its first summary, outside the per-call timeout.

        Raises:
            InvalidConfigError: A setting is out of range.
        """
        check_int("min_batch", min_batch, 1)
        if (
            isinstance(alert_threshold, bool)
            or not isinstance(alert_threshold, (int, float))
            or not 0 < alert_threshold <= 1
        ):
            raise InvalidConfigError(f"alert_threshold must be in (0, 1]; got {alert_threshold!r}")
        if summarizer is not None and not callable(summarizer):
            raise InvalidConfigError(
                f"summarizer must be a callable (previous, units) -> str, or None for fact "
                f"notes; got {summarizer!r}"
            )
        if summarizer is None:
            return FactNotes(counter=counter), None
        load = getattr(summarizer, "load", None)
        return summarizer, load if callable(load) else None

    def _init_summary(
        self,
        summarizer: Summarizer,
        warm_up: Callable[[], object] | None,
        *,
        summary_tokens: int,
        min_batch: int,
        alert_threshold: float,
        max_levels: int | None = None,
        batch_tokens: int = 2000,
        condenser: Condenser | None = None,
        retry: RetryPolicy | None = None,
        on_error: Callable[[SummaryError], object] | None = None,
    ) -> None:
        """Build the keeper from settings :meth:`_summary_settings` checked."""
        self.min_batch = min_batch
        self.alert_threshold = float(alert_threshold)
        self.keeper = SummaryKeeper(
            self.counter,
            summarizer,
            store=self.store,
            session_id=self.session_id,
            summary_tokens=summary_tokens,
            max_levels=max_levels,
            batch_tokens=batch_tokens,
            condenser=condenser,
            retry=retry,
            warm_up=warm_up,
            on_error=on_error,
        )
        """The summary's state and worker (errors: ``keeper.last_error``, ``keeper.failures``)."""
        self._last_budget: int | None = None
        self._block: tuple[int, int, str, int] = (-1, -1, "", 0)  # version, covers, text, cost

    @property
    def summary(self) -> str:
        """The committed summary as text ('' when there is none yet)."""
        return self.keeper.text

    @property
    def summary_record(self) -> SummaryRecord | None:
        """The committed summary version (levels, coverage, version)."""
        return self.keeper.current()

    def _summary_block(self, record: SummaryRecord | None, covers: int) -> tuple[str, int]:
        """The summary's text and the exact cost of its block (cached per version)."""
        if record is None or covers <= 0:
            return "", 0
        version, cached_covers, text, cost = self._block
        if version != record.version or cached_covers != covers:
            text = render_levels(record.levels)
            cost = self.counter.count_message(summary_message(text, covers=covers)) if text else 0
            self._block = (record.version, covers, text, cost)
        return text, cost

    def _request_summary(self, *, pressure: bool) -> None:
        """Ask for a summary of the units older than the tier when due (caller holds the lock)."""
        n = len(self._units)
        upto = n - self._summary_tier
        requested = max(self.keeper.requested, min(self.keeper.covers, n))
        if upto > requested and (pressure or upto - requested >= self.min_batch):
            self.keeper.request(self._units[requested:upto], upto)

    def flush_summary(self, timeout: float | None = None) -> bool:
        """Summarise every unit older than the tier now and wait (tests, CLI, exit).

        Returns:
            True when the worker is idle (see ``keeper.last_error`` for a failure), False on
            timeout.
        """
        with self._lock:
            self._request_summary(pressure=True)
        return self.keeper.flush(timeout)


class RollingSummary(SummaryTier):
    """A stored conversation shown as a capped summary of its older units plus its newest units.

    Every unit older than the last ``keep_last`` is summarised in the background, ``min_batch``
    units at a time, or as soon as the verbatim history reaches ``alert_threshold`` of the
    budget last passed to :meth:`view`. The summariser always receives the previous summary.
    :meth:`view` never waits: it shows the latest committed summary (as one system-role block in
    the history zone, its tokens counted exactly) and, newest first, the units after it that fit.
    When the summary lags, the window takes over: units it does not cover yet and that do not fit
    are listed in ``dropped``; they stay in the store and the next summary covers them.

    Reopening a :class:`~windowkeeper.SQLiteStore` restores the latest summary.

    Args:
        counter: Counts tokens for the target model.
        store: Where units (and, if it keeps them, summaries) live; a new in-memory store if
            omitted.
        session_id: The conversation.
        summarizer: ``(previous, units) -> summary``, sync or async; None for
            :class:`~windowkeeper.memory.FactNotes` (extractive, no model). The local SmolLM2
            model is opt-in: ``summarizer=shared_summarizer()`` from ``windowkeeper.local``.
        keep_last: Newest units never summarised (always candidates to be shown verbatim).
        summary_tokens: Most tokens the summary block may cost, framing included.
        min_batch: Units beyond ``keep_last`` that pile up before a summary is started (sooner
            under budget pressure).
        alert_threshold: Share of the last budget at which summary + verbatim history starts a
            summary at once.
        max_levels: Depth of the summary hierarchy (None: the summariser's preference, else 3;
            fact notes use 1).
        batch_tokens: About how many tokens of units go into one summariser call.
        condenser: ``(text, max_tokens) -> shorter text``; default: the summariser's ``condense``
            method, else the summariser called with no units.
        retry: Attempts, backoff and per-call timeout (:class:`RetryPolicy`).
        on_error: Called with each :class:`SummaryError` (on the worker thread).

    Raises:
        InvalidConfigError: A setting is out of range (the message names it, its value and what
            is allowed).

    Example:
        >>> from windowkeeper import Message, TokenCounter
        >>> def summarize(previous, units):  # any callable works; async ones too
        ...     return " ".join([previous, *(f"Asked: {u.user.text}." for u in units)]).strip()
        >>> memory = RollingSummary(TokenCounter("gpt-4o"), summarizer=summarize, keep_last=2)
        >>> for i in range(6):
        ...     _ = memory.add([Message(role="user", content=f"question {i}"),
        ...                     Message(role="assistant", content=f"answer {i}")])
        >>> memory.flush(timeout=10)
        True
        >>> view = memory.view(budget=200)
        >>> view.summary_covers, [u.index for u in view.recent]
        (4, [4, 5])
        >>> view.summary
        'Asked: question 0. Asked: question 1. Asked: question 2. Asked: question 3.'
        >>> memory.close()
    """

    def __init__(
        self,
        counter: TokenCounter,
        *,
        store: ConversationStore | None = None,
        session_id: str = DEFAULT_SESSION,
        summarizer: Summarizer | None = None,
        keep_last: int = 6,
        summary_tokens: int = 400,
        min_batch: int = 4,
        alert_threshold: float = 0.7,
        max_levels: int | None = None,
        batch_tokens: int = 2000,
        condenser: Condenser | None = None,
        retry: RetryPolicy | None = None,
        on_error: Callable[[SummaryError], object] | None = None,
    ) -> None:
        check_int("keep_last", keep_last, 1)
        chosen, warm_up = self._summary_settings(
            summarizer, counter, min_batch=min_batch, alert_threshold=alert_threshold
        )
        super().__init__(counter, store=store, session_id=session_id)
        self.keep_last = keep_last
        self._init_summary(
            chosen,
            warm_up,
            summary_tokens=summary_tokens,
            min_batch=min_batch,
            alert_threshold=alert_threshold,
            max_levels=max_levels,
            batch_tokens=batch_tokens,
            condenser=condenser,
            retry=retry,
            on_error=on_error,
        )

    @property
    def _summary_tier(self) -> int:
        return self.keep_last

    def __repr__(self) -> str:
        return (
            f"RollingSummary(session_id={self.session_id!r}, units={len(self)}, "
            f"covers={self.keeper.covers}, keep_last={self.keep_last})"
        )

    # ----------------------------------------------------------------------------- reading

    def view(self, query: str = "", *, budget: int) -> MemoryView:
        """Summary + the newest uncovered units that fit ``budget`` (``query`` is not used).

        Never waits for the worker; may start a summary when the history nears the budget.

        Raises:
            InvalidConfigError: ``budget`` is not an int >= 0.
        """
        check_int("budget", budget, 0)
        self.sync()  # units other app processes added (a shared store)
        with self._lock:
            self._last_budget = budget
            n = len(self._units)
            record = self.keeper.current()
            covers = min(record.covers, n) if record is not None else 0
            text, cost = self._summary_block(record, covers)
            dropped: list[Dropped] = []
            if text and cost <= budget:
                recent, used = self.newest_fitting(budget - cost, start=covers)
                used += cost
            else:
                if text:
                    dropped.append(
                        Dropped(
                            zone="history",
                            what=f"summary of units 0-{covers - 1}",
                            tokens=cost,
                            reason="the summary block alone is over the history budget",
                        )
                    )
                text, cost, covers = "", 0, 0
                recent, used = self.newest_fitting(budget)
            first = recent[0].index if recent else n
            if first > covers:  # one entry for the run, so a view costs the same at any length
                dropped.append(self.dropped_run(covers, first, reason=_NOT_COVERED))
            self._maybe_request(cost)
        return MemoryView(
            recent=tuple(recent),
            summary=text,
            summary_covers=covers if text else 0,
            dropped=tuple(dropped),
            tokens=used,
        )

    # ---------------------------------------------------------------------------- triggers

    def _on_add(self, unit: Unit, *, elsewhere: bool = False) -> None:
        with self._lock:
            record = self.keeper.current()
            covers = min(record.covers, len(self._units)) if record is not None else 0
            self._maybe_request(self._summary_block(record, covers)[1])

    def _maybe_request(self, summary_cost: int) -> None:
        """Start a summary when enough units wait beyond ``keep_last``, or under pressure."""
        n = len(self._units)
        covers = min(self.keeper.covers, n)
        pressure = self._last_budget is not None and (
            summary_cost + self.tokens_between(covers, n)
            >= self.alert_threshold * self._last_budget
        )
        self._request_summary(pressure=pressure)

    # ----------------------------------------------------------------------------- control

    def flush(self, timeout: float | None = None) -> bool:
        """Summarise every unit older than ``keep_last`` now and wait for it (tests, CLI, exit).

        Returns:
            True when the worker is idle (see ``keeper.last_error`` for a failure), False on
            timeout.
        """
        return self.flush_summary(timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the background worker (units and committed summaries stay in the store)."""
        self.keeper.close(timeout)

    def __enter__(self) -> RollingSummary:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
