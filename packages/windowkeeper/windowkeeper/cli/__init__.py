"""The ``windowkeeper`` command: count, audit, plan, kv, models, replay, clone.

Exit codes: 0 success; 1 ``--fail-on`` level reached; 2 usage error; 3 bad input (file, JSON,
transcript, unknown model).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from windowkeeper._budget import LEVELS, PROMPT_ZONES, Budget
from windowkeeper._profiles import default_registry
from windowkeeper._replay import STRATEGIES, ReplayTurn, build_memory, replay_transcript
from windowkeeper._transcript import audit_transcript, load_transcript
from windowkeeper.exceptions import ApproximateCountWarning, InvalidConfigError, WindowkeeperError
from windowkeeper.planning._creep import project_creep
from windowkeeper.planning._kv import DTYPE_BYTES, KV_PRESETS, KVSpec, format_bytes, kv_cache_size
from windowkeeper.tokens._breakdown import breakdown
from windowkeeper.tokens._counter import TokenCounter
from windowkeeper.tokens._encodings import ENCODINGS, load_encoding

__all__ = ["entry", "main"]

EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE, EXIT_INPUT = 0, 1, 2, 3
_LEVEL_STYLE = {
    "ok": "green",
    "alert": "yellow",
    "act": "bold red",
    "overflow": "bold white on red",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="windowkeeper",
        description="Manage the LLM context window as a budget: exact offline token accounting.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    count = sub.add_parser("count", help="count tokens of a text file (or stdin) with a breakdown")
    count.add_argument("file", nargs="?", default="-", help="text file; '-' or nothing reads stdin")
    count.add_argument("--model", help="count for this model (default: both OpenAI encodings)")
    count.add_argument("--encoding", choices=sorted(ENCODINGS), help="count with this encoding")
    count.add_argument("--json", action="store_true", help="machine-readable output")

    audit = sub.add_parser("audit", help="per-zone accounting of a transcript, creep, cost, cache")
    audit.add_argument(
        "transcript", help="transcript JSON (windowkeeper.transcript/1 or a message list)"
    )
    audit.add_argument("--model", help="model profile (default: the transcript's, else gpt-4o)")
    audit.add_argument(
        "--reserve", type=int, help="generation reserve (default: output cap, max 4096)"
    )
    audit.add_argument("--window", type=int, help="override the model's context window")
    audit.add_argument("--plot", metavar="PNG", help="write the context-creep chart")
    audit.add_argument(
        "--fail-on", choices=LEVELS[1:], help="exit 1 when the last request reaches this level"
    )
    audit.add_argument("--json", action="store_true", help="machine-readable output")

    plan = sub.add_parser(
        "plan", help="the budget and creep calculator (defaults: the seed's creep example)"
    )
    plan.add_argument("--model", help="take the window from this model's profile")
    plan.add_argument("--window", type=int, default=None, help="context window (default 128000)")
    plan.add_argument("--system", type=int, default=1200, help="system prompt tokens")
    plan.add_argument("--tools", type=int, default=600, help="tool schema tokens")
    plan.add_argument("--rag", type=int, default=800, help="RAG tokens added per turn")
    plan.add_argument("--user", type=int, default=60, help="user tokens per turn")
    plan.add_argument("--reply", type=int, default=350, help="reply tokens per turn")
    plan.add_argument("--reserve", type=int, default=1500, help="generation reserve")
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    kv = sub.add_parser("kv", help="KV-cache memory for a context length")
    kv.add_argument(
        "--preset", choices=sorted(KV_PRESETS), help="attention shape (default: all presets)"
    )
    kv.add_argument("--layers", type=int, help="custom shape: layers")
    kv.add_argument("--kv-heads", type=int, help="custom shape: key/value heads")
    kv.add_argument("--head-dim", type=int, help="custom shape: head dimension")
    kv.add_argument("--tokens", type=int, default=128_000, help="context length (default 128000)")
    kv.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="bf16", help="element type")
    kv.add_argument("--batch", type=int, default=1, help="sequences at once")
    kv.add_argument("--json", action="store_true", help="machine-readable output")

    models = sub.add_parser("models", help="list the model profiles")
    models.add_argument("--json", action="store_true", help="machine-readable output")

    replay = sub.add_parser(
        "replay", help="replay a transcript through a memory: per-turn utilization and zones"
    )
    replay.add_argument("transcript", help="transcript JSON (windowkeeper.transcript/1 or a list)")
    replay.add_argument("--strategy", choices=STRATEGIES, default="layered", help="memory strategy")
    replay.add_argument(
        "--budget", type=int, default=8_000, help="context window to fit (default 8000)"
    )
    replay.add_argument("--reserve", type=int, default=1_000, help="generation reserve")
    replay.add_argument(
        "--max-utilization",
        type=float,
        default=0.8,
        help="keep each prompt below this share of the window (default 0.8: never reach 'act')",
    )
    replay.add_argument("--model", help="model profile (default: the transcript's, else gpt-4o)")
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
        help="wait for each background summary before the next turn (deterministic output)",
    )
    replay.add_argument(
        "--finish",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the last turn, wait up to SECONDS for background summaries and print the summary",
    )
    replay.add_argument("--plot", metavar="PNG", help="write the per-turn zones chart")
    replay.add_argument("--json", action="store_true", help="machine-readable output")

    clone = sub.add_parser(
        "clone", help="compress a transcript into a handoff artifact that seeds a new conversation"
    )
    clone.add_argument("transcript", help="transcript JSON")
    clone.add_argument("--max-tokens", type=int, default=1_500, help="artifact budget")
    clone.add_argument("--model", help="model profile (default: the transcript's, else gpt-4o)")
    clone.add_argument("--out", metavar="JSON", help="write the artifact here")
    clone.add_argument(
        "--store",
        metavar="DB",
        help="take the facts from the latest summary in this SQLite store (e.g. from replay --store) "
        "instead of running the local summariser",
    )
    clone.add_argument(
        "--session", default="default", help="session in --store (default 'default')"
    )
    clone.add_argument("--json", action="store_true", help="print the artifact as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 110)
    err = Console(stderr=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", ApproximateCountWarning
            )  # the CLI shows the band instead
            handler = {
                "count": _count,
                "audit": _audit,
                "plan": _plan,
                "kv": _kv,
                "models": _models,
                "replay": _replay,
                "clone": _clone,
            }
            return handler[args.command](args, console)
    except (WindowkeeperError, FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        return EXIT_INPUT
    except ImportError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_INPUT


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


# ------------------------------------------------------------------------------------------ count


def _count(args: argparse.Namespace, console: Console) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    if args.model:
        counters: list[tuple[str, Any]] = [(args.model, TokenCounter(args.model).count)]
    elif args.encoding:
        counters = [(args.encoding, load_encoding(args.encoding).count)]
    else:
        counters = [(name, load_encoding(name).count) for name in sorted(ENCODINGS)]
    results = {label: breakdown(text, count) for label, count in counters}
    if args.json:
        _emit_json(
            console,
            {
                label: {
                    "tokens": b.total_tokens,
                    "chars": b.total_chars,
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
                for label, b in results.items()
            },
        )
        return EXIT_OK
    for label, b in results.items():
        ratio = b.total_chars / b.total_tokens if b.total_tokens else 0.0
        table = Table(
            title=f"{label}: {b.total_tokens:,} tokens, {b.total_chars:,} chars ({ratio:.2f} chars/token)"
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


def _audit(args: argparse.Namespace, console: Console) -> int:
    transcript = load_transcript(args.transcript)
    model = args.model or transcript.model or "gpt-4o"
    counter = TokenCounter(model)
    budget = Budget.for_model(counter.profile, generation_reserve=args.reserve)
    if args.window:
        budget = Budget(
            context_window=args.window,
            generation_reserve=budget.generation_reserve,
            model=budget.model,
        )
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
    table = Table(title=f"{Path(args.transcript).name}: last request, {audit.model} ({band})")
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
    reasons = f" ({'; '.join(audit.prefix.problems)})" if audit.prefix.problems else ""
    console.print(
        f"prefix cache: {verdict}: system + tools = {audit.prefix.tokens:,} tokens, "
        f"fingerprint {audit.prefix.fingerprint[:12]}{reasons}",
        highlight=False,
    )
    if plot_path:
        console.print(f"chart: {plot_path}", highlight=False)
    return EXIT_FAIL_ON if failed else EXIT_OK


# ------------------------------------------------------------------------------------------- plan


def _plan(args: argparse.Namespace, console: Console) -> int:
    window = args.window
    if args.model:
        profile = default_registry().get(args.model)
        window = window or profile.context_window
    window = window or 128_000
    budget = Budget(context_window=window, generation_reserve=args.reserve)
    fixed = args.system + args.tools
    headroom = budget.headroom({"system": args.system, "tools": args.tools})
    projection = project_creep(
        context_window=window,
        fixed=fixed,
        rag_per_turn=args.rag,
        user_per_turn=args.user,
        reply_per_turn=args.reply,
    )
    until = {f"{t:.0%}": projection.turns_until(t) for t in (0.7, 0.8, 1.0)}
    if args.json:
        _emit_json(
            console,
            {
                "context_window": window,
                "fixed": fixed,
                "reserve": args.reserve,
                "available_for_rag_and_history": headroom,
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
    table.add_row("available for RAG + history", f"{headroom:,}")
    console.print(table)
    growth = Table(
        title=f"context creep: +{projection.per_turn:,.0f} tokens per turn "
        f"(RAG {args.rag} + user {args.user} + reply {args.reply})"
    )
    growth.add_column("threshold")
    growth.add_column("reached after turn", justify="right")
    for label, n in until.items():
        growth.add_row(label, "never" if n is None else str(n))
    console.print(growth)
    return EXIT_OK


# --------------------------------------------------------------------------------------------- kv


def _kv(args: argparse.Namespace, console: Console) -> int:
    custom = [args.layers, args.kv_heads, args.head_dim]
    if any(v is not None for v in custom):
        if args.preset or None in custom:
            Console(stderr=True).print(
                "[red]give --layers, --kv-heads and --head-dim together, without --preset[/]"
            )
            return EXIT_USAGE
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


def _models(args: argparse.Namespace, console: Console) -> int:
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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


# ----------------------------------------------------------------------------------------- replay


def _replay(args: argparse.Namespace, console: Console) -> int:
    transcript = load_transcript(args.transcript)
    counter = TokenCounter(args.model or transcript.model or "gpt-4o")
    budget = Budget(context_window=args.budget, generation_reserve=args.reserve)
    options: dict[str, Any] = {}
    if args.strategy in ("recall", "layered") and args.embedder == "none":
        options["embedder"] = None
    store = None
    if args.store:
        from windowkeeper.stores._sqlite import SQLiteStore

        store = SQLiteStore(args.store)
        if store.count():
            raise InvalidConfigError(
                f"--store must be a new or empty file; {args.store!r} already holds "
                f"{store.count()} units"
            )
    memory = build_memory(args.strategy, counter, store=store, **options)

    def settle(m: Any) -> None:
        flush = getattr(m, "flush", None)  # summarise what is due and index what is stored, now
        if args.settle and callable(flush):
            flush(timeout=300) if args.strategy in ("summary", "layered") else flush()

    table = Table(
        title=f"replay · {args.strategy} · {counter.profile.name} · window {args.budget:,}"
    )
    for col in ("turn", "prompt", "naive", "util", "level", *PROMPT_ZONES, "view"):
        table.add_column(col, justify="right" if col not in ("level", "view") else "left")

    def row(t: ReplayTurn) -> None:
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

    summary = ""
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
        keeper = getattr(memory, "keeper", None)
        if keeper is not None and args.finish > 0:
            flush = getattr(memory, "flush", None)
            if callable(flush):
                flush(timeout=args.finish)
        if keeper is not None:
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
        console.print(f"chart written to {args.plot}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------ clone


def _clone(args: argparse.Namespace, console: Console) -> int:
    from windowkeeper._cloning import clone_conversation

    transcript = load_transcript(args.transcript)
    counter = TokenCounter(args.model or transcript.model or "gpt-4o")
    conversation = [m for m in transcript.messages if m.zone_hint != "rag"]
    summary = None
    if args.store:
        from windowkeeper.stores._sqlite import SQLiteStore

        if not Path(args.store).is_file():
            raise FileNotFoundError(f"--store {args.store!r} does not exist")
        with SQLiteStore(args.store) as store:
            record = store.latest_summary(args.session)
        from windowkeeper.memory._keeper import render_levels

        if record is None:
            Console(stderr=True).print(
                f"[yellow]note:[/] {args.store} holds no summary for session {args.session!r} yet "
                "(replay --finish SECONDS makes one); the clone has no facts section",
                highlight=False,
            )
        summary = render_levels(record.levels) if record is not None else ""
    artifact = clone_conversation(
        conversation, counter=counter, max_tokens=args.max_tokens, summary=summary
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(artifact.to_json(), encoding="utf-8")
    if args.json:
        _emit_json(console, artifact.to_dict())
        return EXIT_OK
    console.print(artifact.render(), markup=False, highlight=False)
    console.print(
        f"\n[dim]{counter.count(artifact.render()):,} tokens (budget {args.max_tokens:,}) from "
        f"{artifact.source['tokens']:,} tokens in {artifact.source['units']} turns; "
        f"{len(artifact.snippets)} verbatim snippets, all present[/]"
        + (f"; written to {args.out}" if args.out else "")
    )
    return EXIT_OK
