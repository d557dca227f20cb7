from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from windowkeeper import Chunk, TokenCounter
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper_llmlingua import CausalScorer, ChunkCompressor, find_spans

from tests.test_llmlingua.test_spans import HOSTILE

COUNTER = TokenCounter("gpt-4o")
PROSE = [
    "The warehouse in Lyon ships blue kettles every Monday morning and the depot checks each "
    "parcel twice before it leaves the loading bay for the regional sorting centre.",
    "Customers who return a kettle within thirty days get a full refund to the original card, "
    "and the courier collects the parcel from the front door at no extra cost at all.",
    "The support team answers questions in English, French and German from nine until six on "
    "weekdays, and a chat assistant takes over in the evenings and at the weekend.",
]


@pytest.fixture(scope="module")
def compressor(tiny_model: Path) -> ChunkCompressor:
    return ChunkCompressor(CausalScorer(tiny_model, device="cpu", dtype="float32"), counter=COUNTER)


def chunks() -> list[Chunk]:
    return [
        Chunk(text=t, score=1.0 - i / 10, id=f"doc-{i}", metadata={"page": i})
        for i, t in enumerate([*PROSE, HOSTILE])
    ]


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.7])
def test_within_the_target_and_per_chunk_identity(compressor: ChunkCompressor, rate: float) -> None:
    items = chunks()
    result = compressor.compress(items, "Where do kettles ship from?", rate=rate)
    before = sum(COUNTER.count(c.text) for c in items)
    assert result.tokens_before == before
    assert result.target_tokens == math.ceil(before * rate)
    protected = sum(
        COUNTER.count(s.text)
        for c in result.chunks
        if not c.dropped
        for s in find_spans(c.original.text)
    )
    assert result.tokens_after <= max(result.target_tokens, protected + 20) or result.notes
    assert [c.index for c in result.chunks] == list(range(len(items)))
    for out, item in zip(result.chunks, items, strict=True):
        assert out.original is item
        assert (out.chunk.id, out.chunk.score, dict(out.chunk.metadata)) == (
            item.id,
            item.score,
            dict(item.metadata),
        )
        assert out.tokens_after == (0 if out.dropped else COUNTER.count(out.chunk.text))
    assert sorted(c.rank for c in result.chunks) == list(range(len(items)))
    assert result.tokens_after == sum(c.tokens_after for c in result.chunks)


def test_protected_spans_survive_verbatim_and_json_still_parses(
    compressor: ChunkCompressor,
) -> None:
    config = json.dumps({"retries": 3, "timeout_s": 2.5, "hosts": ["a.example.com", "b"]})
    items = [Chunk(text=HOSTILE, score=1.0), Chunk(text=config, score=0.5), *chunks()[:2]]
    result = compressor.compress(items, "What is the refund?", rate=0.4)
    hostile, as_json = result.chunks[0], result.chunks[1]
    assert not hostile.dropped
    assert hostile.tokens_after < hostile.tokens_before  # something was compressed around them
    for span in find_spans(HOSTILE):
        assert span.text in hostile.chunk.text
    assert "if x < 3:" in hostile.chunk.text
    if not as_json.dropped:
        assert json.loads(as_json.chunk.text) == json.loads(config)
    assert all(not c.fell_back for c in result.chunks)


def test_words_are_never_cut(compressor: ChunkCompressor) -> None:
    result = compressor.compress(chunks()[:3], "kettles", rate=0.5)
    for c in result.chunks:
        original_words = set(c.original.text.split())
        assert set(c.chunk.text.split()) <= original_words


def test_within_the_target_is_sent_unchanged_and_the_question_is_only_read(
    compressor: ChunkCompressor,
) -> None:
    items = chunks()[:2]
    question = "Where do kettles ship from?"
    result = compressor.compress(items, question, target_tokens=10_000)
    assert [c.chunk for c in result.chunks] == items
    assert result.ratio == 1.0
    assert result.question == question
    assert compressor.compress([], question).chunks == ()


def test_a_chunk_longer_than_the_scorer_window(tiny_model: Path) -> None:
    scorer = CausalScorer(tiny_model, device="cpu", dtype="float32", max_window=16, batch_tokens=96)
    long = " ".join(PROSE * 3)
    scores = scorer.score([long, "short one"], "kettles?")
    assert len(scores[0].losses) == len(
        scorer.tokenizer(long, add_special_tokens=False)["input_ids"]
    )
    assert np.all(scores[0].losses[1:] > 0)  # every window scored, not only the first
    assert scorer.forward_passes >= 2
    result = ChunkCompressor(scorer, counter=COUNTER).compress(
        [long, "short one"], "kettles?", rate=0.4
    )
    assert 0 < result.chunks[0].tokens_after < result.chunks[0].tokens_before


def test_windows_never_exceed_the_models_positions(tiny_model: Path) -> None:
    """The tiny model takes 512 positions: a 512-token window plus the question would not fit."""
    scorer = CausalScorer(tiny_model, device="cpu", dtype="float32", max_window=512)
    long = " ".join(PROSE * 12)
    n = len(scorer.tokenizer(long, add_special_tokens=False)["input_ids"])
    assert n > 512
    question = "Where do the kettles ship from, and how long does a refund take? " * 4
    scores = scorer.score([long], question)
    assert len(scores[0].losses) == n
    assert np.isfinite(scores[0].question_loss)


def test_ranking_only_mode_keeps_or_drops_whole_chunks(tiny_model: Path) -> None:
    scorer = CausalScorer(tiny_model, device="cpu", dtype="float32")
    compressor = ChunkCompressor(scorer, counter=COUNTER, mode="chunks")
    items = chunks()
    result = compressor.compress(items, "refund?", rate=0.5)
    assert result.tokens_after <= result.target_tokens
    for out in result.chunks:
        assert out.chunk.text == ("" if out.dropped else out.original.text)
    assert any(c.dropped for c in result.chunks)
    assert all(len(s.losses) == 0 for s in scorer.score(["a b"], "q", token_losses=False))


def test_bad_input_is_named(tiny_model: Path) -> None:
    with pytest.raises(InvalidConfigError, match=r"rate must be a number from 0 to 1; got 1\.5"):
        ChunkCompressor(counter=COUNTER, rate=1.5)
    with pytest.raises(InvalidConfigError, match="rate must be a number > 0"):
        ChunkCompressor(counter=COUNTER, rate=0)
    with pytest.raises(InvalidConfigError, match="mode must be 'tokens' or 'chunks'; got 'words'"):
        ChunkCompressor(counter=COUNTER, mode="words")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="protect pattern"):
        ChunkCompressor(counter=COUNTER, protect=["("])
    with pytest.raises(InvalidConfigError, match="max_window"):
        CausalScorer(tiny_model, max_window=2)
    compressor = ChunkCompressor(CausalScorer(tiny_model, device="cpu"), counter=COUNTER)
    with pytest.raises(InvalidConfigError, match=r"chunks\[1\] must be a Chunk or a str; got int"):
        compressor.compress(["a", 3], "q")  # type: ignore[list-item]
    with pytest.raises(InvalidConfigError, match="target_tokens must be an int >= 0; got -1"):
        compressor.compress(["a"], "q", target_tokens=-1)
    with pytest.raises(InvalidConfigError, match="question must be a str"):
        compressor.compress(["a"], None)  # type: ignore[arg-type]


def test_the_assembler_compresses_its_rag_zone_with_it(compressor: ChunkCompressor) -> None:
    from windowkeeper import Budget, Compressor, ContextAssembler

    assert isinstance(compressor, Compressor)
    budget = Budget(context_window=4_000, generation_reserve=200, zone_limits={"rag": 160})
    assembler = ContextAssembler(COUNTER, budget, compressor=compressor)
    user = "Where do the kettles ship from? (ref A-12345)"
    out = assembler.assemble(user, system="Answer from the documents.", chunks=chunks())
    assert out.messages[-1].text == user
    assert out.report.zones["rag"] <= 160
    assert out.chunks  # compressed to fit, not all dropped
    assert any("(compressed)" in d.what for d in out.report.dropped)


def test_many_requests_share_forward_passes_and_match_one_by_one(tiny_model: Path) -> None:
    scorer = CausalScorer(tiny_model, device="cpu", dtype="float32")
    compressor = ChunkCompressor(scorer, counter=COUNTER)
    requests = [
        (PROSE, "Where do kettles ship from?"),
        ([HOSTILE, *PROSE[:1]], "What was refunded?"),
        (["tiny"], "nothing to do"),  # within the target: unchanged, not scored
    ]
    many = compressor.compress_many(requests, rate=0.5, batch=8, progress=True)
    passes = scorer.forward_passes
    single = [compressor.compress(c, q, rate=0.5) for c, q in requests]
    assert scorer.forward_passes - passes >= passes  # one by one takes at least as many passes
    for a, b in zip(many, single, strict=True):
        assert [c.chunk.text for c in a.chunks] == [c.chunk.text for c in b.chunks]
        assert [c.rank for c in a.chunks] == [c.rank for c in b.chunks]
    assert many[2].chunks[0].reason == "within the target: sent as it is"


async def test_acompress_runs_on_the_worker(compressor: ChunkCompressor) -> None:
    import threading

    seen: list[str] = []
    original = compressor.scorer.score

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return original(*args, **kwargs)

    compressor.scorer.score = spy  # type: ignore[method-assign]
    try:
        result = await compressor.acompress(PROSE, "Where do kettles ship from?", rate=0.5)
    finally:
        del compressor.scorer.score
    assert result.tokens_after <= result.target_tokens
    assert seen
    assert seen[0].startswith("windowkeeper-llmlingua")
