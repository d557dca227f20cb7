"""The command line's flags: exit codes, defaults, flag value types and the argument parser."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from windowkeeper._budget import LEVELS, RESERVE_CAP
from windowkeeper._replay import STRATEGIES
from windowkeeper.planning._kv import DTYPE_BYTES, KV_PRESETS
from windowkeeper.tokens._encodings import ENCODINGS

EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
PLAN_DEFAULTS = {"system": 1_200, "tools": 600, "rag": 800, "user": 60, "reply": 350}
"""``plan``'s defaults: the creep example of the docs (1,800 fixed tokens, +1,210 per turn)."""
PLAN_WINDOW, PLAN_RESERVE = 128_000, 1_500
SETTLE_TIMEOUT = 300.0
"""Seconds ``replay --settle`` waits for each turn's summary before it goes on without it."""


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
        help=f"generation reserve (default: the model's output cap, at most {RESERVE_CAP})",
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
        "--summarizer",
        choices=["notes", "smollm2"],
        default="notes",
        help="summariser of the summary and layered strategies: fact notes (default: extractive, "
        "no model) or the local SmolLM2 model (opt-in; seconds per summary)",
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
        "instead of summarising the transcript",
    )
    clone.add_argument(
        "--summarizer",
        choices=["notes", "smollm2"],
        default="notes",
        help="summariser of the facts when there is no --store: fact notes (default) or the "
        "local SmolLM2 model (opt-in)",
    )
    clone.add_argument(
        "--session",
        type=_name,
        default="default",
        help="session in --store (default 'default')",
    )
    clone.add_argument("--json", action="store_true", help="print the artifact as JSON")
    return parser
