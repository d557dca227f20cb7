"""The summary keeper: one session's hierarchical summary and the background worker that updates it.

The keeper is a component, not a memory: :class:`~windowkeeper.memory._summary.RollingSummary`
owns one and asks it (without waiting) to summarise units up to an index. The worker thread calls
the summariser off the request path, with a timeout and retries per call, fits the result under
the cap, and commits each new version in one step (store first, then the in-process reference),
so a reader sees the old summary or the new one, never half of one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

from windowkeeper._checks import check_int
from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError, WindowkeeperError
from windowkeeper.memory._base import Summarizer, render_unit, summary_message
from windowkeeper.memory._guard import Cancelled, GaveUp, Guard, RetryPolicy, SummaryTimeoutError
from windowkeeper.stores._base import DEFAULT_SESSION, ConversationStore, StateStore, SummaryRecord
from windowkeeper.tokens._counter import TokenCounter

__all__ = [
    "Condenser",
    "RetryPolicy",
    "SummaryError",
    "SummaryKeeper",
    "SummaryTimeoutError",
    "cut_to_tokens",
    "render_levels",
    "split_newest",
]

logger = logging.getLogger("windowkeeper.summary")

Condenser: TypeAlias = Callable[[str, int], "str | Awaitable[str]"]
"""``(text, max_tokens) -> shorter text with the same facts``, sync or async."""

_SENTENCE_END = ".!?\n"
DEFAULT_LEVELS = 3
"""Levels of the hierarchy when neither the caller nor the summariser says."""


class SummaryError(WindowkeeperError):
    """A summary step failed after every attempt; nothing of it was committed.

    The units stay in the store and in the view (verbatim while they fit); the next request
    tries again. The last attempt's exception is the ``__cause__``.

    Attributes:
        session_id: The session.
        start: First unit index of the step.
        stop: One past its last unit index.
        attempts: Calls made before giving up.
    """

    def __init__(
        self, message: str, *, session_id: str, start: int, stop: int, attempts: int
    ) -> None:
        self.session_id = session_id
        self.start = start
        self.stop = stop
        self.attempts = attempts
        super().__init__(
            f"summary of units {start}-{stop - 1} of session {session_id!r} failed after "
            f"{attempts} attempt{'s' if attempts != 1 else ''}: {message}"
        )


LEASE_RETRY_S = 0.5
"""How long a process waits before looking again when another holds a session's summary lease."""


def render_levels(levels: Sequence[str]) -> str:
    r"""The summary text: the highest (oldest) level first, the rolling level last.

    Example:
        >>> render_levels(("Ann asked for a refund.", "Ann ordered NW-1 on March 3."))
        'Ann ordered NW-1 on March 3.\n\nAnn asked for a refund.'
    """
    return "\n\n".join(text.strip() for text in reversed(levels) if text.strip())


def cut_to_tokens(text: str, limit: int, count: Callable[[str], int]) -> str:
    """The longest start of ``text`` that ends a sentence and has at most ``limit`` tokens.

    The last resort of the cap: when no sentence fits, the text is cut after a word and ends
    with ``…``.

    Example:
        >>> cut_to_tokens("One two. Three four. Five six.", 5, lambda t: len(t.split()))
        'One two. Three four.'
    """
    text = text.strip()
    if limit <= 0:
        return ""
    if count(text) <= limit:
        return text
    ends = [i + 1 for i, ch in enumerate(text) if ch in _SENTENCE_END]
    best = _longest(ends, text, limit, count)
    if best:
        return text[:best].rstrip()
    spaces = [i for i, ch in enumerate(text) if ch.isspace()]
    best = _longest(spaces, text, limit, count, suffix="…")
    return text[:best].rstrip() + "…" if best else ""


def split_newest(text: str, limit: int, count: Callable[[str], int]) -> tuple[str, str]:
    r"""``text`` as (older, newest): its newest whole lines (sentences, if one line) in ``limit``.

    Example:
        >>> split_newest("a b.\nc d.\ne f.", 4, lambda t: len(t.split()))
        ('a b.', 'c d.\ne f.')
    """
    text = text.strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    joiner = "\n"
    if len(lines) <= 1:
        lines = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
        joiner = " "
    cut = len(lines)
    while cut > 0 and count(joiner.join(lines[cut - 1 :])) <= limit:
        cut -= 1
    return joiner.join(lines[:cut]), joiner.join(lines[cut:])


def _longest(
    cuts: list[int], text: str, limit: int, count: Callable[[str], int], suffix: str = ""
) -> int:
    """The largest cut position whose prefix (plus ``suffix``) fits ``limit`` (binary search)."""
    lo, hi, best = 0, len(cuts) - 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if count(text[: cuts[mid]].rstrip() + suffix) <= limit:
            best, lo = cuts[mid], mid + 1
        else:
            hi = mid - 1
    return best


class SummaryKeeper:
    """One session's rolling summary, kept up to date by a background worker thread.

    :meth:`request` returns at once; the worker summarises the units in batches of about
    ``batch_tokens``, each batch one call ``summarizer(previous rolling level, units)``, and
    commits a new :class:`SummaryRecord` per batch (persisted when the store keeps summaries).
    :meth:`current` never waits for the worker.

    The summary is hierarchical and capped: rendered as one block (see
    :func:`~windowkeeper.memory._base.summary_message`) it never costs more than
    ``summary_tokens``, counted exactly. Level 0 (the rolling level) may use half of the text
    budget, level 1 a quarter, and so on, the top level the rest. A level over its share keeps
    its newest lines that fit the share; its older lines, condensed to the share of the level
    above when they are larger, join that level after its own text (which may then overflow in
    turn); the top level is condensed in place. A condensation that still does not fit is asked
    once more, then, as a last resort, cut at a sentence boundary. With ``max_levels=1`` the
    whole summary is one level condensed in place (what :class:`~windowkeeper.memory.FactNotes`
    asks for). Nothing in the store is touched.

    Sync summarisers run on a helper thread per call so a hung call can be abandoned after
    ``retry.timeout`` (its late result is ignored); async ones run on the worker's own event
    loop under ``asyncio.wait_for``. Failed calls are retried with exponential backoff; a step
    that still fails is logged on the ``windowkeeper.summary`` logger, kept in
    :attr:`last_error`, passed to ``on_error`` and commits nothing.

    Args:
        counter: Counts the summary against ``summary_tokens``.
        summarizer: ``(previous, units) -> summary``, sync or async.
        store: Where committed summaries persist (only if it is a :class:`StateStore`); the
            latest one is restored when the keeper is built.
        session_id: The session.
        summary_tokens: Most tokens the rendered summary block may cost.
        max_levels: Most levels of the hierarchy (1: one level condensed in place). ``None``
            (the default): the summariser's own ``max_levels`` attribute if it has one (fact notes
            say 1: their condensing ranks every sentence by its facts and recency, which a split
            into levels only constrains), else 3.
        batch_tokens: About how many tokens of rendered units go into one summariser call.
        condenser: ``(text, max_tokens) -> shorter text``; by default the summariser's own
            ``condense`` method if it has one, else ``summarizer(text, [])``.
        retry: Attempts, backoff and per-call timeout.
        warm_up: Called once on the worker before the first step, without a timeout (e.g. to
            load a local model).
        on_error: Called with each :class:`SummaryError` (on the worker thread).
        idle_exit: Seconds the worker waits for work before its thread ends (it restarts on
            the next request).

    Example:
        >>> from windowkeeper import Message, TokenCounter
        >>> def summarize(previous, units):
        ...     return " ".join([previous, *(u.user.text for u in units)]).strip()
        >>> keeper = SummaryKeeper(TokenCounter("gpt-4o"), summarize)
        >>> units = [Unit(index=i, messages=(Message(role="user", content=f"fact {i}."),))
        ...          for i in range(3)]
        >>> keeper.request(units, upto=2)
        >>> keeper.flush(timeout=10)
        True
        >>> keeper.current().covers, keeper.text
        (2, 'fact 0. fact 1.')
        >>> keeper.close()
    """

    def __init__(
        self,
        counter: TokenCounter,
        summarizer: Summarizer,
        *,
        store: ConversationStore | StateStore | None = None,
        session_id: str = DEFAULT_SESSION,
        summary_tokens: int = 400,
        max_levels: int | None = None,
        batch_tokens: int = 2000,
        condenser: Condenser | None = None,
        retry: RetryPolicy | None = None,
        warm_up: Callable[[], object] | None = None,
        on_error: Callable[[SummaryError], object] | None = None,
        idle_exit: float = 30.0,
    ) -> None:
        if not isinstance(counter, TokenCounter):
            raise InvalidConfigError(
                f"counter must be a TokenCounter; got {type(counter).__name__}"
            )
        if not callable(summarizer):
            raise InvalidConfigError(
                f"summarizer must be a callable (previous, units) -> str; got {summarizer!r}"
            )
        for label, fn in (("condenser", condenser), ("warm_up", warm_up), ("on_error", on_error)):
            if fn is not None and not callable(fn):
                raise InvalidConfigError(f"{label} must be callable or None; got {fn!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidConfigError(f"retry must be a RetryPolicy or None; got {retry!r}")
        if not isinstance(session_id, str) or not session_id:
            raise InvalidConfigError(f"session_id must be a non-empty str; got {session_id!r}")
        if max_levels is None:
            preferred = getattr(summarizer, "max_levels", None)
            max_levels = preferred if isinstance(preferred, int) else DEFAULT_LEVELS
        self.max_levels = check_int("max_levels", max_levels, 1, 8)
        self.summary_tokens = check_int("summary_tokens", summary_tokens, 1, 1_000_000)
        self.batch_tokens = check_int("batch_tokens", batch_tokens, 64, 1_000_000)
        if isinstance(idle_exit, bool) or not isinstance(idle_exit, (int, float)) or idle_exit <= 0:
            raise InvalidConfigError(f"idle_exit must be a number > 0 (seconds); got {idle_exit!r}")
        self.counter = counter
        self.summarizer = summarizer
        self.session_id = session_id
        self.retry = retry if retry is not None else RetryPolicy()
        self.on_error = on_error
        self.idle_exit = float(idle_exit)
        # the block's framing (tags, turn range, message overhead) for the widest turn range
        framing = counter.count_message(summary_message("", covers=10**12))
        self._text_budget = self.summary_tokens - framing
        least = 16 * self.max_levels
        if self._text_budget < least:
            raise InvalidConfigError(
                f"summary_tokens must be at least {framing + least} for {self.max_levels} "
                f"level(s) (the block's framing takes {framing}); got {summary_tokens!r}"
            )
        own_condense = getattr(summarizer, "condense", None)
        self._condenser: Condenser | None = condenser or (
            own_condense if callable(own_condense) else None
        )
        self._warm_up = warm_up
        self._state: StateStore | None = store if isinstance(store, StateStore) else None
        self._record: SummaryRecord | None = (
            self._state.latest_summary(session_id) if self._state is not None else None
        )
        self._cv = threading.Condition()
        self._target = self.covers
        self._pending: dict[int, Unit] = {}
        self._busy = False
        self._closed = False
        self._guard = Guard(self.retry)
        self._thread: threading.Thread | None = None
        self.last_error: SummaryError | None = None
        """The latest failed step, if any (cleared by nothing: compare :attr:`failures`)."""
        self.failures = 0
        """Steps that failed after every attempt."""
        self.commits = 0
        """Summary versions this keeper committed."""

    def __repr__(self) -> str:
        return (
            f"SummaryKeeper(session_id={self.session_id!r}, covers={self.covers}, "
            f"requested={self.requested}, commits={self.commits}, failures={self.failures})"
        )

    # ------------------------------------------------------------------------------ reading

    def current(self) -> SummaryRecord | None:
        """The latest committed summary (never waits for the worker)."""
        return self._record

    @property
    def covers(self) -> int:
        """Units ``[0, covers)`` are in the committed summary."""
        record = self._record
        return record.covers if record is not None else 0

    @property
    def requested(self) -> int:
        """The unit index the worker has been asked to summarise up to."""
        return max(self._target, self.covers)

    @property
    def text(self) -> str:
        """The committed summary rendered as text ('' when there is none)."""
        record = self._record
        return render_levels(record.levels) if record is not None else ""

    @property
    def busy(self) -> bool:
        """Whether a step is running or requested work is waiting."""
        with self._cv:
            return self._busy or self._target > self.covers

    # ------------------------------------------------------------------------------ control

    def request(self, units: Sequence[Unit], upto: int | None = None) -> None:
        """Ask the worker to summarise every unit below ``upto``; returns at once.

        Args:
            units: Units of the session holding at least every index from the first one not
                yet requested up to ``upto`` (others are ignored).
            upto: One past the last unit to summarise (default: past the last of ``units``).

        Raises:
            InvalidConfigError: A unit the worker needs is missing from ``units``.
        """
        with self._cv:
            if self._closed:
                logger.debug("summary request after close ignored (session %r)", self.session_id)
                return
            covers = self.covers
            stop = upto if upto is not None else (units[-1].index + 1 if units else covers)
            start = max(covers, self._target)
            if stop <= start:
                return
            for unit in units:
                if start <= unit.index < stop:
                    self._pending[unit.index] = unit
            for index in range(start, stop):
                if index not in self._pending:
                    raise InvalidConfigError(
                        f"units must include every unit from {start} to {stop - 1}; "
                        f"unit {index} is missing"
                    )
            self._target = stop
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"windowkeeper-summary-{self.session_id}", daemon=True
                )
                self._thread.start()
            self._cv.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the worker is idle: everything requested is committed, or has failed.

        Returns:
            True when idle (check :attr:`last_error` for failures), False on timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._busy or (
                self._target > self.covers and self._thread is not None and not self._closed
            ):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cv.wait(remaining)
            return True

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker: a running call is abandoned, nothing half-done is committed."""
        with self._cv:
            self._closed = True
            thread = self._thread
            self._cv.notify_all()
        self._guard.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # ------------------------------------------------------------------------------- worker

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._closed and self._target <= self.covers:
                        self._busy = False
                        self._cv.notify_all()
                        if not self._cv.wait(self.idle_exit) and self._target <= self.covers:
                            self._thread = None  # a later request starts a new worker
                            return
                    if self._closed:
                        return
                    self._busy = True
                    start, stop = self.covers, self._target
                    units = [self._pending[i] for i in range(start, stop)]
                try:
                    self._leased_step(units)
                except Cancelled:
                    return
                except SummaryError as error:
                    self._fail(error)
                except Exception as exc:  # a bug here must not kill the worker silently
                    failure = SummaryError(
                        f"{type(exc).__name__}: {exc}",
                        session_id=self.session_id,
                        start=start,
                        stop=stop,
                        attempts=1,
                    )
                    failure.__cause__ = exc
                    self._fail(failure)
        finally:
            self._guard.release()
            with self._cv:
                self._busy = False
                if self._thread is threading.current_thread():
                    self._thread = None  # whatever ended it, a later request starts a new one
                self._cv.notify_all()

    def _fail(self, error: SummaryError) -> None:
        logger.error("%s", error, exc_info=error)
        with self._cv:
            self.last_error = error
            self.failures += 1
            self._target = self.covers  # wait for the next request instead of spinning
        if self.on_error is not None:
            try:
                self.on_error(error)
            except Exception:
                logger.exception("on_error callback failed")

    def _leased_step(self, units: list[Unit]) -> None:
        """:meth:`_step`, under the session's summary lease when the store shares sessions.

        With a store that many processes use (one with ``lease``, e.g. PostgreSQL), only the
        process holding the lease summarises; the others adopt its commits. Whoever gets the
        lease first reads the latest version, so work another process committed is never redone.
        """
        lease = getattr(self._state, "lease", None)
        if not callable(lease):
            self._step(units)
            return
        with lease(self.session_id, "summary") as held:
            if held:
                self._adopt(self._safe_latest())
                todo = [u for u in units if u.index >= self.covers]
                if todo:
                    self._step(todo)
                return
        # another process is summarising this session: take its result, look again later
        self._adopt(self._safe_latest())
        with self._cv:
            if not self._closed and self._target > self.covers:
                self._cv.wait(LEASE_RETRY_S)

    def _adopt(self, latest: SummaryRecord | None) -> None:
        """Take a newer version another process committed (the units it covers are done)."""
        with self._cv:
            current = self._record
            if latest is None or (current is not None and latest.version <= current.version):
                return
            self._record = latest
            for index in [i for i in self._pending if i < latest.covers]:
                del self._pending[index]
            self._cv.notify_all()

    def _step(self, units: list[Unit]) -> None:
        """Summarise ``units`` batch by batch, committing after each batch."""
        if self._warm_up is not None:
            try:
                self._warm_up()
            except Exception as exc:
                raise SummaryError(
                    f"warm-up failed: {type(exc).__name__}: {exc}",
                    session_id=self.session_id,
                    start=units[0].index,
                    stop=units[-1].index + 1,
                    attempts=1,
                ) from exc
            self._warm_up = None
        for batch in self._batches(units):
            record = self._record
            levels = list(record.levels) if record is not None and record.levels else [""]
            stop = batch[-1].index + 1
            span = (batch[0].index, stop)
            rolling = self._call(span, self.summarizer, levels[0], tuple(batch))
            levels[0] = rolling
            levels = self._fit(span, levels, stop)
            self._commit(levels, stop, span)

    def _batches(self, units: list[Unit]) -> list[list[Unit]]:
        batches: list[list[Unit]] = []
        current: list[Unit] = []
        used = 0
        for unit in units:
            n = self.counter.count(render_unit(unit))
            if current and used + n > self.batch_tokens:
                batches.append(current)
                current, used = [], 0
            current.append(unit)
            used += n
        if current:
            batches.append(current)
        return batches

    # ------------------------------------------------------------------------------ the cap

    def _share(self, level: int) -> int:
        """Tokens of text level ``level`` may hold: 1/2, 1/4, ... of the budget; the top the rest."""
        top = self.max_levels - 1
        return self._text_budget >> (level + 1 if level < top else top)

    def _block_cost(self, levels: Sequence[str], covers: int) -> int:
        return self.counter.count_message(summary_message(render_levels(levels), covers=covers))

    def _fit(self, span: tuple[int, int], levels: list[str], covers: int) -> list[str]:
        count = self.counter.count
        level = 0
        while level < len(levels):
            share = self._share(level)
            if count(levels[level]) > share:
                if level < self.max_levels - 1:
                    # this level keeps its newest lines that fit its share; the older part,
                    # condensed to the share above when larger, joins that level after its
                    # text (and if that level overflows, its own older part moves up in turn)
                    older, newer = split_newest(levels[level], share, count)
                    if level + 1 == len(levels):
                        levels.append("")
                    if older:
                        moved, size = older, count(older)
                        if size > self._share(level + 1):
                            moved = self._condense(span, older, self._share(level + 1))
                            if count(moved) >= size:
                                moved = older
                        levels[level + 1] = f"{levels[level + 1].strip()}\n{moved.strip()}".strip()
                    levels[level] = newer
                else:
                    levels[level] = self._shrink(span, levels[level], share)
            level += 1
        while len(levels) > 1 and not levels[-1].strip():
            levels.pop()
        # the separators and the framing can still add a token or two: shave the longest level
        excess = self._block_cost(levels, covers) - self.summary_tokens
        while excess > 0:
            longest = max(range(len(levels)), key=lambda i: count(levels[i]))
            levels[longest] = cut_to_tokens(levels[longest], count(levels[longest]) - excess, count)
            excess = self._block_cost(levels, covers) - self.summary_tokens
        return levels

    def _shrink(self, span: tuple[int, int], text: str, share: int) -> str:
        count = self.counter.count
        for _ in range(2):  # condense, then ask once more
            if count(text) <= share:
                return text
            shorter = self._condense(span, text, share)
            if count(shorter) >= count(text):
                break
            text = shorter
        if count(text) > share:
            logger.info(
                "summary level of %d tokens still over its share (%d) after condensing; "
                "cut at a sentence boundary",
                count(text),
                share,
            )
            text = cut_to_tokens(text, share, count)
        return text

    def _condense(self, span: tuple[int, int], text: str, max_tokens: int) -> str:
        if self._condenser is not None:
            return self._call(span, self._condenser, text, max_tokens)
        return self._call(span, self.summarizer, text, ())

    def _commit(self, levels: list[str], covers: int, span: tuple[int, int]) -> None:
        current = self._record
        record = SummaryRecord(
            session_id=self.session_id,
            version=current.version + 1 if current is not None else 1,
            covers=covers,
            levels=tuple(levels),
            created_at=time.time(),
        )
        if self._state is not None:
            try:
                self._state.save_summary(record)
            except Exception as exc:
                # another writer may have moved the session on: adopt its latest version
                latest = self._safe_latest()
                with self._cv:
                    if latest is not None and (current is None or latest.version > current.version):
                        self._record = latest
                raise SummaryError(
                    f"the store refused the summary: {type(exc).__name__}: {exc}",
                    session_id=self.session_id,
                    start=span[0],
                    stop=span[1],
                    attempts=1,
                ) from exc
        with self._cv:
            self._record = record
            self.commits += 1
            for index in [i for i in self._pending if i < covers]:
                del self._pending[index]
            self._cv.notify_all()

    def _safe_latest(self) -> SummaryRecord | None:
        try:
            return self._state.latest_summary(self.session_id) if self._state else None
        except Exception:
            return None

    def _call(
        self, span: tuple[int, int], fn: Callable[..., object], first: str, second: object
    ) -> str:
        what = f"summary of units {span[0]}-{span[1] - 1} of session {self.session_id!r}"
        try:
            return self._guard.call(fn, first, second, what=what)
        except GaveUp as exc:
            raise SummaryError(
                str(exc),
                session_id=self.session_id,
                start=span[0],
                stop=span[1],
                attempts=exc.attempts,
            ) from exc.__cause__
