"""Turn-recall latency with the embedded embedder, and vector search at 100,000 stored units.

Run: `uv run python bench/bench_recall.py [--turns 200] [--rows 100000] [--real]`.

1. Per-turn latency: a session with `--history` stored units (their vectors loaded), then `--turns`
   turns of `view(query, budget=2000)` followed by `add(turn)`, with the real MiniLM embedder: once
   with the default background embedding and once with `RecallSettings(background=False)`; p50/p99.
2. Vector search at `--rows` rows of random unit vectors (384-d): `VectorIndex.search` against the
   numpy brute-force anchor (`matrix @ q` + `argpartition`), timed in the same run, with the top-k
   agreement of the index against the exact answer; and the full hybrid `RecallIndex.search` over
   as many synthetic turns.
3. With `--real`: the same agreement on real MiniLM vectors: up to `--rows` sentences from NQ-open
   passages, LoCoMo turns and observations (../shared/data, read by path) and docstring paragraphs of
   the installed Python packages, embedded once and cached in out/recall_corpus.npz (slow the first
   time: about 10 minutes on 2 cores); queries are the NQ and LoCoMo questions.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import random
import re
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import interleaved, rotated

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
CORPUS_CACHE = ROOT / "out" / "recall_corpus.npz"

TOPICS = [
    ("the Lisbon offsite", "book the venue", "Friday"),
    ("the billing migration", "freeze the old invoices", "the end of the sprint"),
    ("Ann's birthday", "order the cake", "Saturday morning"),
    ("the kitchen renovation", "pick the tiles", "next week"),
    ("the ML reading group", "read the attention paper", "Thursday"),
    ("the marathon training", "run 30 km", "Sunday"),
    ("the tax return", "collect the receipts", "April"),
    ("the Rust rewrite", "port the parser first", "the next release"),
    ("the garden", "plant the tomatoes", "after the last frost"),
    ("the Tokyo trip", "reserve the ryokan", "two weeks before"),
]


def synthetic_turn(i: int, rng: random.Random) -> tuple[str, str]:
    topic, action, when = TOPICS[rng.randrange(len(TOPICS))]
    user = rng.choice(
        [
            f"Can you remind me what we decided about {topic} (item {i})? Was it who will {action}?",
            f"Quick question {i} on {topic}: should we still {action} before {when}?",
            f"I talked to the team about {topic} today (note {i}). What's the next step?",
        ]
    )
    reply = (
        f"For {topic}, we agreed to {action} by {when}. Keep a short list of open points and "
        f"check it again after the next update; ping me if anything changes (ref {i})."
    )
    return user, reply


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def turn_latency(turns: int, history: int) -> None:
    from windowkeeper import Message, TokenCounter
    from windowkeeper._units import Unit
    from windowkeeper.local._embedder import MiniLMEmbedder
    from windowkeeper.memory._recall import RecallSettings, TurnRecall
    from windowkeeper.stores._memory import MemoryStore

    counter = TokenCounter("gpt-4o")
    embedder = MiniLMEmbedder()
    model_ms: list[float] = []  # the anchor: MiniLM's own time for each query, same run
    all_model_ms: list[float] = []
    plain_query = embedder.embed_query

    def timed_query(text: str) -> np.ndarray:
        start = time.perf_counter()
        vector = plain_query(text)
        model_ms.append((time.perf_counter() - start) * 1e3)
        return vector

    embedder.embed_query = timed_query  # type: ignore[method-assign]
    rng = random.Random(1)
    past = [synthetic_turn(i, rng) for i in range(history)]
    future = [synthetic_turn(history + i, rng) for i in range(turns)]
    embedder.embed(["warm up"])
    modes = {
        "background embedding, the user takes a moment to reply (default)": (
            RecallSettings(),
            True,
        ),
        "background embedding, turns back to back": (RecallSettings(), False),
        "synchronous embedding (`background=False`)": (RecallSettings(background=False), False),
    }
    memories = {}
    for label, (settings, pause) in modes.items():
        store = MemoryStore()
        for i, (u, a) in enumerate(past):
            store.append(
                Unit(
                    index=i,
                    session_id="default",
                    messages=(
                        Message(role="user", content=u),
                        Message(role="assistant", content=a),
                    ),
                )
            )
        TurnRecall(counter, store=store, embedder=embedder).close()  # embeds and saves the history
        memories[label] = (
            TurnRecall(counter, store=store, embedder=embedder, settings=settings),
            pause,
        )
    times: dict[str, tuple[list[float], list[float], list[float], list[float]]] = {
        m: ([], [], [], []) for m in modes
    }
    for n, (user, reply) in enumerate(future):
        for label in rotated(list(modes), n):  # take turns: drift hits all
            memory, pause = memories[label]
            if pause:  # a user who pauses: no other mode's background work running either
                for other, _ in memories.values():
                    other.flush()
            model_ms.clear()
            start = time.perf_counter()
            memory.view(user, budget=2_000)
            middle = time.perf_counter()
            memory.add(
                [Message(role="user", content=user), Message(role="assistant", content=reply)]
            )
            end = time.perf_counter()
            if pause:
                memory.flush()  # the worker finishes while the user reads and types
            view_ms, add_ms, turn_ms, own_ms = times[label]
            view_ms.append((middle - start) * 1e3)
            add_ms.append((end - middle) * 1e3)
            turn_ms.append((end - start) * 1e3)
            own_ms.append((middle - start) * 1e3 - sum(model_ms[:1]))  # the query's embedding
            all_model_ms.extend(model_ms[:1])
    for memory, _ in memories.values():
        memory.close()
    print(f"## Per-turn latency: view(budget=2,000) + add, {turns} turns after {history} stored\n")
    print(
        "| mode | view p50 | view p99 | add p50 | add p99 | view + add p50 | view + add p99 "
        "| view without the query's MiniLM run, p50 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, (v, a, t, o) in times.items():
        print(
            f"| {label} | {statistics.median(v):.1f} ms | {percentile(v, 99):.1f} ms | "
            f"{statistics.median(a):.1f} ms | {percentile(a, 99):.1f} ms | "
            f"{statistics.median(t):.1f} ms | {percentile(t, 99):.1f} ms | "
            f"{statistics.median(o):.1f} ms |"
        )
    print(
        f"\nMiniLM's own time for the query of a turn (the anchor, same run): "
        f"p50 {statistics.median(all_model_ms):.1f} ms, p99 {percentile(all_model_ms, 99):.1f} ms"
    )


def embed_threads(repeat: int) -> None:
    """MiniLM time per text by onnxruntime threads (spinning or sleeping), fused graph or not."""
    from windowkeeper.local._embedder import MiniLMEmbedder

    rng = random.Random(5)
    turns = [synthetic_turn(i, rng) for i in range(repeat)]
    queries = [u for u, _ in turns]
    units = [f"user: {u}\nassistant: {a}" for u, a in turns]
    configs = {
        "1 thread": MiniLMEmbedder(threads=1, spin=False),
        "2 threads, sleeping": MiniLMEmbedder(threads=2, spin=False),
        "2 threads, spinning (the default)": MiniLMEmbedder(threads=2),
        "2 threads, spinning, the graph as shipped (`fuse=False`)": MiniLMEmbedder(
            threads=2, fuse=False
        ),
    }
    for e in configs.values():
        e.embed(["warm up"])
    fns: list[Callable[[], object]] = [
        fn
        for e in configs.values()
        for fn in (
            lambda e=e: [e.embed([q]) for q in queries],
            lambda e=e: [e.embed([u]) for u in units],
        )
    ]
    measured = interleaved(fns, 3)  # per config: its queries, then its turns
    cells = {
        label: [1e3 * statistics.median(x) / repeat for x in (q_times, u_times)]
        for label, q_times, u_times in zip(configs, measured[0::2], measured[1::2], strict=True)
    }
    from windowkeeper import TokenCounter

    counter = TokenCounter("gpt-4o")
    q_tok = statistics.fmean(counter.count(q) for q in queries)
    u_tok = statistics.fmean(counter.count(u) for u in units)
    print(f"\n## MiniLM time per text ({repeat} texts, nothing else running)\n")
    print(f"| path | one query (~{q_tok:.0f} tokens) | one turn (~{u_tok:.0f} tokens) |")
    print("|---|---:|---:|")
    for label, (q, u) in cells.items():
        print(f"| {label} | {q:.1f} ms | {u:.1f} ms |")


def exact_top(matrix: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = matrix @ q
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top])]


def agreement(index: object, matrix: np.ndarray, queries: np.ndarray, k: int) -> float:
    got = [{i for i, _ in index.search(q, k)} for q in queries]  # type: ignore[attr-defined]
    want = [set(exact_top(matrix, q, k).tolist()) for q in queries]
    return statistics.fmean(len(g & w) / k for g, w in zip(got, want, strict=True))


def vector_search(rows: int, repeat: int) -> None:
    from windowkeeper.memory._vectors import VectorIndex

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((rows, 384)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    queries = rng.standard_normal((repeat, 384)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    near = matrix[rng.integers(0, rows, repeat)] + 0.05 * rng.standard_normal((repeat, 384)).astype(
        np.float32
    )
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    index = VectorIndex(384)
    index.add(list(range(rows)), matrix)
    index.search(queries[0], 5)  # builds the codes once
    exact = VectorIndex(384, exact_max_rows=rows)
    exact.add(list(range(rows)), matrix)
    t_anchor, t_ours, t_exact = interleaved(
        [
            lambda: [exact_top(matrix, q, 5) for q in queries],
            lambda: [index.search(q, 5) for q in queries],
            lambda: [exact.search(q, 5) for q in queries],
        ],
        5,
    )
    per = [statistics.median(t) / repeat * 1e3 for t in (t_anchor, t_ours, t_exact)]
    print(f"\n## Vector search, {rows:,} random unit vectors (384-d), top-5, {repeat} queries\n")
    print("| method | per query | anchor ÷ method |")
    print("|---|---:|---:|")
    print(
        f"| numpy brute force (`matrix @ q` + argpartition), the anchor | {per[0]:.2f} ms | 1.00× |"
    )
    print(
        f"| VectorIndex, exact mode (`exact_max_rows={rows}`) | {per[2]:.2f} ms | {per[0] / per[2]:.2f}× |"
    )
    print(
        f"| VectorIndex default (sign-bit prefilter + exact rescoring of {index.candidates}) | "
        f"{per[1]:.2f} ms | {per[0] / per[1]:.2f}× |"
    )
    print(
        "\nTop-k agreement of the default index with exact search (random vectors, worst case):\n"
    )
    print("| queries | top-5 | top-10 |")
    print("|---|---:|---:|")
    for name, qs in (
        ("random unit vectors", queries),
        ("a stored vector + noise (0.05/dim)", near),
    ):
        print(
            f"| {name} | {agreement(index, matrix, qs, 5):.1%} | {agreement(index, matrix, qs, 10):.1%} |"
        )


def hybrid_search(rows: int, repeat: int) -> None:
    from windowkeeper import Message
    from windowkeeper._units import Unit
    from windowkeeper.memory._recall import RecallIndex, RecallSettings
    from windowkeeper.memory._vectors import CallableEmbedder

    rng = np.random.default_rng(1)
    table = rng.standard_normal((rows + repeat + 10, 384)).astype(np.float32)
    lookup: dict[str, int] = {}

    def fake(texts: list[str]) -> np.ndarray:  # a random vector per distinct text
        return np.stack([table[lookup.setdefault(t, len(lookup))] for t in texts])

    embedder = CallableEmbedder(fake, model_id="random", dimension=384)  # type: ignore[arg-type]
    pyrng = random.Random(2)
    units = []
    for i in range(rows):
        user, reply = synthetic_turn(i, pyrng)
        units.append(
            Unit(
                index=i,
                session_id="default",
                messages=(
                    Message(role="user", content=user),
                    Message(role="assistant", content=reply),
                ),
            )
        )
    index = RecallIndex(embedder=embedder, settings=RecallSettings(background=False))
    start = time.perf_counter()
    index.load(units)
    load_s = time.perf_counter() - start
    queries = [synthetic_turn(rows + i, pyrng)[0] for i in range(repeat)]
    for q in queries:
        index.query_vector(q)  # embedding is not what this measures
    exclude = frozenset(range(rows - 4, rows))
    (times,) = interleaved(
        [lambda: [index.search(q, 250, exclude=exclude, context=units[-1]) for q in queries]], 5
    )
    print(
        f"\n## Hybrid RecallIndex.search over {rows:,} units (BM25 + vectors, fusion, neighbours), "
        f"k=250\n\n{statistics.median(times) / repeat * 1e3:.2f} ms per query (query embeddings "
        f"cached; building the index: {load_s:.1f} s)"
    )


# ------------------------------------------------------------------------- real corpus (--real)


def corpus_texts(limit: int) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    queries: list[str] = []
    nq = SHARED / "nq-open-oracle.jsonl.gz"
    if nq.exists():
        with gzip.open(nq, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                queries.append(row["question"])
                for ctx in row.get("ctxs", []):
                    texts.extend(s for s in re.split(r"(?<=[.!?])\s+", ctx["text"]) if len(s) > 30)
    locomo = SHARED / "locomo10.json"
    if locomo.exists():
        for sample in json.loads(locomo.read_text(encoding="utf-8")):
            queries.extend(str(q["question"]) for q in sample["qa"])
            for value in sample["conversation"].values():
                if isinstance(value, list):
                    texts.extend(f"{t['speaker']}: {t['text']}" for t in value)
            for obs in sample.get("observation", {}).values():
                for items in obs.values():
                    texts.extend(str(x[0]) for x in items if isinstance(x, list) and x)
    site = Path(sysconfig.get_paths()["purelib"])
    for path in sorted(site.rglob("*.py")):
        if len(texts) >= 3 * limit:
            break
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef | ast.Module):
                doc = ast.get_docstring(node)
                if doc:
                    texts.extend(
                        " ".join(p.split())
                        for p in doc.split("\n\n")
                        if 40 < len(p) < 600 and not p.lstrip().startswith(">>>")
                    )
    unique = list(dict.fromkeys(texts))
    random.Random(3).shuffle(unique)
    return unique[:limit], list(dict.fromkeys(queries))


def real_agreement(rows: int) -> None:
    from windowkeeper.local._embedder import MiniLMEmbedder
    from windowkeeper.memory._vectors import VectorIndex

    texts, queries = corpus_texts(rows)
    key = hashlib.sha1("\n".join(texts + queries).encode()).hexdigest()
    if CORPUS_CACHE.exists():
        with np.load(CORPUS_CACHE) as data:
            cached = str(data["key"]) == key
            if cached:
                matrix, qmatrix = data["matrix"], data["queries"]
    else:
        cached = False
    if not cached:
        embedder = MiniLMEmbedder(max_tokens=128, threads=2)
        start = time.perf_counter()
        matrix = np.concatenate(
            [embedder.embed(texts[i : i + 512]) for i in range(0, len(texts), 512)]
        )
        qmatrix = embedder.embed(queries)
        print(
            f"(embedded {len(texts) + len(queries):,} texts in {time.perf_counter() - start:.0f} s)"
        )
        CORPUS_CACHE.parent.mkdir(parents=True, exist_ok=True)
        np.savez(CORPUS_CACHE, key=np.array(key), matrix=matrix, queries=qmatrix)
    index = VectorIndex(384)
    index.add(list(range(len(matrix))), matrix)
    sample = qmatrix[
        np.random.default_rng(4).choice(len(qmatrix), min(1000, len(qmatrix)), replace=False)
    ]
    print(
        f"\n## Top-k agreement on real MiniLM vectors: {len(matrix):,} sentences (NQ passages, LoCoMo, "
        f"docstrings), {len(sample):,} real questions\n"
    )
    exact_times = []
    for q in sample[:100]:
        start = time.perf_counter()
        exact_top(matrix, q, 5)
        exact_times.append(time.perf_counter() - start)
    print("| candidates rescored | top-5 | top-10 | search per query | exact (anchor) ÷ search |")
    print("|---:|---:|---:|---:|---:|")
    anchor = statistics.median(exact_times)
    for candidates in (256, 512, 1024, 2048):
        index.candidates = candidates
        times = []
        for q in sample[:100]:
            start = time.perf_counter()
            index.search(q, 5)
            times.append(time.perf_counter() - start)
        per = statistics.median(times)
        a5 = agreement(index, matrix, sample, 5)
        a10 = agreement(index, matrix, sample, 10)
        print(
            f"| {candidates:,} | {a5:.1%} | {a10:.1%} | {per * 1e3:.2f} ms | {anchor / per:.2f}× |"
        )
    print(f"\nexact brute force (anchor), same run: {anchor * 1e3:.2f} ms per query")


def profile_queries(queries: int) -> None:
    """onnxruntime's per-kernel trace of ``queries`` query embeddings, written to a temp folder."""
    from windowkeeper.local._embedder import MiniLMEmbedder

    folder = tempfile.mkdtemp(prefix="windowkeeper-profile-")
    embedder = MiniLMEmbedder(profile_dir=folder)
    for i in range(queries):
        embedder.embed_query(f"what did Caroline say about the adoption agency in week {i}?")
    print(f"onnxruntime profile of {queries} queries: {embedder.end_profiling()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--history", type=int, default=500)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument(
        "--real", action="store_true", help="top-k agreement on real MiniLM vectors"
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-search", action="store_true", help="latency only")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile MiniLM's kernels on a few queries; the trace goes to a temporary folder",
    )
    args = parser.parse_args()
    if args.profile:
        profile_queries(args.queries)
        return
    if not args.skip_latency:
        turn_latency(args.turns, args.history)
        embed_threads(40)
    if not args.skip_search:
        vector_search(args.rows, args.queries)
        hybrid_search(args.rows, args.queries)
    if args.real:
        real_agreement(args.rows)
    print(f"\nPython {sys.version.split()[0]}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
