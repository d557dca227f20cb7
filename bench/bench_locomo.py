"""LoCoMo evidence recall of turn recall at a history-token budget, against recency and single retrievers.

Run: `uv run python bench/bench_locomo.py [--data PATH] [--quick] [--budgets 500,1000,2000,4000]`.

Each LoCoMo conversation (10 conversations, 5,882 turns) is replayed into a memory, one unit per
dialogue turn: a user message named after the speaker, its text plus " [shares a photo: caption]"
when the turn shares an image, timestamped with its session's date. Then, for every question, the
memory builds its view of the whole conversation for that question within each budget (recent units
and the recalled block together, counted exactly with the cl100k encoding), and we measure evidence
recall: the share of the question's evidence turns present verbatim in the view. Neither answers nor
evidence are looked at by any method.

LoCoMo is CC BY-NC 4.0: it is read from ../shared/data/locomo10.json (relative to the repository
root) and never copied into the repository. Embeddings of its turns and questions are cached in
out/locomo_minilm_int8.npz (gitignored); delete it to recompute from scratch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import overrides

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo10.json"
CACHE = ROOT / "out" / "locomo_minilm_int8.npz"
NO_MODEL = {"recency", "bm25", "bm25+neighbours"}
"""The methods that run without an embedder."""
METHODS = {
    "recency": "WindowMemory: the newest turns that fit",
    "bm25": "TurnRecall(embedder=None), neighbours off: BM25 alone",
    "dense": "TurnRecall, lexical_weight=0, neighbours off: MiniLM alone",
    "rrf": "TurnRecall, fusion='rrf' (k=60, weights 1:1), neighbours off: the NOTES method",
    "fusion": "TurnRecall, score fusion 0.4/0.6, neighbours off",
    "bm25+neighbours": "TurnRecall(embedder=None) with its defaults: what you get without the model",
    "hybrid": "TurnRecall with its defaults (score fusion + neighbours, context 0.15)",
}
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}

NOTES_TABLE = {  # ../shared/NOTES.md "LoCoMo calibration" (rank order, "speaker: text", recall tokens only)
    "recency window": (1.4, 4.5, 9.3, 19.4),
    "BM25 over single turns": (59.9, 65.9, 70.2, 76.1),
    "MiniLM int8 dense": (51.7, 62.3, 72.2, 83.1),
    "BM25 + dense, RRF": (62.0, 73.2, 80.7, 86.9),
}


@dataclass
class Conversation:
    sample_id: str
    turns: list[tuple[str, str, str, str]]  # (dia_id, speaker, text, session date)
    questions: list[tuple[str, int, list[str]]]  # (question, category, evidence dia_ids)


def turn_text(turn: dict[str, Any]) -> str:
    text = str(turn.get("text", ""))
    caption = turn.get("blip_caption")
    return f"{text} [shares a photo: {caption}]" if caption else text


def load_locomo(path: Path) -> list[Conversation]:
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for sample in data:
        conv = sample["conversation"]
        sessions = sorted(
            (int(k.split("_")[1]) for k in conv if re.fullmatch(r"session_\d+", k)),
        )
        turns = []
        for n in sessions:
            date = conv.get(f"session_{n}_date_time", "")
            for t in conv[f"session_{n}"]:
                turns.append((t["dia_id"], t["speaker"], turn_text(t), date))
        known = {t[0] for t in turns}
        questions = []
        for qa in sample["qa"]:
            # nine evidence strings are malformed ("D:11:26", "D8:6; D9:17"): normalise, drop unknown ids
            evidence = [
                e
                for s in qa.get("evidence", [])
                for e in re.findall(r"D\d+:\d+", str(s).replace("D:", "D"))
            ]
            evidence = list(dict.fromkeys(e for e in evidence if e in known))
            if evidence:
                questions.append((str(qa["question"]), int(qa["category"]), evidence))
        out.append(
            Conversation(
                sample_id=str(sample.get("sample_id", len(out))), turns=turns, questions=questions
            )
        )
    return out


class CachedEmbedder:
    """The MiniLM embedder behind a file cache keyed by the text's sha1 (same model id and vectors)."""

    def __init__(self, path: Path) -> None:
        from windowkeeper.local._embedder import MiniLMEmbedder

        self.inner = MiniLMEmbedder(threads=2)
        self.model_id = self.inner.model_id
        self.dimension = self.inner.dimension
        self.path = path
        self.cache: dict[str, np.ndarray] = {}
        self.computed = 0
        self.seconds = 0.0
        if path.exists():
            with np.load(path) as data:
                if str(data["model_id"]) == self.model_id:
                    self.cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        missing = list(
            dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self.cache)
        )
        if missing:
            start = time.perf_counter()
            for text, vec in zip(missing, self.inner.embed(missing), strict=True):
                self.cache[self.key(text)] = vec
            self.seconds += time.perf_counter() - start
            self.computed += len(missing)
        return (
            np.stack([self.cache[k] for k in keys])
            if keys
            else np.empty((0, self.dimension), np.float32)
        )

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.cache)
        np.savez(
            self.path,
            model_id=np.array(self.model_id),
            keys=np.array(keys),
            vectors=np.stack([self.cache[k] for k in keys]).astype(np.float32),
        )


def replay(memory: Any, conv: Conversation) -> list[str]:
    """Add every turn as one unit; return the dia_id of each unit index."""
    from windowkeeper import Message

    for _dia, speaker, text, date in conv.turns:
        memory.add([Message(role="user", name=speaker, content=text, metadata={"timestamp": date})])
    if hasattr(memory, "flush"):
        memory.flush()
    return [t[0] for t in conv.turns]


@dataclass
class Tally:
    hits: dict[
        tuple[str, int, int], list[float]
    ]  # (method, budget, category) -> per-question recall
    tokens: dict[tuple[str, int], list[int]]
    seconds: dict[str, float]


def evaluate(
    convs: list[Conversation],
    methods: dict[str, Callable[[], Any]],
    budgets: Sequence[int],
    counter: Any,
) -> Tally:
    tally = Tally(hits=defaultdict(list), tokens=defaultdict(list), seconds=defaultdict(float))
    for conv in convs:
        for name, make in methods.items():
            memory = make()
            dia = replay(memory, conv)
            start = time.perf_counter()
            for question, category, evidence in conv.questions:
                for budget in budgets:
                    view = memory.view(question, budget=budget)
                    shown = {dia[u.index] for u in (*view.recent, *view.recalled)}
                    tally.hits[(name, budget, category)].append(
                        sum(e in shown for e in evidence) / len(evidence)
                    )
                    tally.tokens[(name, budget)].append(view.tokens)
            tally.seconds[name] += time.perf_counter() - start
            if hasattr(memory, "close"):
                memory.close()
    return tally


def recall_of(tally: Tally, name: str, budget: int, categories: Sequence[int]) -> tuple[float, int]:
    values = [v for c in categories for v in tally.hits.get((name, budget, c), [])]
    return (100 * statistics.fmean(values) if values else float("nan")), len(values)


def print_tables(tally: Tally, methods: Sequence[str], budgets: Sequence[int]) -> None:
    all_cats = sorted({c for (_, _, c) in tally.hits})
    n_all = recall_of(tally, methods[0], budgets[0], all_cats)[1]
    n_14 = recall_of(tally, methods[0], budgets[0], [c for c in all_cats if c != 5])[1]
    head = " | ".join(f"{b:,} tok" for b in budgets)
    print(f"\n### Evidence recall, all {n_all:,} questions with evidence (as in NOTES)\n")
    print(f"| method | {head} |")
    print("|---|" + "---:|" * len(budgets))
    for name in methods:
        cells = " | ".join(f"{recall_of(tally, name, b, all_cats)[0]:.1f} %" for b in budgets)
        print(f"| {name} | {cells} |")
    print(f"\n### Evidence recall, categories 1–4 ({n_14:,} questions)\n")
    print(f"| method | {head} |")
    print("|---|" + "---:|" * len(budgets))
    for name in methods:
        cells = " | ".join(
            f"{recall_of(tally, name, b, [c for c in all_cats if c != 5])[0]:.1f} %"
            for b in budgets
        )
        print(f"| {name} | {cells} |")
    print("\n### Per category (evidence recall)\n")
    print("| method | category | questions | " + head + " |")
    print("|---|---|---:|" + "---:|" * len(budgets))
    for name in methods:
        for c in all_cats:
            n = recall_of(tally, name, budgets[0], [c])[1]
            cells = " | ".join(f"{recall_of(tally, name, b, [c])[0]:.1f} %" for b in budgets)
            print(f"| {name} | {c} {CATEGORIES.get(c, '?')} | {n} | {cells} |")
    print("\n### Mean tokens of the view (recent + recalled block, exact)\n")
    print(f"| method | {head} |")
    print("|---|" + "---:|" * len(budgets))
    for name in methods:
        cells = " | ".join(f"{statistics.fmean(tally.tokens[(name, b)]):,.0f}" for b in budgets)
        print(f"| {name} | {cells} |")
    if tuple(budgets) == (500, 1000, 2000, 4000):
        print("\n### NOTES calibration (rank order, recall tokens only, no recent units)\n")
        print(f"| method | {head} |")
        print("|---|" + "---:|" * len(budgets))
        for name, row in NOTES_TABLE.items():
            print(f"| {name} | " + " | ".join(f"{v:.1f} %" for v in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="path of locomo10.json")
    parser.add_argument("--quick", action="store_true", help="first 2 conversations only")
    parser.add_argument("--budgets", default="500,1000,2000,4000")
    parser.add_argument(
        "--model", default="gpt-4", help="counts with this model's encoding (cl100k)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {', '.join(METHODS)}",
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="embedding cache file")
    parser.add_argument("--recent-units", type=int, default=4)
    parser.add_argument(
        "--conversations",
        default="",
        help="1-based inclusive range of conversations, e.g. 1-5 (tuning) or 6-10 (held out)",
    )
    parser.add_argument(
        "--variant",
        default="",
        help="RecallSettings overrides, e.g. speaker_weight=0.2,context_weight=0.1: adds "
        "'hybrid*' and 'bm25+neighbours*' (the defaults with them), run beside the defaults",
    )
    args = parser.parse_args()

    if not args.data.exists():
        print(
            f"LoCoMo not found at {args.data}: nothing to measure. Pass --data PATH to locomo10.json "
            "(CC BY-NC 4.0, snap-research/LoCoMo; not shipped with windowkeeper)."
        )
        return
    from windowkeeper import TokenCounter
    from windowkeeper.memory import WindowMemory
    from windowkeeper.memory._recall import RecallSettings, TurnRecall

    budgets = [int(b) for b in args.budgets.split(",")]
    convs = load_locomo(args.data)
    if args.quick:
        convs = convs[:2]
    if args.conversations:
        first, _, last = args.conversations.partition("-")
        convs = convs[int(first) - 1 : int(last or first)]
    variant = overrides(args.variant)
    counter = TokenCounter(args.model)
    wanted = args.methods.split(",")
    unknown = [m for m in wanted if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if variant:
        wanted += [f"{m}*" for m in ("hybrid", "bm25+neighbours") if m in wanted]
    embedder = CachedEmbedder(args.cache) if {m.rstrip("*") for m in wanted} - NO_MODEL else None
    if embedder is not None:  # embed everything once, in batches (the replay then hits the cache)
        texts = [t for c in convs for (_, s, x, _) in c.turns for t in (f"{s}: {x}",)]
        queries = [q for c in convs for q, _, _ in c.questions]
        embedder.embed(texts + queries)
        embedder.save()

    recent = args.recent_units
    plain = {"neighbor_weight": 0.0}

    def recall(emb: Any, **settings: Any) -> Callable[[], Any]:
        return lambda: TurnRecall(
            counter, embedder=emb, recent_units=recent, settings=RecallSettings(**settings)
        )

    factories: dict[str, Callable[[], Any]] = {
        "recency": lambda: WindowMemory(counter),
        "bm25": recall(None, **plain),
        "dense": recall(embedder, lexical_weight=0.0, **plain),
        "rrf": recall(embedder, fusion="rrf", lexical_weight=1.0, dense_weight=1.0, **plain),
        "fusion": recall(embedder, **plain),
        "bm25+neighbours": recall(None),
        "hybrid": recall(embedder),
        "bm25+neighbours*": recall(None, **variant),
        "hybrid*": recall(embedder, **variant),
    }
    methods = {name: factories[name] for name in wanted}
    start = time.perf_counter()
    tally = evaluate(convs, methods, budgets, counter)
    if embedder is not None:
        embedder.save()
    n_turns = sum(len(c.turns) for c in convs)
    print(
        f"LoCoMo: {len(convs)} conversations, {n_turns:,} turns, "
        f"{sum(len(c.questions) for c in convs):,} questions with evidence; counted with "
        f"{counter.encoder.name}; TurnRecall(recent_units={recent}), default RecallSettings"
    )
    if embedder is not None:
        where = args.cache.relative_to(ROOT) if args.cache.is_relative_to(ROOT) else args.cache
        print(
            f"embeddings: {embedder.computed:,} computed this run ({embedder.seconds:.1f} s), "
            f"{len(embedder.cache):,} cached in {where}"
        )
    described = {
        m: METHODS[m.rstrip("*")] + (f", with {args.variant}" if m.endswith("*") else "")
        for m in methods
    }
    print("\nmethods: " + "; ".join(f"**{m}** = {d}" for m, d in described.items()))
    print_tables(tally, list(methods), budgets)
    per_view = {
        name: 1e3
        * tally.seconds[name]
        / max(1, len(tally.tokens[(name, budgets[0])]) * len(budgets))
        for name in methods
    }
    print(
        "\nview time per question and budget: "
        + ", ".join(f"{n} {t:.2f} ms" for n, t in per_view.items())
        + f"; total {time.perf_counter() - start:.0f} s; Python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
