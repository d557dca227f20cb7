"""The accounting commands: count, audit, plan, kv and models."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from windowkeeper._budget import LEVELS, PROMPT_ZONES, RESERVE_CAP, Budget, default_reserve
from windowkeeper._profiles import default_registry
from windowkeeper._transcript import audit_transcript
from windowkeeper.cli._args import (
    EXIT_FAIL_ON,
    EXIT_OK,
    EXIT_USAGE,
    PLAN_WINDOW,
    _CliError,
)
from windowkeeper.cli._output import (
    _LEVEL_STYLE,
    _check_plot,
    _emit_json,
    _label,
    _load,
    _read_text,
    _warn,
)
from windowkeeper.planning._creep import project_creep
from windowkeeper.planning._kv import KV_PRESETS, KVSpec, format_bytes, kv_cache_size
from windowkeeper.tokens._breakdown import breakdown
from windowkeeper.tokens._counter import TokenCounter
from windowkeeper.tokens._encodings import ENCODINGS, load_encoding

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
        reserve = default_reserve(profile)
        reserve_from = (
            f"the reserve ({reserve:,}: {profile.name}'s output cap, at most {RESERVE_CAP:,})"
        )
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
