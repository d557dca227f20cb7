"""The compressor with the embedded SmolLM2-135M-Instruct (marked ``model``; runs in CI)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from windowkeeper import Chunk, TokenCounter
from windowkeeper_llmlingua import ChunkCompressor, find_spans, shared_scorer

from tests.test_llmlingua.test_spans import HOSTILE

pytestmark = pytest.mark.model
NQ = Path(__file__).resolve().parents[3] / "shared" / "data" / "nq-open-oracle.jsonl.gz"
COUNTER = TokenCounter("gpt-4o")


def contexts(n: int) -> list[tuple[str, list[str], list[str], int]]:
    """``n`` ten-passage contexts: the gold passage among nine others without its answer."""
    with gzip.open(NQ, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    rng = random.Random(5)
    out = []
    for i in rng.sample(range(len(rows)), n):
        gold, answers = rows[i]["ctxs"][0]["text"], rows[i]["answers"]
        others: list[str] = []
        while len(others) < 9:
            text = rows[rng.randrange(len(rows))]["ctxs"][0]["text"]
            if text != gold and not any(a.lower() in text.lower() for a in answers):
                others.append(text)
        at = rng.randrange(10)
        out.append((rows[i]["question"], answers, [*others[:at], gold, *others[at:]], at))
    return out


@pytest.fixture(scope="module")
def compressor() -> ChunkCompressor:
    return ChunkCompressor(shared_scorer(), counter=COUNTER)


def test_question_aware_compression_keeps_the_answer(compressor: ChunkCompressor) -> None:
    kept = 0
    cases = contexts(6)
    for question, answers, passages, gold in cases:
        result = compressor.compress(passages, question, rate=0.5)
        assert result.tokens_after <= result.target_tokens
        assert result.ratio >= 1.9
        assert result.chunks[gold].rank <= 1  # the gold passage ranks first or second
        sent = "\n".join(c.text for c in result.kept)
        kept += any(a.lower() in sent.lower() for a in answers)
    assert kept >= len(cases) - 1


def test_hostile_chunk_keeps_every_protected_span(compressor: ChunkCompressor) -> None:
    passages = [HOSTILE, *[p for _, _, ps, _ in contexts(1) for p in ps[:3]]]
    result = compressor.compress(
        [Chunk(text=p, score=1.0, id=str(i)) for i, p in enumerate(passages)],
        "What was refunded and when?",
        rate=0.5,
    )
    hostile = result.chunks[0]
    assert not hostile.dropped
    assert not hostile.fell_back
    assert hostile.tokens_after < hostile.tokens_before
    for span in find_spans(HOSTILE):
        assert span.text in hostile.chunk.text
    assert [c.chunk.id for c in result.chunks] == [str(i) for i in range(len(passages))]
