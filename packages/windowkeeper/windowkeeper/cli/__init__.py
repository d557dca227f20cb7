"""The ``windowkeeper`` command: count, audit, plan, kv, models, replay, clone.

Exit codes: 0 success; 1 ``--fail-on`` level reached; 2 usage error (unknown option, bad flag
value, inconsistent flags); 3 bad input (file missing, unreadable or not UTF-8, invalid JSON or
transcript, unknown model, missing optional dependency); 4 internal error (a bug: the traceback is
printed, please report it); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from windowkeeper._budget import LEVELS, PROMPT_ZONES, Budget
from windowkeeper._profiles import default_registry
from windowkeeper._replay import STRATEGIES, ReplayTurn, build_memory, replay_transcript
from windowkeeper._transcript import Transcript, audit_transcript, load_transcript
from windowkeeper._units import group_units, split_system
from windowkeeper.exceptions import (
    ApproximateCountWarning,
    BudgetExceededError,
    InvalidConfigError,
    InvalidMessageError,
    UnknownModelError,
    WindowkeeperError,
)
from windowkeeper.planning._creep import project_creep
from windowkeeper.planning._kv import DTYPE_BYTES, KV_PRESETS, KVSpec, format_bytes, kv_cache_size
from windowkeeper.tokens._breakdown import breakdown
from windowkeeper.tokens._counter import TokenCounter
from windowkeeper.tokens._encodings import ENCODINGS, load_encoding

__all__ = ["entry", "main"]

EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
_LEVEL_STYLE = {
    "ok": "green",
    "alert": "yellow",
    "act": "bold red",
    "overflow": "bold white on red",
}
PLAN_DEFAULTS = {"system": 1_200, "tools": 600, "rag": 800, "user": 60, "reply": 350}
"""``plan``'s defaults: the creep example of the docs (1,800 fixed tokens, +1,210 per turn)."""
PLAN_WINDOW, PLAN_RESERVE = 128_000, 1_500
SETTLE_TIMEOUT = 300.0
"""Seconds ``replay --settle`` waits for each turn's summary before it goes on without it."""
PROGRESS_EVERY = 5.0
"""Seconds between two plain progress lines when standard error is not a terminal."""


class _CliError(Exception):
    """An error worded for the command line (flags, files), with its exit code."""

    def __init__(self, message: str, code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------- flag values


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low`` (argparse names the flag in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}; got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


_TOKENS = _int_at_least(0)
_POSITIVE = _int_at_least(1)


def _share(text: str) -> float:
    """An argparse type: a share of the window, above 0 and at most 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:  # also refuses NaN
        raise argparse.ArgumentTypeError(
            f"must be a share of the window above 0 and at most 1 (e.g. 0.8); got {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0; got {text!r}")
    return value


def _name(text: str) -> str:
    """An argparse type: a non-empty name."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must not be empty; got {text!r}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="windowkeeper",
        description="Manage the LLM context window as a budget: exact offline token accounting.",
        epilog="Exit codes: 0 ok, 1 --fail-on level reached, 2 usage error, 3 bad input, "
        "4 internal error, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    count = sub.add_parser("count", help="count tokens of a text file (or stdin) with a breakdown")
    count.add_argument("file", nargs="?", default="-", help="text file; '-' or nothing reads stdin")
    which = count.add_mutually_exclusive_group()
    which.add_argument(
        "--model", type=_name, help="count for this model (default: both OpenAI encodings)"
    )
    which.add_argument("--encoding", choices=sorted(ENCODINGS), help="count with this encoding")
    count.add_argument("--json", action="store_true", help="machine-readable output")

    audit = sub.add_parser("audit", help="per-zone accounting of a transcript, creep, cost, cache")
    audit.add_argument(
        "transcript",
        help="transcript JSON (windowkeeper.transcript/1 or a message list); '-' reads stdin",
    )
    audit.add_argument(
        "--model", type=_name, help="model profile (default: the transcript's, else gpt-4o)"
    )
    audit.add_argument(
        "--reserve",
        type=_TOKENS,
        metavar="N",
        help="generation reserve (default: the model's output cap, at most 4096)",
    )
    audit.add_argument(
        "--window", type=_POSITIVE, metavar="N", help="override the model's context window"
    )
    audit.add_argument("--plot", metavar="PNG", help="write the context-creep chart (.png, .svg…)")
    audit.add_argument(
        "--fail-on", choices=LEVELS[1:], help="exit 1 when the last request reaches this level"
    )
    audit.add_argument("--json", action="store_true", help="machine-readable output")

    d = PLAN_DEFAULTS
    plan = sub.add_parser(
        "plan",
        help=f"the budget and creep calculator (defaults: a {PLAN_WINDOW:,}-token window, "
        f"system {d['system']:,}, tools {d['tools']}, reserve {PLAN_RESERVE:,}; per turn "
        f"RAG {d['rag']}, user {d['user']}, reply {d['reply']})",
    )
    plan.add_argument("--model", type=_name, help="take the window from this model's profile")
    plan.add_argument(
        "--window",
        type=_POSITIVE,
        metavar="N",
        help=f"context window (default: the --model's, else {PLAN_WINDOW})",
    )
    for flag, what in (
        ("system", "system prompt tokens"),
        ("tools", "tool schema tokens"),
        ("rag", "RAG tokens added per turn"),
        ("user", "user tokens per turn"),
        ("reply", "reply tokens per turn"),
    ):
        plan.add_argument(
            f"--{flag}",
            type=_TOKENS,
            default=d[flag],
            metavar="N",
            help=f"{what} (default {d[flag]})",
        )
    plan.add_argument(
        "--reserve",
        type=_TOKENS,
        default=PLAN_RESERVE,
        metavar="N",
        help=f"generation reserve (default {PLAN_RESERVE})",
    )
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    kv = sub.add_parser("kv", help="KV-cache memory for a context length")
    kv.add_argument(
        "--preset", choices=sorted(KV_PRESETS), help="attention shape (default: all presets)"
    )
    kv.add_argument("--layers", type=_POSITIVE, metavar="N", help="custom shape: layers")
    kv.add_argument("--kv-heads", type=_POSITIVE, metavar="N", help="custom shape: key/value heads")
    kv.add_argument("--head-dim", type=_POSITIVE, metavar="N", help="custom shape: head dimension")
    kv.add_argument(
        "--tokens",
        type=_TOKENS,
        default=128_000,
        metavar="N",
        help="context length (default 128000)",
    )
    kv.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="bf16", help="element type")
    kv.add_argument(
        "--batch", type=_POSITIVE, default=1, metavar="N", help="sequences at once (default 1)"
    )
    kv.add_argument("--json", action="store_true", help="machine-readable output")

    models = sub.add_parser("models", help="list the model profiles")
    models.add_argument("--json", action="store_true", help="machine-readable output")

    replay = sub.add_parser(
        "replay", help="replay a transcript through a memory: per-turn utilization and zones"
    )
    replay.add_argument(
        "transcript", help="transcript JSON (windowkeeper.transcript/1 or a list); '-' reads stdin"
    )
    replay.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="layered",
        help="memory strategy (default layered)",
    )
    replay.add_argument(
        "--budget",
        type=_POSITIVE,
        default=8_000,
        metavar="N",
        help="context window to fit (default 8000)",
    )
    replay.add_argument(
        "--reserve",
        type=_TOKENS,
        default=1_000,
        metavar="N",
        help="generation reserve, below --budget (default 1000)",
    )
    replay.add_argument(
        "--max-utilization",
        type=_share,
        default=0.8,
        metavar="SHARE",
        help="keep each prompt below this share of the window, in (0, 1] "
        "(default 0.8: never reach 'act')",
    )
    replay.add_argument(
        "--model", type=_name, help="model profile (default: the transcript's, else gpt-4o)"
    )
    replay.add_argument("--store", metavar="DB", help="SQLite file to keep the replayed memory in")
    replay.add_argument(
        "--embedder",
        choices=["minilm", "none"],
        default="minilm",
        help="recall embedder: the embedded MiniLM (default) or none (BM25 only)",
    )
    replay.add_argument(
        "--settle",
        action="store_true",
        help="wait for each background summary before the next turn (deterministic output; "
        f"at most {SETTLE_TIMEOUT:.0f} s per turn)",
    )
    replay.add_argument(
        "--finish",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="after the last turn, wait up to SECONDS for background summaries and print the summary",
    )
    replay.add_argument(
        "--plot", metavar="PNG", help="write the per-turn zones chart (.png, .svg…)"
    )
    replay.add_argument("--json", action="store_true", help="machine-readable output")

    clone = sub.add_parser(
        "clone", help="compress a transcript into a handoff artifact that seeds a new conversation"
    )
    clone.add_argument("transcript", help="transcript JSON; '-' reads stdin")
    clone.add_argument(
        "--max-tokens",
        type=_POSITIVE,
        default=1_500,
        metavar="N",
        help="artifact budget in tokens (default 1500)",
    )
    clone.add_argument(
        "--model", type=_name, help="model profile (default: the transcript's, else gpt-4o)"
    )
    clone.add_argument("--out", metavar="JSON", help="write the artifact here")
    clone.add_argument(
        "--store",
        metavar="DB",
        help="take the facts from the latest summary in this SQLite store (e.g. from replay --store) "
        "instead of running the local summariser",
    )
    clone.add_argument(
        "--session",
        type=_name,
        default="default",
        help="session in --store (default 'default')",
    )
    clone.add_argument("--json", action="store_true", help="print the artifact as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 110)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    handler = {
        "count": _count,
        "audit": _audit,
        "plan": _plan,
        "kv": _kv,
        "models": _models,
        "replay": _replay,
        "clone": _clone,
    }[args.command]
    try:
        with warnings.catch_warnings():
            # the CLI shows the band instead
            warnings.simplefilter("ignore", ApproximateCountWarning)
            return handler(args, console, err)
    except _CliError as exc:
        if exc.code == EXIT_USAGE:
            err.print(Text(f"windowkeeper {args.command}: error: {exc}"))
        else:
            _error(err, str(exc))
        return exc.code
    except UnknownModelError as exc:
        _error(err, _unknown_model(exc, from_flag=getattr(args, "model", None) is not None))
        return EXIT_INPUT
    except (WindowkeeperError, ImportError) as exc:  # ModelNotInstalledError is both
        _error(err, str(exc))
        return EXIT_INPUT
    except OSError as exc:
        _error(
            err, f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        )
        return EXIT_INPUT
    except KeyboardInterrupt:
        _error(err, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say so, and keep its exit code apart from --fail-on's
        err.print(
            Text(
                f"windowkeeper: internal error ({type(exc).__name__}: {exc}); this is a bug in "
                "windowkeeper, please report it with the command you ran and this traceback:"
            )
        )
        traceback.print_exception(exc, file=sys.stderr)
        return EXIT_INTERNAL


def _error(err: Console, message: str) -> None:
    """``error: message`` on stderr; the message is plain text, never markup."""
    err.print(Text.assemble(("error:", "bold red"), " ", message))


def _warn(err: Console, message: str) -> None:
    err.print(Text.assemble(("warning:", "bold yellow"), " ", message))


def _unknown_model(exc: UnknownModelError, *, from_flag: bool) -> str:
    """The command line's wording of an unknown model (the library's suggests Python code)."""
    where = "--model" if from_flag else "the transcript's model"
    hint = f"; did you mean {' or '.join(map(repr, exc.suggestions))}?" if exc.suggestions else "."
    advice = "" if from_flag else " Pass --model to use another one."
    return (
        f"{where} {exc.model!r} has no profile{hint} Run `windowkeeper models` to list the "
        f"profiles.{advice}"
    )


def entry() -> None:
    """The console script: run :func:`main` as a program and exit with its code.

    Only here (never when :func:`main` is called inside another process, e.g. a test run) may the
    process end early past a background model call.
    """
    code = main()
    _exit_past_native_workers(code)
    sys.exit(code)


def _exit_past_native_workers(code: int) -> None:
    """End the process at once when a background model call is still running after close().

    A summariser call inside torch cannot be interrupted, and torch aborts the process ("terminate
    called without an active exception") if the interpreter shuts down under it. Everything
    committed is already in the store; the abandoned call's result would be discarded anyway.
    """
    import os
    import threading

    if any(
        t.name.startswith("windowkeeper-summary") and t.is_alive() for t in threading.enumerate()
    ):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _emit_json(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data), highlight=False)


# ------------------------------------------------------------------------------------- input


def _source(path: str) -> str:
    """How a file argument is named in messages."""
    return "standard input" if path == "-" else repr(path)


def _read_text(path: str) -> str:
    """The UTF-8 text of a file, or of standard input for ``-``.

    Raises:
        _CliError: The bytes are not UTF-8 (the message names the file).
        OSError: The file is missing or unreadable.
    """
    if path == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # a text stream without bytes underneath (an embedding program's)
            return sys.stdin.read()
        data: bytes = buffer.read()
    else:
        data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _CliError(
            f"{_source(path)} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); windowkeeper reads UTF-8 text and JSON files only"
        ) from exc


def _load(path: str) -> Transcript:
    """A transcript from a JSON file, or from standard input for ``-``."""
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessageError(
            f"{_source(path)} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    return load_transcript(data)


def _label(path: str) -> str:
    return "stdin" if path == "-" else Path(path).name


def _check_plot(path: str | None) -> None:
    """Refuse a chart file matplotlib cannot write before the work starts (exit code 3)."""
    if path:
        from windowkeeper.cli._plot import check_plot_path

        check_plot_path(path)


# ---------------------------------------------------------------------------------- progress


class _Progress:
    """Progress of long work on stderr: rich bars on a terminal, else a plain line now and then.

    Plain lines (``turn 5/24``) come at most every :data:`PROGRESS_EVERY` seconds, so a short run
    prints none.
    """

    def __init__(self, err: Console) -> None:
        self._err = err
        self._last = time.monotonic()
        self._tasks: dict[str, TaskID] = {}
        self._bars = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            if err.is_terminal
            else None
        )

    def __enter__(self) -> _Progress:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._bars.stop()

    def update(self, key: str, label: str, done: int, total: int) -> None:
        """Show ``label done/total`` for the piece of work ``key``."""
        if self._bars is not None:
            task = self._tasks.get(key)
            if task is None:
                task = self._tasks[key] = self._bars.add_task(label, total=total)
            self._bars.update(task, description=label, completed=done, total=total)
            return
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY:
            self._last = now
            self._err.print(Text(f"{label} {done}/{total}"))

    def done(self, key: str) -> None:
        """Remove the bar of ``key`` (plain mode prints nothing)."""
        task = self._tasks.pop(key, None)
        if task is not None and self._bars is not None:
            self._bars.remove_task(task)


# ------------------------------------------------------------------------------------------ count


def _count(args: argparse.Namespace, console: Console, err: Console) -> int:
    # (label, count, exact, error band, encoding); the model is checked before stdin is read
    counters: list[tuple[str, Callable[[str], int], bool, float, str]]
    if args.model:
        counter = TokenCounter(args.model)
        counters = [
            (args.model, counter.count, counter.exact, counter.error_band, counter.encoder.name)
        ]
    else:
        names = [args.encoding] if args.encoding else sorted(ENCODINGS)
        counters = [(name, load_encoding(name).count, True, 0.0, name) for name in names]
    text = _read_text(args.file)
    results = [
        (label, breakdown(text, count), exact, band, encoding)
        for label, count, exact, band, encoding in counters
    ]
    if args.json:
        _emit_json(
            console,
            {
                label: {
                    "tokens": b.total_tokens,
                    "chars": b.total_chars,
                    "encoding": encoding,
                    "exact": exact,
                    "error_band": band,
                    "breakdown": [
                        {
                            "kind": s.kind,
                            "chars": s.chars,
                            "tokens": s.tokens,
                            "chars_per_token": round(s.chars_per_token, 2),
                        }
                        for s in b.shares
                    ],
                    "boundary_tokens": b.boundary_tokens,
                }
                for label, b, exact, band, encoding in results
            },
        )
        return EXIT_OK
    for label, b, exact, band, encoding in results:
        ratio = b.total_chars / b.total_tokens if b.total_tokens else 0.0
        stand_in = "" if exact else f" (±{band:.0%}: stand-in encoding {encoding})"
        table = Table(
            title=escape(
                f"{label}{stand_in}: {b.total_tokens:,} tokens, {b.total_chars:,} chars "
                f"({ratio:.2f} chars/token)"
            )
        )
        for col in ("content", "chars", "tokens", "share", "chars/token"):
            table.add_column(col, justify="left" if col == "content" else "right")
        for s in b.shares:
            share = s.tokens / b.total_tokens if b.total_tokens else 0.0
            table.add_row(
                s.kind, f"{s.chars:,}", f"{s.tokens:,}", f"{share:.1%}", f"{s.chars_per_token:.2f}"
            )
        if b.boundary_tokens:
            table.caption = (
                f"parts counted span by span; {b.boundary_tokens:+d} tokens where spans meet"
            )
        console.print(table)
    return EXIT_OK


# ------------------------------------------------------------------------------------------ audit


def _audit_budget(args: argparse.Namespace, counter: TokenCounter) -> Budget:
    """The budget of ``audit``, with flag-worded errors for --window and --reserve."""
    profile = counter.profile
    window = args.window if args.window is not None else profile.context_window
    if args.reserve is not None:
        reserve, reserve_from = args.reserve, f"--reserve ({args.reserve:,})"
    else:
        reserve = min(profile.max_output_tokens, 4096)
        reserve_from = f"the reserve ({reserve:,}: {profile.name}'s output cap, at most 4,096)"
    if reserve >= window:
        window_from = (
            f"--window ({window:,})"
            if args.window is not None
            else f"{profile.name}'s window ({window:,})"
        )
        raise _CliError(
            f"{reserve_from} must be less than {window_from}; pass a smaller --reserve"
            + (" or a larger --window" if args.window is not None else ""),
            EXIT_USAGE,
        )
    return Budget(
        context_window=window,
        generation_reserve=reserve,
        effective_window=profile.effective_window if args.window is None else None,
        model=profile.name,
    )


def _audit(args: argparse.Namespace, console: Console, err: Console) -> int:
    _check_plot(args.plot)
    transcript = _load(args.transcript)
    model = args.model or transcript.model or "gpt-4o"
    counter = TokenCounter(model)
    budget = _audit_budget(args, counter)
    audit = audit_transcript(transcript, counter, budget)
    plot_path = None
    if args.plot:
        from windowkeeper.cli._plot import plot_creep

        plot_path = plot_creep(audit, budget, args.plot)
    last = audit.last
    failed = args.fail_on is not None and LEVELS.index(last.level) >= LEVELS.index(args.fail_on)
    if args.json:
        data = audit.to_dict()
        data["plot"] = str(plot_path) if plot_path else None
        _emit_json(console, data)
        return EXIT_FAIL_ON if failed else EXIT_OK

    band = "exact" if audit.exact else f"±{audit.error_band:.0%} (stand-in encoding)"
    table = Table(title=escape(f"{_label(args.transcript)}: last request, {audit.model} ({band})"))
    table.add_column("zone")
    table.add_column("tokens", justify="right")
    table.add_column("share of window", justify="right")
    for zone in (*PROMPT_ZONES, "reserve"):
        n = last.zones[zone]  # type: ignore[index]
        table.add_row(zone, f"{n:,}", f"{n / last.context_window:.1%}")
    table.add_section()
    table.add_row("prompt", f"{last.prompt_tokens:,}", f"{last.utilization:.1%}")
    table.add_row("window", f"{last.context_window:,}", "")
    console.print(table)
    style = _LEVEL_STYLE[last.level]
    console.print(
        f"level: [{style}]{last.level}[/]  utilization {last.utilization:.1%}  "
        f"headroom {last.headroom:,} tokens",
        highlight=False,
    )
    if last.over_effective_window:
        console.print(
            f"[yellow]prompt exceeds the model's effective window ({last.effective_window:,})[/]"
        )

    turns = Table(title="per turn")
    for col in ("turn", *PROMPT_ZONES, "prompt", "util.", "level", "reply"):
        turns.add_column(col, justify="right")
    rows = audit.turns
    shown = rows if len(rows) <= 12 else (*rows[:5], None, *rows[-5:])
    for row in shown:
        if row is None:
            turns.add_row("…", *[""] * (len(PROMPT_ZONES) + 4))
            continue
        r = row.report
        turns.add_row(
            str(row.turn),
            *[f"{r.zones[z]:,}" for z in PROMPT_ZONES],
            f"{r.prompt_tokens:,}",
            f"{r.utilization:.1%}",
            f"[{_LEVEL_STYLE[r.level]}]{r.level}[/]",
            f"{row.reply_tokens:,}",
        )
    console.print(turns)

    p = audit.projection
    if p is not None:

        def when(n: int | None) -> str:
            return "never (no growth)" if n is None else f"turn {n}"

        console.print(
            f"creep: +{p.per_turn:,.0f} tokens per turn on {p.fixed:,.0f} fixed → "
            f"70 % at {when(audit.turns_until_alert)}, 80 % at {when(audit.turns_until_act)}, "
            f"full at {when(audit.turns_until_full)}",
            highlight=False,
        )
    if audit.cost_per_call is not None:
        console.print(
            f"cost: ${audit.cost_per_call:.4f} per call now (last prompt + average reply); "
            f"${audit.cost_total:.4f} for all {len(rows)} calls",
            highlight=False,
        )
    verdict = "[green]cacheable[/]" if audit.prefix.cacheable else "[yellow]not cacheable[/]"
    reasons = f" ({escape('; '.join(audit.prefix.problems))})" if audit.prefix.problems else ""
    console.print(
        f"prefix cache: {verdict}: system + tools = {audit.prefix.tokens:,} tokens, "
        f"fingerprint {audit.prefix.fingerprint[:12]}{reasons}",
        highlight=False,
    )
    if plot_path:
        console.print(Text(f"chart: {plot_path}"))
    return EXIT_FAIL_ON if failed else EXIT_OK


# ------------------------------------------------------------------------------------------- plan


def _plan(args: argparse.Namespace, console: Console, err: Console) -> int:
    if args.window is not None:
        window, window_from = args.window, f"--window ({args.window:,})"
    elif args.model:
        profile = default_registry().get(args.model)
        window = profile.context_window
        window_from = f"{profile.name}'s window ({window:,}; pass --window to change it)"
    else:
        window, window_from = PLAN_WINDOW, f"the default window ({PLAN_WINDOW:,})"
    if args.reserve >= window:
        raise _CliError(f"--reserve ({args.reserve:,}) must be less than {window_from}", EXIT_USAGE)
    budget = Budget(context_window=window, generation_reserve=args.reserve)
    fixed = args.system + args.tools
    headroom = budget.headroom({"system": args.system, "tools": args.tools})
    over_by = max(-headroom, 0)
    projection = project_creep(
        context_window=window,
        fixed=fixed,
        rag_per_turn=args.rag,
        user_per_turn=args.user,
        reply_per_turn=args.reply,
    )
    until = {f"{t:.0%}": projection.turns_until(t) for t in (0.7, 0.8, 1.0)}
    if over_by:
        _warn(
            err,
            f"system + tools + reserve = {fixed + args.reserve:,} tokens exceed the {window:,}-token "
            f"window by {over_by:,}: no request fits, and nothing is left for RAG and history",
        )
    if args.json:
        _emit_json(
            console,
            {
                "context_window": window,
                "fixed": fixed,
                "reserve": args.reserve,
                "fits": not over_by,
                "over_by": over_by,
                "available_for_rag_and_history": max(headroom, 0),
                "per_turn": projection.per_turn,
                "turns_until": until,
            },
        )
        return EXIT_OK
    table = Table(title=f"budget for a {window:,}-token window")
    table.add_column("part")
    table.add_column("tokens", justify="right")
    for label, n in (
        ("system", args.system),
        ("tools", args.tools),
        ("generation reserve", args.reserve),
    ):
        table.add_row(label, f"{n:,}")
    table.add_section()
    if over_by:
        table.add_row("available for RAG + history", f"[bold red]none: over by {over_by:,}[/]")
    else:
        table.add_row("available for RAG + history", f"{headroom:,}")
    console.print(table)
    growth = Table(
        title=f"context creep: +{projection.per_turn:,.0f} tokens per turn "
        f"(RAG {args.rag:,} + user {args.user:,} + reply {args.reply:,})"
    )
    growth.add_column("threshold")
    growth.add_column("reached after turn", justify="right")
    for label, n in until.items():
        growth.add_row(label, "never" if n is None else str(n))
    console.print(growth)
    return EXIT_OK


# --------------------------------------------------------------------------------------------- kv


def _kv(args: argparse.Namespace, console: Console, err: Console) -> int:
    custom = [args.layers, args.kv_heads, args.head_dim]
    if any(v is not None for v in custom):
        if args.preset or None in custom:
            raise _CliError(
                "give --layers, --kv-heads and --head-dim together, without --preset", EXIT_USAGE
            )
        specs = {
            "custom": KVSpec(layers=args.layers, kv_heads=args.kv_heads, head_dim=args.head_dim)
        }
    elif args.preset:
        specs = {args.preset: KV_PRESETS[args.preset]}
    else:
        specs = dict(KV_PRESETS)
    sizes = {
        name: kv_cache_size(spec, tokens=args.tokens, dtype=args.dtype, batch=args.batch)
        for name, spec in specs.items()
    }
    if args.json:
        _emit_json(
            console,
            {
                name: {
                    "bytes_per_token": s.bytes_per_token,
                    "total_bytes": s.total_bytes,
                    "gb": round(s.gb, 3),
                    "gib": round(s.gib, 3),
                    "tokens": s.tokens,
                    "dtype": s.dtype,
                    "batch": s.batch,
                    "note": s.spec.note,
                }
                for name, s in sizes.items()
            },
        )
        return EXIT_OK
    table = Table(title=f"KV cache at {args.tokens:,} tokens × batch {args.batch}, {args.dtype}")
    for col in ("shape", "bytes/token", "total bytes", "size", "note"):
        table.add_column(col, justify="left" if col in ("shape", "note") else "right")
    for name, s in sizes.items():
        table.add_row(
            name,
            f"{s.bytes_per_token:,}",
            f"{s.total_bytes:,}",
            format_bytes(s.total_bytes),
            s.spec.note,
        )
    console.print(table)
    return EXIT_OK


# ----------------------------------------------------------------------------------------- models


def _models(args: argparse.Namespace, console: Console, err: Console) -> int:
    reg = default_registry()
    profiles = [reg.get(n) for n in reg.names()]
    if args.json:
        _emit_json(
            console,
            [
                {
                    "name": p.name,
                    "provider": p.provider,
                    "context_window": p.context_window,
                    "max_output_tokens": p.max_output_tokens,
                    "encoding": p.encoding,
                    "exact": p.exact,
                    "error_band": p.error_band,
                    "input_price": p.input_price,
                    "output_price": p.output_price,
                }
                for p in profiles
            ],
        )
        return EXIT_OK
    table = Table(title="model profiles (USD per 1M tokens)")
    for col in ("model", "provider", "window", "max out", "encoding", "counts", "in $", "out $"):
        table.add_column(
            col, justify="left" if col in ("model", "provider", "encoding", "counts") else "right"
        )
    for p in profiles:
        table.add_row(
            p.name,
            p.provider,
            f"{p.context_window:,}",
            f"{p.max_output_tokens:,}",
            p.encoding,
            "exact" if p.exact else f"±{p.error_band:.0%}",
            "" if p.input_price is None else f"{p.input_price:g}",
            "" if p.output_price is None else f"{p.output_price:g}",
        )
    console.print(table)
    return EXIT_OK


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
    store = None
    if args.store:
        from windowkeeper.stores._sqlite import SQLiteStore

        try:
            store = SQLiteStore(args.store)
        except InvalidConfigError as exc:
            raise _CliError(f"--store {args.store!r}: {exc}") from exc
        if store.count():
            raise _CliError(
                f"--store must be a new or empty file; {args.store!r} already holds "
                f"{store.count()} units"
            )
    memory = build_memory(args.strategy, counter, store=store, **options)
    keeper = getattr(memory, "keeper", None)
    # one request per unit that opens with a user message (a greeting before it makes none)
    total = sum(1 for u in group_units(split_system(list(transcript.messages))[1]) if u.user)

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


# ------------------------------------------------------------------------------------------ clone


def _clone(args: argparse.Namespace, console: Console, err: Console) -> int:
    from windowkeeper._cloning import clone_conversation

    transcript = _load(args.transcript)
    counter = TokenCounter(args.model or transcript.model or "gpt-4o")
    conversation = [m for m in transcript.messages if m.zone_hint != "rag"]
    summary = None
    if args.store:
        from windowkeeper.stores._sqlite import SQLiteStore

        if not Path(args.store).is_file():
            raise _CliError(f"--store {args.store!r} does not exist")
        try:
            store = SQLiteStore(args.store)
        except InvalidConfigError as exc:
            raise _CliError(f"--store {args.store!r}: {exc}") from exc
        with store:
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
    try:
        artifact = clone_conversation(
            conversation, counter=counter, max_tokens=args.max_tokens, summary=summary
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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
