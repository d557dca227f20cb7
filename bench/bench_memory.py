"""Per-turn cost of each memory: add a turn + assemble a request, at 100, 1,000 and 10,000 units.

Run: `uv run python bench/bench_memory.py [--sizes 100 1000 10000] [--turns 200]`.

For each strategy the history is pre-loaded into a store (with persisted vectors and a committed
summary, as a long-running session would have them), then `--turns` further turns are timed: each is
`assemble(...)` with the memory, then `memory.add(turn)`. The table reports the median and p99 per
turn and the ratio of the median at the largest size to the median at the smallest (goal ≤ 1.5×).
Recall uses the embedded MiniLM for the timed turns; pre-loaded history gets random unit vectors (the
search cost does not depend on their values). Summaries use an instant stand-in summariser: the real
one runs off the request path, which `bench/bench_summary.py` measures.

Between two timed turns the memory's background work (embedding the new turn, a summary) is
allowed to finish, untimed: in an application that is when the model answers and the user reads
and types (`--back-to-back` times turns with no pause instead).

Text (`--text`): `locomo` (the default when ../shared/data/locomo10.json is present; read by path,
never copied) draws each turn's user and assistant messages from the 5,882 real LoCoMo utterances;
`synthetic` draws 14- and 40-word messages from a 50-word vocabulary, a stress case for BM25: every
query word is in about two thirds of all turns, so each search touches most of the index.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _common import rotated  # noqa: E402
from bench_locomo import DEFAULT_DATA as LOCOMO  # noqa: E402
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


DAY0 = date(2020, 1, 1)
UTTERANCES: list[str] = []  # real utterances when --text locomo


def load_utterances(path: Path) -> list[str]:
    import json

    out = []
    for sample in json.loads(path.read_text(encoding="utf-8")):
        for key, session in sample["conversation"].items():
            if key.startswith("session_") and isinstance(session, list):
                out.extend(str(t["text"]) for t in session if t.get("text"))
    return out


def sentence(rng: random.Random, n: int) -> str:
    if UTTERANCES:
        return " ".join(rng.choice(UTTERANCES) for _ in range(max(1, n // 20)))
    return " ".join(rng.choice(WORDS) for _ in range(n)) + f" #{rng.randint(1000, 99999)}."


def turn(rng: random.Random, i: int) -> list[Message]:
    return [
        Message(
            role="user",
            content=sentence(rng, 14),
            metadata={"timestamp": str(DAY0 + timedelta(days=i // 10))},  # a day every 10 turns
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


def settle(memory: object) -> None:
    """Wait for the background work the memory started itself (embeddings, a due summary)."""
    index = getattr(memory, "index", None)
    if index is not None:
        index.flush()
    keeper = getattr(memory, "keeper", None)
    if keeper is not None:
        keeper.flush()  # waits for what was requested; forces nothing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument(
        "--strategies", nargs="+", default=["window", "recall-bm25", "recall", "summary", "layered"]
    )
    parser.add_argument(
        "--text",
        choices=["locomo", "synthetic"],
        default="locomo" if LOCOMO.is_file() else "synthetic",
    )
    parser.add_argument("--data", type=Path, default=LOCOMO, help="path of locomo10.json")
    parser.add_argument("--back-to-back", action="store_true", help="no pause between turns")
    args = parser.parse_args()
    if args.text == "locomo":
        if not args.data.is_file():
            sys.exit(f"LoCoMo not found at {args.data}: pass --data PATH or --text synthetic")
        UTTERANCES.extend(load_utterances(args.data))
    print(
        f"text: {args.text}"
        + (
            f" ({len(UTTERANCES):,} LoCoMo utterances, {args.data})"
            if UTTERANCES
            else " (50 words)"
        )
        + f"; {'turns back to back' if args.back_to_back else 'background work settles between turns'}"
        + "\n"
    )
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
        # every size is live at once and the timed turns take turns between sizes, so drift and
        # noise from the rest of the machine fall on all of them alike
        rngs = {size: random.Random(size) for size in args.sizes}
        memories = {size: make(strategy, size, counter, rngs[size]) for size in args.sizes}
        times: dict[int, list[float]] = {size: [] for size in args.sizes}
        for i in range(args.turns + 5):
            for size in rotated(args.sizes, i):
                rng, memory = rngs[size], memories[size]
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
                    times[size].append(dt * 1000)
                if not args.back_to_back:  # the model answers, the user types: background settles
                    settle(memory)
        for memory in memories.values():
            close = getattr(memory, "close", None)
            if callable(close):
                close()
        medians = []
        cells = []
        for size in args.sizes:
            ordered = sorted(times[size])
            med = statistics.median(ordered)
            p99 = ordered[int(0.99 * (len(ordered) - 1))]
            medians.append(med)
            cells.append(f"{med:.2f} / {p99:.2f}")
        print(f"| {strategy} | {' | '.join(cells)} | {medians[-1] / medians[0]:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
