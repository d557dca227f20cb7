"""Per-turn cost of each memory: add a turn + assemble a request, at 100, 1,000 and 10,000 units.

Run: `uv run python bench/bench_memory.py [--sizes 100 1000 10000] [--turns 200]`.

For each strategy the history is pre-loaded into a store (with persisted vectors and a committed
summary, as a long-running session would have them), then `--turns` further turns are timed: each is
`assemble(...)` with the memory, then `memory.add(turn)`. The table reports the median and p99 per
turn and the ratio of the median at the largest size to the median at the smallest (goal ≤ 1.5×).
Recall uses the embedded MiniLM for the timed turns; pre-loaded history gets random unit vectors (the
search cost does not depend on their values). Summaries use an instant stand-in summariser: the real
one runs off the request path, which `bench/bench_summary.py` measures.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from windowkeeper import Budget, Message, TokenCounter  # noqa: E402
from windowkeeper._assembler import Chunk, ContextAssembler  # noqa: E402
from windowkeeper._replay import build_memory  # noqa: E402
from windowkeeper._units import Unit  # noqa: E402
from windowkeeper.stores import MemoryStore, SummaryRecord  # noqa: E402

WORDS = [
    "order",
    "refund",
    "kettle",
    "shipping",
    "parcel",
    "invoice",
    "address",
    "warranty",
    "battery",
    "screen",
    "laptop",
    "phone",
    "delivery",
    "courier",
    "return",
    "label",
    "payment",
    "card",
    "account",
    "password",
    "email",
    "city",
    "weather",
    "flight",
    "hotel",
    "booking",
    "train",
    "ticket",
    "seat",
    "meal",
    "allergy",
    "doctor",
    "appointment",
    "project",
    "deadline",
    "budget",
    "report",
    "meeting",
    "client",
    "contract",
    "invoice",
    "tax",
    "holiday",
    "garden",
    "recipe",
    "pasta",
    "coffee",
    "bike",
    "repair",
    "split",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + f" #{rng.randint(1000, 99999)}."


def turn(rng: random.Random, i: int) -> list[Message]:
    return [
        Message(
            role="user",
            content=sentence(rng, 14),
            metadata={"timestamp": f"2026-01-{1 + i % 28:02d}"},
        ),
        Message(role="assistant", content=sentence(rng, 40)),
    ]


def summarizer(previous: str, units: Sequence[Unit]) -> str:
    return f"Covered {units[-1].index + 1} turns. Facts: orders, refunds, shipping."


def make(strategy: str, size: int, counter: TokenCounter, rng: random.Random):  # type: ignore[no-untyped-def]
    store = MemoryStore()
    options: dict[str, object] = {}
    if strategy in ("summary", "layered"):
        options["summarizer"] = summarizer
    if strategy == "recall-bm25":
        options["embedder"] = None
    units = []
    for i in range(size):
        msgs = turn(rng, i)
        unit = Unit(
            index=i,
            messages=tuple(msgs),
            session_id="default",
            timestamp=msgs[0].metadata["timestamp"],
        )
        store.append(unit)
        units.append(unit)
    if strategy in ("recall", "layered"):
        from windowkeeper.local._embedder import MiniLMEmbedder

        model_id = MiniLMEmbedder().model_id
        vecs = np.random.default_rng(1).standard_normal((size, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        store.save_vectors("default", model_id, [(i, v.tobytes()) for i, v in enumerate(vecs)])
    if strategy in ("summary", "layered") and size > 8:
        store.save_summary(
            SummaryRecord(
                session_id="default",
                version=1,
                covers=size - 8,
                levels=(summarizer("", units[: size - 8]),),
            )
        )
    name = "recall" if strategy == "recall-bm25" else strategy
    return build_memory(name, counter, store=store, **options)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument(
        "--strategies", nargs="+", default=["window", "recall-bm25", "recall", "summary", "layered"]
    )
    args = parser.parse_args()
    counter = TokenCounter("gpt-4o")
    budget = Budget(context_window=16_000, generation_reserve=1_000, zone_limits={"history": 6_000})
    assembler = ContextAssembler(counter, budget)
    system = "You are a helpful assistant. " * 20
    print(
        f"| strategy | {' | '.join(f'{s:,} units: median / p99 ms' for s in args.sizes)} "
        f"| ratio {args.sizes[-1]:,} / {args.sizes[0]:,} |"
    )
    print("|---|" + "---|" * len(args.sizes) + "---|")
    for strategy in args.strategies:
        medians = []
        cells = []
        for size in args.sizes:
            rng = random.Random(size)
            memory = make(strategy, size, counter, rng)
            times = []
            for i in range(args.turns + 5):
                msgs = turn(rng, size + i)
                t0 = time.perf_counter()
                out = assembler.assemble(
                    msgs[0],
                    system=system,
                    memory=memory,
                    chunks=[Chunk(text=sentence(rng, 60), score=0.5)],
                )
                memory.add([out.messages[-1], msgs[1]])
                dt = time.perf_counter() - t0
                if i >= 5:  # warm-up: model load, first counts
                    times.append(dt * 1000)
            close = getattr(memory, "close", None)
            if callable(close):
                close()
            times.sort()
            med = statistics.median(times)
            p99 = times[int(0.99 * (len(times) - 1))]
            medians.append(med)
            cells.append(f"{med:.2f} / {p99:.2f}")
        print(f"| {strategy} | {' | '.join(cells)} | {medians[-1] / medians[0]:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
