"""The rolling summary: background worker, faults, hierarchy under the cap, persistence."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from windowkeeper import InvalidConfigError, Message, SQLiteStore, TokenCounter
from windowkeeper._units import Unit
from windowkeeper.memory._base import summary_message
from windowkeeper.memory._summary import (
    RetryPolicy,
    RollingSummary,
    SummaryError,
    SummaryKeeper,
    SummaryTimeoutError,
    cut_to_tokens,
    render_levels,
)
from windowkeeper.stores import MemoryStore

COUNTER = TokenCounter("gpt-4o")
FAST = RetryPolicy(attempts=3, initial_delay=0, max_delay=0, timeout=30)
WAIT = 30.0  # generous ceiling for events: a test fails on it only when something is broken


def turn(i: int, words: int = 3) -> list[Message]:
    return [
        Message(role="user", content=f"Question {i}: " + " ".join(["detail"] * words)),
        Message(role="assistant", content=f"Answer {i}."),
    ]


def make_units(n: int) -> list[Unit]:
    return [Unit(index=i, messages=tuple(turn(i))) for i in range(n)]


def facts(previous: str, units: Sequence[Unit]) -> str:
    """Deterministic summariser: one sentence per unit appended to the previous summary."""
    return " ".join([previous, *(f"Turn {u.index} asked Q{u.index}." for u in units)]).strip()


def view_cost(view: object) -> int:
    return sum(COUNTER.count_message(m) for m in view.messages())  # type: ignore[attr-defined]


def accounted(memory: RollingSummary, budget: int) -> None:
    """Every stored unit is in the summary, shown verbatim, or reported dropped."""
    view = memory.view(budget=budget)
    shown = {u.index for u in view.recent}
    dropped: set[int] = set()
    for d in view.dropped:
        if d.what.startswith("unit"):
            first, _, last = d.what.split()[-1].partition("-")
            dropped |= set(range(int(first), int(last or first) + 1))
            assert d.tokens == memory.tokens_between(int(first), int(last or first) + 1)
    covered = set(range(view.summary_covers))
    assert shown | dropped | covered == set(range(len(memory)))
    assert not shown & dropped
    assert view.tokens == view_cost(view) <= budget


class Gate:
    """A summariser that blocks until released; records what it was given."""

    def __init__(self, reply: str = "Gated summary.") -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[tuple[str, tuple[int, ...]]] = []
        self.reply = reply

    def __call__(self, previous: str, units: Sequence[Unit]) -> str:
        self.calls.append((previous, tuple(u.index for u in units)))
        self.entered.set()
        self.release.wait(WAIT)
        return self.reply


# ------------------------------------------------------------------------------- the view


def test_summary_covers_all_but_the_last_units() -> None:
    with RollingSummary(COUNTER, summarizer=facts, keep_last=3, min_batch=1, retry=FAST) as memory:
        for i in range(10):
            memory.add(turn(i))
        assert memory.flush(WAIT)
        view = memory.view(budget=2_000)
        assert view.summary_covers == 7
        assert [u.index for u in view.recent] == [7, 8, 9]
        assert view.summary.startswith("Turn 0 asked Q0.")
        assert "Turn 6 asked Q6." in view.summary
        assert view.tokens == view_cost(view)
        block = view.messages()[0]
        assert block.role == "system"
        assert block.metadata["zone"] == "history"
        assert block == summary_message(view.summary, covers=7)
        assert view.dropped == ()


def test_view_before_any_summary_is_the_window_and_loses_nothing() -> None:
    with RollingSummary(COUNTER, summarizer=Gate(), keep_last=50) as memory:
        for i in range(12):
            memory.add(turn(i, words=20))
        view = memory.view(budget=150)
        assert view.summary == ""
        assert view.recent
        assert view.recent[-1].index == 11
        assert view.dropped
        assert all("next summary covers it" in d.reason for d in view.dropped)
        accounted(memory, 150)


def test_summary_that_does_not_fit_the_budget_gives_way_to_the_window() -> None:
    with RollingSummary(COUNTER, summarizer=facts, keep_last=1, min_batch=1, retry=FAST) as memory:
        for i in range(8):
            memory.add(turn(i))
        memory.flush(WAIT)
        cost = COUNTER.count_message(summary_message(memory.summary, covers=7))
        view = memory.view(budget=cost - 1)
        assert view.summary == ""
        assert view.summary_covers == 0
        assert view.dropped[0].what == "summary of units 0-6"
        assert view.tokens == view_cost(view) <= cost - 1


def test_min_batch_waits_then_pressure_starts_a_summary_early() -> None:
    gate = Gate()
    with RollingSummary(COUNTER, summarizer=gate, keep_last=2, min_batch=100) as memory:
        for i in range(6):
            memory.add(turn(i))
        assert memory.keeper.requested == 0  # 4 beyond keep_last < min_batch, no budget known
        memory.view(budget=10_000)
        memory.add(turn(6))
        assert memory.keeper.requested == 0  # far below 70 % of the last budget
        memory.view(budget=100)  # the verbatim history is now over 70 % of 100 tokens
        assert gate.entered.wait(WAIT)
        assert memory.keeper.requested == 5
        gate.release.set()
        assert memory.flush(WAIT)
        assert memory.keeper.covers == 5


def test_budget_must_be_a_non_negative_int() -> None:
    with (
        RollingSummary(COUNTER, summarizer=facts) as memory,
        pytest.raises(InvalidConfigError, match="budget must be an int >= 0; got -1"),
    ):
        memory.view(budget=-1)


# ----------------------------------------------------------------------------- the worker


def test_view_never_waits_for_a_slow_summarizer() -> None:
    gate = Gate("Slow summary.")
    with RollingSummary(COUNTER, summarizer=gate, keep_last=2, min_batch=1) as memory:
        for i in range(5):
            memory.add(turn(i))
        assert gate.entered.wait(WAIT)  # the worker is inside the summariser now
        for i in range(5, 9):  # turns go on while it runs
            memory.add(turn(i))
            accounted(memory, 120)
        assert memory.summary == ""
        gate.release.set()
        assert memory.flush(WAIT)
        assert memory.summary == "Slow summary."
        assert memory.keeper.covers == 7  # requests made while busy were coalesced
        accounted(memory, 120)


def test_previous_summary_is_always_passed_in() -> None:
    seen: list[tuple[str, tuple[int, ...]]] = []

    def summarize(previous: str, units: Sequence[Unit]) -> str:
        seen.append((previous, tuple(u.index for u in units)))
        return f"v{len(seen)}: units up to {units[-1].index}."

    # min_batch is out of reach: only flush() starts a summary, so the batches are exact
    with RollingSummary(
        COUNTER, summarizer=summarize, keep_last=1, min_batch=100, retry=FAST
    ) as memory:
        for i in range(3):
            memory.add(turn(i))
        assert memory.flush(WAIT)
        for i in range(3, 6):
            memory.add(turn(i))
        assert memory.flush(WAIT)
    assert seen == [("", (0, 1)), ("v1: units up to 1.", (2, 3, 4))]


def test_a_summarizer_that_raises_is_retried_then_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    errors: list[SummaryError] = []

    def broken(previous: str, units: Sequence[Unit]) -> str:
        calls.append(len(units))
        raise ConnectionError("model server down")

    caplog.set_level(logging.WARNING, logger="windowkeeper")
    with RollingSummary(
        COUNTER, summarizer=broken, keep_last=2, min_batch=2, retry=FAST, on_error=errors.append
    ) as memory:
        for i in range(4):
            memory.add(turn(i))
        assert memory.flush(WAIT)
        error = memory.keeper.last_error
        assert isinstance(error, SummaryError)
        assert errors == [error]
        assert (error.start, error.stop, error.attempts) == (0, 2, 3)
        assert isinstance(error.__cause__, ConnectionError)
        assert len(calls) == 3
        assert memory.keeper.failures == 1
        assert memory.summary_record is None  # nothing committed
        accounted(memory, 60)
        assert sum(r.levelno == logging.WARNING for r in caplog.records) == 3
        assert any(
            r.levelno == logging.ERROR and "failed after 3 attempts" in r.message
            for r in caplog.records
        )
        memory.add(turn(4))  # the next turn asks again
        assert memory.flush(WAIT)
        assert len(calls) == 6
        assert memory.keeper.failures == 2


def test_a_flaky_summarizer_succeeds_on_a_later_attempt() -> None:
    calls: list[int] = []

    def flaky(previous: str, units: Sequence[Unit]) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("rate limited")
        return facts(previous, units)

    with RollingSummary(COUNTER, summarizer=flaky, keep_last=1, min_batch=2, retry=FAST) as memory:
        memory.extend([m for i in range(3) for m in turn(i)])
        assert memory.flush(WAIT)
        assert len(calls) == 3
        assert memory.keeper.last_error is None
        assert memory.keeper.covers == 2


def test_backoff_doubles_up_to_the_ceiling() -> None:
    assert RetryPolicy(attempts=5, initial_delay=0.25, max_delay=1.0).delays() == (
        0.25,
        0.5,
        1.0,
        1.0,
    )
    assert RetryPolicy(attempts=1).delays() == ()


def test_close_interrupts_a_long_backoff() -> None:
    failed = threading.Event()

    def broken(previous: str, units: Sequence[Unit]) -> str:
        failed.set()
        raise RuntimeError("boom")

    slow_retry = RetryPolicy(attempts=2, initial_delay=3600, max_delay=3600)
    keeper = SummaryKeeper(COUNTER, broken, retry=slow_retry)
    keeper.request(make_units(2))
    assert failed.wait(WAIT)
    thread = keeper._thread
    keeper.close(timeout=WAIT)
    assert thread is not None
    assert not thread.is_alive()
    assert keeper.current() is None


def test_a_hung_summarizer_is_abandoned_and_its_late_result_ignored() -> None:
    gate = Gate("LATE")
    calls: list[int] = []

    def hangs_once(previous: str, units: Sequence[Unit]) -> str:
        calls.append(1)
        return gate(previous, units) if len(calls) == 1 else facts(previous, units)

    errors: list[SummaryError] = []
    keeper = SummaryKeeper(
        COUNTER,
        hangs_once,
        retry=RetryPolicy(attempts=1, timeout=0.05),
        on_error=errors.append,
    )
    try:
        units = make_units(3)
        keeper.request(units, upto=2)
        assert keeper.flush(WAIT)
        assert isinstance(errors[0].__cause__, SummaryTimeoutError)
        assert keeper.current() is None
        gate.release.set()  # the abandoned call finishes now: its "LATE" must go nowhere
        keeper.request(units, upto=3)
        assert keeper.flush(WAIT)
        record = keeper.current()
        assert record is not None
        assert record.covers == 3
        assert record.version == 1
        assert "LATE" not in keeper.text
    finally:
        keeper.close()


async def test_an_async_summarizer_runs_on_the_worker_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def summarize(previous: str, units: Sequence[Unit]) -> str:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return facts(previous, units)

    with RollingSummary(
        COUNTER, summarizer=summarize, keep_last=1, min_batch=1, retry=FAST
    ) as memory:
        for i in range(4):
            memory.add(turn(i))
        # this test itself runs inside an event loop: flush blocks only this test's thread
        assert memory.flush(WAIT)
        assert memory.keeper.covers == 3
        assert memory.summary.startswith("Turn 0 asked")
        assert loops
        assert loops[0] is not asyncio.get_running_loop()


def test_an_async_summarizer_past_the_timeout_is_cancelled() -> None:
    cancelled = threading.Event()

    async def never(previous: str, units: Sequence[Unit]) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"  # pragma: no cover

    keeper = SummaryKeeper(COUNTER, never, retry=RetryPolicy(attempts=1, timeout=0.05))
    try:
        keeper.request(make_units(2))
        assert keeper.flush(WAIT)
        assert cancelled.is_set()
        assert isinstance(keeper.last_error, SummaryError)
        assert isinstance(keeper.last_error.__cause__, SummaryTimeoutError)
    finally:
        keeper.close()


def test_a_sync_callable_returning_an_awaitable_is_awaited() -> None:
    async def later(text: str) -> str:
        return text

    def summarize(previous: str, units: Sequence[Unit]):  # type: ignore[no-untyped-def]
        return later(facts(previous, units))

    keeper = SummaryKeeper(COUNTER, summarize, retry=FAST)
    try:
        keeper.request(make_units(2))
        assert keeper.flush(WAIT)
        assert keeper.text == "Turn 0 asked Q0. Turn 1 asked Q1."
    finally:
        keeper.close()


@pytest.mark.parametrize("bad", [None, "", "   ", 42])
def test_a_summary_that_is_not_text_is_an_error(bad: object) -> None:
    keeper = SummaryKeeper(COUNTER, lambda p, u: bad, retry=FAST)  # type: ignore[arg-type,return-value]
    try:
        keeper.request(make_units(1))
        assert keeper.flush(WAIT)
        assert keeper.current() is None
        assert keeper.failures == 1
    finally:
        keeper.close()


def test_close_abandons_a_running_call_and_commits_nothing() -> None:
    gate = Gate()
    keeper = SummaryKeeper(COUNTER, gate, retry=RetryPolicy(timeout=None))
    keeper.request(make_units(2))
    assert gate.entered.wait(WAIT)
    thread = keeper._thread
    keeper.close(timeout=WAIT)
    assert thread is not None
    assert not thread.is_alive()
    gate.release.set()
    assert keeper.current() is None
    keeper.request(make_units(3))  # ignored after close
    assert keeper.flush(1)
    assert keeper.current() is None


def test_the_worker_stops_when_idle_and_restarts_on_demand() -> None:
    keeper = SummaryKeeper(COUNTER, facts, retry=FAST, idle_exit=0.01)
    try:
        units = make_units(4)
        keeper.request(units, upto=2)
        assert keeper.flush(WAIT)
        first = keeper._thread
        if first is not None:
            first.join(WAIT)
        assert keeper._thread is None
        keeper.request(units, upto=4)
        assert keeper.flush(WAIT)
        assert keeper.covers == 4
        assert keeper.commits == 2
    finally:
        keeper.close()


def test_request_needs_every_unit_it_covers() -> None:
    keeper = SummaryKeeper(COUNTER, facts)
    try:
        with pytest.raises(InvalidConfigError, match="unit 1 is missing"):
            keeper.request([make_units(3)[0], make_units(3)[2]], upto=3)
    finally:
        keeper.close()


def test_large_backlogs_are_summarised_in_batches() -> None:
    seen: list[int] = []

    def summarize(previous: str, units: Sequence[Unit]) -> str:
        seen.append(len(units))
        return f"{len(seen)} batches."

    keeper = SummaryKeeper(COUNTER, summarize, retry=FAST, batch_tokens=64)
    try:
        keeper.request(make_units(20))
        assert keeper.flush(WAIT)
        assert sum(seen) == 20
        assert len(seen) > 1
        assert keeper.commits == len(seen)
        assert keeper.covers == 20
    finally:
        keeper.close()


# ------------------------------------------------------------------------------ the cap


def verbose(previous: str, units: Sequence[Unit]) -> str:
    """Grows without bound: every unit adds a long sentence to the previous summary."""
    extra = " ".join(
        f"In turn {u.index} the customer gave order NW-{u.index:05d} and asked about it at length."
        for u in units
    )
    return f"{previous} {extra}".strip()


def halve(text: str, max_tokens: int) -> str:
    """A condenser that keeps the first half of the sentences."""
    sentences = [s for s in text.replace("\n", " ").split(". ") if s]
    return ". ".join(sentences[: max(1, len(sentences) // 2)]).rstrip(".") + "."


def test_hierarchy_keeps_the_summary_under_the_cap() -> None:
    cap = 160
    memory = RollingSummary(
        COUNTER,
        summarizer=verbose,
        condenser=halve,
        keep_last=1,
        min_batch=1,
        summary_tokens=cap,
        retry=FAST,
    )
    depths = set()
    with memory:
        memory.add(turn(0))
        for i in range(1, 40):
            memory.add(turn(i))
            memory.flush(WAIT)
            record = memory.summary_record
            assert record is not None
            assert record.covers == i
            block = summary_message(render_levels(record.levels), covers=record.covers)
            assert COUNTER.count_message(block) <= cap
            depths.add(len(record.levels))
            view = memory.view(budget=400)
            assert view.tokens == view_cost(view) <= 400
        assert memory.keeper.last_error is None
        assert max(depths) == 3  # the rolling level was folded upward, twice
        levels = memory.summary_record.levels  # type: ignore[union-attr]
        assert "NW-00000" in levels[-1]  # the oldest facts survive, condensed, at the top


def test_over_the_cap_without_a_condenser_is_cut_at_a_sentence() -> None:
    keeper = SummaryKeeper(COUNTER, verbose, summary_tokens=100, max_levels=1, retry=FAST)
    try:
        keeper.request(make_units(12))
        assert keeper.flush(WAIT)
        record = keeper.current()
        assert record is not None
        assert keeper.last_error is None
        assert COUNTER.count_message(summary_message(keeper.text, covers=12)) <= 100
        assert keeper.text.endswith(".")
        assert keeper.text.startswith("In turn 0")
    finally:
        keeper.close()


def test_the_summarizers_own_condense_method_is_used() -> None:
    class WithCondense:
        def __init__(self) -> None:
            self.condensed = 0

        def __call__(self, previous: str, units: Sequence[Unit]) -> str:
            return verbose(previous, units)

        def condense(self, text: str, max_tokens: int) -> str:
            self.condensed += 1
            return halve(text, max_tokens)

    summarizer = WithCondense()
    keeper = SummaryKeeper(COUNTER, summarizer, summary_tokens=120, retry=FAST)
    try:
        for stop in range(2, 20, 2):
            keeper.request(make_units(stop))
            keeper.flush(WAIT)
        assert summarizer.condensed > 0
        assert keeper.last_error is None
    finally:
        keeper.close()


def test_cut_to_tokens() -> None:
    count = COUNTER.count
    text = "First sentence here. Second one is longer than the first. Third."
    assert cut_to_tokens(text, 100, count) == text
    assert cut_to_tokens(text, count("First sentence here."), count) == "First sentence here."
    word_cut = cut_to_tokens("one two three four five six", 3, count)
    assert word_cut.endswith("…")
    assert count(word_cut) <= 3
    assert cut_to_tokens(text, 0, count) == ""


# -------------------------------------------------------------------------- persistence


def test_summary_survives_reopening_a_sqlite_store(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with (
        SQLiteStore(path) as store,
        RollingSummary(
            COUNTER, store=store, summarizer=facts, keep_last=2, min_batch=1, retry=FAST
        ) as memory,
    ):
        for i in range(6):
            memory.add(turn(i))
        assert memory.flush(WAIT)
        saved = memory.summary_record
    assert saved is not None
    assert saved.covers == 4

    def must_not_resummarise(previous: str, units: Sequence[Unit]) -> str:
        assert units[0].index >= 4, "units already summarised were summarised again"
        return facts(previous, units)

    with (
        SQLiteStore(path) as store,
        RollingSummary(
            COUNTER, store=store, summarizer=must_not_resummarise, keep_last=2, retry=FAST
        ) as memory,
    ):
        assert memory.summary_record == saved
        view = memory.view(budget=1_000)
        assert view.summary == render_levels(saved.levels)
        assert view.summary_covers == 4
        assert [u.index for u in view.recent] == [4, 5]
        memory.add(turn(6))
        memory.add(turn(7))
        assert memory.flush(WAIT)
        assert memory.keeper.last_error is None
        assert memory.summary_record.version == saved.version + 1  # type: ignore[union-attr]


class UnitsOnly:
    """A ConversationStore that keeps no summaries (like a framework's own history)."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def append(self, unit: Unit) -> None:
        self._inner.append(unit)

    def units(
        self, session_id: str = "default", start: int = 0, stop: int | None = None
    ) -> list[Unit]:
        return self._inner.units(session_id, start, stop)

    def count(self, session_id: str = "default") -> int:
        return self._inner.count(session_id)

    def sessions(self) -> list[str]:
        return self._inner.sessions()


def test_summaries_stay_in_the_process_without_a_state_store() -> None:
    store = UnitsOnly()
    with RollingSummary(
        COUNTER, store=store, summarizer=facts, keep_last=1, min_batch=1, retry=FAST
    ) as memory:
        for i in range(3):
            memory.add(turn(i))
        assert memory.flush(WAIT)
        assert memory.state_store is None
        assert memory.keeper.covers == 2
        assert memory.view(budget=500).summary_covers == 2


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_last": 0}, "keep_last must be an int >= 1; got 0"),
        ({"min_batch": "2"}, "min_batch must be an int >= 1; got '2'"),
        ({"alert_threshold": 1.5}, r"alert_threshold must be in \(0, 1\]; got 1.5"),
        ({"summarizer": "nope"}, "summarizer must be a callable"),
        ({"summary_tokens": 20}, "summary_tokens must be at least"),
        ({"max_levels": 0}, "max_levels must be an int between 1 and 8; got 0"),
        ({"batch_tokens": 10}, "batch_tokens must be an int between 64 and 1000000; got 10"),
        ({"condenser": 3}, "condenser must be callable or None; got 3"),
        ({"retry": {"attempts": 2}}, "retry must be a RetryPolicy or None"),
        ({"session_id": ""}, "session_id must be a non-empty str; got ''"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    kwargs.setdefault("summarizer", facts)
    with pytest.raises(InvalidConfigError, match=message):
        RollingSummary(COUNTER, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "attempts must be an int >= 1; got 0"),
        ({"initial_delay": -1}, "initial_delay must be a number >= 0"),
        ({"initial_delay": 2, "max_delay": 1}, r"max_delay must be >= initial_delay \(2\); got 1"),
        ({"timeout": 0}, r"timeout must be a number > 0 \(seconds\) or None; got 0"),
    ],
)
def test_bad_retry_policies_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
