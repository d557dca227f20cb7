"""The memory commands: replay a transcript through a memory, clone it into a handoff artifact."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from windowkeeper._budget import PROMPT_ZONES, Budget
from windowkeeper._replay import ReplayTurn, build_memory, replay_transcript
from windowkeeper.cli._args import EXIT_OK, EXIT_USAGE, SETTLE_TIMEOUT, _CliError
from windowkeeper.cli._output import (
    _LEVEL_STYLE,
    _check_plot,
    _emit_json,
    _load,
    _Progress,
    _warn,
)
from windowkeeper.exceptions import BudgetExceededError, InvalidConfigError
from windowkeeper.tokens._counter import TokenCounter

if TYPE_CHECKING:
    from windowkeeper.stores._sqlite import SQLiteStore

# ----------------------------------------------------------------------------------------- replay


def _units_text(first: int, stop: int) -> str:
    return f"unit {first} is" if stop - first == 1 else f"units {first}-{stop - 1} are"


def _wait_for_summaries(memory: Any, keeper: Any, timeout: float, progress: _Progress) -> bool:
    """Ask for every summary due now and wait up to ``timeout`` s; False when it timed out."""
    if memory.flush(timeout=0):  # requests the work (and indexes what is stored); True when idle
        return True
    start = keeper.covers
    deadline = time.monotonic() + timeout
    try:
        while True:
            target = keeper.requested
            progress.update(
                "summary",
                f"summarising units {start}-{target - 1}",
                keeper.covers - start,
                target - start,
            )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if keeper.flush(timeout=min(remaining, 0.5)):
                return True
    finally:
        progress.done("summary")


def _replay(args: argparse.Namespace, console: Console, err: Console) -> int:
    if args.reserve >= args.budget:
        raise _CliError(
            f"--reserve ({args.reserve:,}) must be less than --budget ({args.budget:,})",
            EXIT_USAGE,
        )
    _check_plot(args.plot)
    transcript = _load(args.transcript)
    counter = TokenCounter(args.model or transcript.model or "gpt-4o")
    budget = Budget(context_window=args.budget, generation_reserve=args.reserve)
    options: dict[str, Any] = {}
    if args.strategy in ("recall", "layered") and args.embedder == "none":
        options["embedder"] = None
    if args.strategy in ("summary", "layered") and args.summarizer == "smollm2":
        options["summarizer"] = _local_summarizer()
    store = None
    if args.store:
        store = _open_store(args.store)
        stored = store.count()
        if stored:
            raise _CliError(
                f"--store must be a new or empty file; {args.store!r} already holds {stored} units"
            )
    memory = build_memory(args.strategy, counter, store=store, **options)
    keeper = getattr(memory, "keeper", None)
    total = len(transcript.user_indices())  # one request per user turn (a greeting makes none)

    table = Table(
        title=escape(f"replay · {args.strategy} · {counter.profile.name} · window {args.budget:,}")
    )
    for col in ("turn", "prompt", "naive", "util", "level", *PROMPT_ZONES, "view"):
        table.add_column(col, justify="right" if col not in ("level", "view") else "left")
    turn = 0

    def row(t: ReplayTurn) -> None:
        nonlocal turn
        turn = t.turn
        progress.update("turns", "turn", t.turn, total)
        z = t.report.zones
        view = f"{t.recent} recent"
        if t.recalled:
            view += f" · {t.recalled} recalled"
        if t.summary_covers:
            view += f" · summary of {t.summary_covers}"
        table.add_row(
            str(t.turn),
            f"{t.report.prompt_tokens:,}",
            f"{t.naive_tokens:,}",
            f"{t.report.utilization:.0%}",
            f"[{_LEVEL_STYLE[t.report.level]}]{t.report.level}[/]",
            *(f"{z[name]:,}" for name in PROMPT_ZONES),
            view,
        )

    def settle(m: Any) -> None:
        if not args.settle:
            return
        if keeper is None:
            flush = getattr(m, "flush", None)  # index what is stored, now
            if callable(flush):
                flush()
        elif not _wait_for_summaries(m, keeper, SETTLE_TIMEOUT, progress):
            _warn(
                err,
                f"turn {turn}: summary not finished after {SETTLE_TIMEOUT:g} s: "
                f"{_units_text(keeper.covers, keeper.requested)} still being summarised; the "
                "replay goes on without waiting, so the rows after this one may differ between "
                "runs",
            )

    summary = ""
    try:
        with _Progress(err) as progress:
            try:
                result = replay_transcript(
                    transcript,
                    memory,
                    counter=counter,
                    budget=budget,
                    settle=settle,
                    on_turn=row,
                    max_utilization=args.max_utilization,
                )
            except BudgetExceededError as exc:
                raise _CliError(
                    f"{exc}; raise --budget, or lower --reserve or raise --max-utilization"
                ) from exc
            progress.done("turns")
            if (
                keeper is not None
                and args.finish > 0
                and not _wait_for_summaries(memory, keeper, args.finish, progress)
            ):
                kept = (
                    f"they are kept in {args.store!r}, and a memory opened on it summarises them"
                    if args.store
                    else "the replay itself is complete (no turn waits for a summary)"
                )
                _warn(
                    err,
                    f"summary not finished after {args.finish:g} s: "
                    f"{_units_text(keeper.covers, keeper.requested)} still being summarised; "
                    f"{kept}; a larger --finish waits longer",
                )
        if keeper is not None:
            if keeper.last_error is not None:
                _warn(
                    err,
                    f"{keeper.failures} summary step(s) failed; the last: {keeper.last_error}",
                )
            record = keeper.current()
            if record is not None:
                summary = f"summary of units 0-{record.covers - 1} (version {record.version}):\n{keeper.text}"
    finally:
        close = getattr(memory, "close", None)
        if callable(close):
            close()
    if args.plot:
        from windowkeeper.cli._plot import plot_replay

        plot_replay(result, args.plot)
    if args.json:
        _emit_json(console, result.to_dict())
        return EXIT_OK
    console.print(table)
    last = result.turns[-1]
    console.print(
        f"last turn: {last.report.prompt_tokens:,} tokens sent instead of {last.naive_tokens:,} "
        f"({last.report.prompt_tokens / last.naive_tokens:.0%}); highest utilization "
        f"{max(t.report.utilization for t in result.turns):.1%} of the {budget.context_window:,} "
        f"window (reserve {budget.generation_reserve:,} kept free); {last.stored + 1} units "
        "stored, none lost."
    )
    if summary:
        console.print(summary, markup=False, highlight=False)
    if args.plot:
        console.print(Text(f"chart written to {args.plot}"))
    return EXIT_OK


def _open_store(path: str) -> SQLiteStore:
    """The SQLite store at ``--store``; its errors name the flag."""
    from windowkeeper.stores._sqlite import SQLiteStore

    try:
        return SQLiteStore(path)
    except InvalidConfigError as exc:
        raise _CliError(f"--store {path!r}: {exc}") from exc


def _local_summarizer() -> Any:
    """The process-wide SmolLM2 summariser (ModelNotInstalledError, exit 3, when absent)."""
    from windowkeeper.local._summarizer import shared_summarizer

    return shared_summarizer()


# ------------------------------------------------------------------------------------------ clone


def _clone(args: argparse.Namespace, console: Console, err: Console) -> int:
    from windowkeeper._cloning import clone_conversation

    transcript = _load(args.transcript)
    counter = TokenCounter(args.model or transcript.model or "gpt-4o")
    conversation = [m for m in transcript.messages if m.zone_hint != "rag"]
    summary = None
    if args.store:
        if not Path(args.store).is_file():
            raise _CliError(f"--store {args.store!r} does not exist")
        with _open_store(args.store) as store:
            record = store.latest_summary(args.session)
        from windowkeeper.memory._keeper import render_levels

        if record is None:
            err.print(
                Text.assemble(
                    ("note:", "yellow"),
                    f" {args.store} holds no summary for session {args.session!r} yet "
                    "(replay --finish SECONDS makes one); the clone has no facts section",
                )
            )
        summary = render_levels(record.levels) if record is not None else ""
    summarizer = _local_summarizer() if summary is None and args.summarizer == "smollm2" else None
    try:
        artifact = clone_conversation(
            conversation,
            counter=counter,
            max_tokens=args.max_tokens,
            summary=summary,
            summarizer=summarizer,
        )
    except BudgetExceededError as exc:
        raise _CliError(f"{exc}; raise --max-tokens") from exc
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(artifact.to_json(), encoding="utf-8")
    if args.json:
        _emit_json(console, artifact.to_dict())
        return EXIT_OK
    console.print(artifact.render(), markup=False, highlight=False)
    console.print(
        Text(
            f"\n{counter.count(artifact.render()):,} tokens (budget {args.max_tokens:,}) from "
            f"{artifact.source['tokens']:,} tokens in {artifact.source['units']} turns; "
            f"{len(artifact.snippets)} verbatim snippets, all present"
            + (f"; written to {args.out}" if args.out else ""),
            style="dim",
        )
    )
    return EXIT_OK
