"""RAG-chunk compression: the fast path against upstream LLMLingua, same model, same contexts.

Run: `uv run --frozen python bench/bench_llmlingua.py [--n 200] [--upstream-n 30] [--join-n 30]
[--rate 0.5]`.

Contexts: ten passages from `../shared/data/nq-open-oracle.jsonl.gz` (read by path; the script
says so and stops when it is absent): a question's gold passage at a random position among nine
other questions' gold passages that contain none of its answers (seeded). Every method gets the
same contexts, the question, and a rate of 0.5 (keep half the tokens), with the embedded
SmolLM2-135M-Instruct as the scorer on the CPU (bfloat16 where the CPU has it natively).

Methods, each in its own process (so peak memory is its own):

- `fast`: `ChunkCompressor(rate=0.5)`, windowkeeper's question-aware fast path.
- `chunks`: `ChunkCompressor(mode="chunks")`, question-aware ranking only, whole chunks kept.
- `upstream`: `UpstreamCompressor("longllmlingua")`: upstream's LongLLMLingua ranking picks the
  chunks, each compressed by upstream with the question as condition (per chunk in and out).
- `join`: what LlamaIndex's `LongLLMLinguaPostprocessor` does: upstream `compress_prompt` over all
  passages at once (`rank_method="longllmlingua"`, `condition_in_question="after_condition"`,
  `reorder_context="sort"`, `dynamic_context_compression_ratio=0.3`, `condition_compare=True`),
  one string out, split on blank lines.

Measures: compression ratio (gpt-4o tokens of the passages before / after, over all contexts);
answer survival (an answer string, case-insensitive, in what is sent); protected-span survival
(every span `find_spans` finds in the passages, verbatim in what is sent, for the passages
sent); seconds per 1,000 input tokens (gpt-4o tokens of the passages); peak RSS. Anchor, measured
in the `fast` process: one forward pass of the same model over 1,000 tokens.

Goals (issue #12): >= 2x, answer kept in >= 90 %, 100 % of protected spans, <= 2 s per 1,000 tokens
(token-level, 2 cores).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
NQ = ROOT.parent / "shared" / "data" / "nq-open-oracle.jsonl.gz"


def contexts(n: int, seed: int = 12) -> list[tuple[str, list[str], list[str]]]:
    """``n`` (question, answers, ten passages) with the gold passage at a random position."""
    with gzip.open(NQ, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    rng = random.Random(seed)
    out = []
    for i in rng.sample(range(len(rows)), n):
        gold, answers = rows[i]["ctxs"][0]["text"], rows[i]["answers"]
        others: list[str] = []
        while len(others) < 9:
            text = rows[rng.randrange(len(rows))]["ctxs"][0]["text"]
            if (
                text != gold
                and text not in others
                and not any(a.lower() in text.lower() for a in answers)
            ):
                others.append(text)
        at = rng.randrange(10)
        out.append((rows[i]["question"], answers, [*others[:at], gold, *others[at:]]))
    return out


def run_method(method: str, n: int, rate: float) -> dict[str, Any]:
    from windowkeeper import TokenCounter
    from windowkeeper_llmlingua import ChunkCompressor, find_spans, shared_scorer
    from windowkeeper_llmlingua._upstream import UpstreamCompressor, offline_prompt_compressor

    counter = TokenCounter("gpt-4o")
    cases = contexts(n)
    scorer = shared_scorer()
    scorer.load()
    anchor = None
    if method == "fast":  # one plain forward pass over 1,000 model tokens, best of 3
        import torch

        ids = torch.randint(100, 20_000, (1, 1_000))
        with torch.inference_mode():
            scorer.model(input_ids=ids)
            times = []
            for _ in range(3):
                t = time.perf_counter()
                scorer.model(input_ids=ids)
                times.append(time.perf_counter() - t)
        anchor = min(times)
    if method in ("fast", "chunks"):
        compressor: Any = ChunkCompressor(
            scorer, counter=counter, rate=rate, mode="tokens" if method == "fast" else "chunks"
        )
    elif method == "upstream":
        compressor = UpstreamCompressor(scorer=scorer, counter=counter, rate=rate)
    else:
        upstream = offline_prompt_compressor(scorer.model, scorer.tokenizer, device="cpu")
    warm = contexts(1, seed=99)[0]  # one untimed call first: lazy set-up is not compression
    if method == "join":
        upstream.compress_prompt(warm[2], question=warm[0], rate=rate, rank_method="longllmlingua")
    else:
        compressor.compress(warm[2], warm[0], rate=rate)
    passes = scorer.forward_passes
    before = after = kept = spans_all = spans_kept = fell_back = dropped = 0
    seconds = 0.0
    for question, answers, passages in cases:
        start = time.perf_counter()
        if method == "join":
            result = upstream.compress_prompt(
                passages,
                question=question,
                rate=rate,
                rank_method="longllmlingua",
                condition_in_question="after_condition",
                reorder_context="sort",
                dynamic_context_compression_ratio=0.3,
                condition_compare=True,
                concate_question=False,
            )
            pieces = [p for p in str(result["compressed_prompt"]).split("\n\n") if p.strip()]
            sent = "\n\n".join(pieces)
            seconds += time.perf_counter() - start
            spans = [s.text for p in passages for s in find_spans(p)]
        else:
            out = compressor.compress(passages, question, rate=rate)
            seconds += time.perf_counter() - start
            sent = "\n\n".join(c.chunk.text for c in out.chunks if not c.dropped)
            spans = [
                s.text for c in out.chunks if not c.dropped for s in find_spans(c.original.text)
            ]
            fell_back += sum(c.fell_back for c in out.chunks)
            dropped += sum(c.dropped for c in out.chunks)
        before += sum(counter.count(p) for p in passages)
        after += counter.count(sent)
        kept += any(a.lower() in sent.lower() for a in answers)
        spans_all += len(spans)
        at = 0
        for s in spans:  # in order, as missing_spans looks them up
            found = sent.find(s, at)
            if found < 0:
                found = sent.find(s)
            spans_kept += found >= 0
    return {
        "method": method,
        "contexts": n,
        "tokens_before": before,
        "tokens_after": after,
        "ratio": before / max(after, 1),
        "answer_kept": kept / n,
        "spans": spans_all,
        "spans_kept": spans_kept / max(spans_all, 1),
        "s_per_1000": seconds / before * 1_000,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "fell_back": fell_back,
        "dropped": dropped,
        "anchor_s_per_1000": anchor,
        "scorer_passes": scorer.forward_passes - passes,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="contexts for fast and chunks")
    parser.add_argument("--upstream-n", type=int, default=30, help="contexts for upstream and join")
    parser.add_argument("--join-n", type=int, default=None, help="default: --upstream-n")
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(json.dumps(run_method(args.method, args.count, args.rate)))
        return
    if not NQ.is_file():
        print(f"nq-open-oracle is absent ({NQ}): nothing to measure (the data is read by path)")
        return
    from _common import load, machine

    print(machine(["torch", "transformers", "llmlingua"]) + f"; {load()}")
    plan = [
        ("fast", args.n),
        ("chunks", args.n),
        ("upstream", args.upstream_n),
        ("join", args.join_n if args.join_n is not None else args.upstream_n),
    ]
    rows = []
    started = time.perf_counter()
    for method, count in plan:
        if count <= 0:
            continue
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--method",
                method,
                "--count",
                str(count),
                "--rate",
                str(args.rate),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {method}: done", flush=True)
    anchor = rows[0]["anchor_s_per_1000"] if rows and rows[0]["anchor_s_per_1000"] else None
    print(
        f"\nrate {args.rate}; anchor: one forward pass over 1,000 tokens = {anchor:.2f} s\n"
        if anchor
        else ""
    )
    print(
        "| method | contexts | ratio | answer kept | protected spans kept "
        "| s per 1,000 tokens | ÷ one pass | peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        vs = f"{r['s_per_1000'] / anchor:.2f}×" if anchor else "–"
        print(
            f"| {r['method']} | {r['contexts']} | {r['ratio']:.2f}× | {100 * r['answer_kept']:.1f} % "
            f"| {100 * r['spans_kept']:.1f} % of {r['spans']:,} | {r['s_per_1000']:.2f} | {vs} "
            f"| {r['peak_rss_gb']:.2f} GB |"
        )
    print("\n" + json.dumps(rows))
    print(f"\nwhole run {time.perf_counter() - started:.0f} s; {load()}")


if __name__ == "__main__":
    main()
