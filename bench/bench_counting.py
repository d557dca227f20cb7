"""Counting throughput against bare tiktoken, and incremental re-count against a full recount.

Run: `make bench` (or `uv run python bench/bench_counting.py [--shared ../shared/data]`).
Prints a markdown table of ratios measured in this run; the anchors are timed in the same process.
Corpus: prose = NQ-open gold passages (../shared/data/nq-open-oracle.jsonl.gz, MIT/CC BY-SA, read by
path), code = this Python's standard-library sources, JSON = seeded synthetic order records.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import sysconfig
import time
from pathlib import Path

from _common import interleaved

ROOT = Path(__file__).resolve().parent.parent


def prose_corpus(shared: Path, limit: int = 2_000) -> list[str]:
    path = shared / "nq-open-oracle.jsonl.gz"
    if not path.exists():
        sys.exit(f"missing {path}: pass --shared pointing at the shared data folder")
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            for ctx in row.get("ctxs", []):
                texts.append(f"{ctx.get('title', '')}\n{ctx['text']}")
            if len(texts) >= limit:
                break
    return texts[:limit]


def code_corpus(limit: int = 400) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:limit]
    return [f.read_text(encoding="utf-8", errors="replace")[:6_000] for f in files]


def json_corpus(n: int = 2_000) -> list[str]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        record = {
            "order_id": f"NW-{rng.randint(10000, 99999)}-{rng.randint(10, 99)}",
            "customer": {
                "email": f"user{i}@example.com",
                "tier": rng.choice(["gold", "silver", "basic"]),
            },
            "items": [
                {
                    "sku": f"SKU-{rng.randint(1000, 9999)}",
                    "qty": rng.randint(1, 4),
                    "price": round(rng.uniform(5, 900), 2),
                }
                for _ in range(rng.randint(1, 6))
            ],
            "events": [
                {
                    "ts": f"2026-03-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z",
                    "status": rng.choice(["packed", "shipped", "in_transit", "delivered"]),
                }
                for _ in range(rng.randint(2, 8))
            ],
        }
        out.append(json.dumps(record, indent=rng.choice([None, 2])))
    return out


def paired_ratio(anchor: list[float], ours: list[float]) -> float:
    """Median over rounds of anchor time ÷ our time, each pair measured back to back."""
    return statistics.median(a / o for a, o in zip(anchor, ours, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()

    from windowkeeper import Message, TokenCounter
    from windowkeeper.tokens._encodings import load_encoding

    counter = TokenCounter("gpt-4o")
    bare = load_encoding("o200k_base")._encoding  # the tiktoken.Encoding itself: the anchor
    corpora = {"prose": prose_corpus(args.shared), "json": json_corpus(), "code": code_corpus()}
    rows = []
    for name, texts in corpora.items():
        total = sum(len(bare.encode_ordinary(t)) for t in texts)
        assert total == sum(counter.count(t) for t in texts)
        t_bare, t_bare_ord, t_ours = interleaved(
            [
                lambda texts=texts: [len(bare.encode(t)) for t in texts],
                lambda texts=texts: [len(bare.encode_ordinary(t)) for t in texts],
                lambda texts=texts: [counter.count(t) for t in texts],
            ],
            args.repeat,
        )
        rows.append(
            (
                name,
                len(texts),
                total,
                total / statistics.median(t_ours),
                paired_ratio(t_bare, t_ours),
                paired_ratio(t_bare_ord, t_ours),
            )
        )

    print("## Counting throughput (o200k_base, one thread)\n")
    print(
        "| corpus | texts | tokens | ours, tokens/s | ours ÷ `encode` | ours ÷ `encode_ordinary` |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, total, tps, r1, r2 in rows:
        print(f"| {name} | {n:,} | {total:,} | {tps:,.0f} | {r1:.1%} | {r2:.1%} |")

    # ---- incremental re-count of a 10,000-message history
    prose = corpora["prose"]
    history = [
        Message(
            role="user" if i % 2 == 0 else "assistant",
            content=prose[i % len(prose)][: 200 + (i % 7) * 60],
        )
        for i in range(10_000)
    ]
    new = Message(role="user", content="One more question about my order NW-48213-77, please.")
    full_times, incr_times, bare_times = [], [], []
    for _ in range(args.repeat):
        fresh = TokenCounter("gpt-4o", cache_size=0)
        start = time.perf_counter()
        full = fresh.count_messages([*history, new])
        full_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        # the cookbook's loop with bare tiktoken, the usual way to recount
        n = 3
        for m in [*history, new]:
            n += 3 + len(bare.encode(m.role)) + len(bare.encode(m.text))
        bare_times.append(time.perf_counter() - start)
        warm = TokenCounter("gpt-4o")
        warm.count_messages(history)
        grown = [*history, new]
        start = time.perf_counter()
        again = warm.count_messages(grown)
        incr_times.append(time.perf_counter() - start)
        assert again == full == n
    t_full, t_incr, t_bare = min(full_times), min(incr_times), min(bare_times)
    print("\n## Incremental re-count: 10,000-message history plus one message\n")
    print("| method | time | speed-up of the cached re-count |")
    print("|---|---:|---:|")
    print(
        f"| full recount, windowkeeper uncached | {t_full * 1e3:.1f} ms | {t_full / t_incr:,.0f}× |"
    )
    print(
        f"| full recount, bare tiktoken (cookbook loop) | {t_bare * 1e3:.1f} ms | {t_bare / t_incr:,.0f}× |"
    )
    print(f"| re-count with the per-message cache | {t_incr * 1e3:.2f} ms | 1× |")
    print(f"\n{full:,} prompt tokens; best of {args.repeat} runs; Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
