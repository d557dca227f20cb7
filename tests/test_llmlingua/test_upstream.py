from __future__ import annotations

from pathlib import Path

import pytest
from windowkeeper import TokenCounter
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper_llmlingua import CausalScorer
from windowkeeper_llmlingua._upstream import UpstreamCompressor, offline_prompt_compressor

from tests.test_llmlingua.test_compressor import PROSE
from tests.test_llmlingua.test_spans import HOSTILE

COUNTER = TokenCounter("gpt-4o")
LONG = " ".join(PROSE * 4)  # longer than one iterative window, so the cache is reused


def test_longllmlingua_runs_per_chunk_on_current_transformers(tiny_model: Path) -> None:
    scorer = CausalScorer(tiny_model, device="cpu", dtype="float32")
    compressor = UpstreamCompressor(scorer=scorer, counter=COUNTER)
    chunks = [*PROSE, HOSTILE, LONG]
    result = compressor.compress(chunks, "Where do kettles ship from?", rate=0.5)
    assert [c.index for c in result.chunks] == list(range(len(chunks)))
    assert result.tokens_after < result.tokens_before
    for c in result.chunks:
        if not c.dropped and not c.fell_back:
            assert c.tokens_after <= c.tokens_before
        if c.fell_back:  # a lost span is never sent mangled
            assert c.chunk.text == c.original.text


def test_the_cache_shim_is_what_makes_it_run(tiny_model: Path) -> None:
    scorer = CausalScorer(tiny_model, device="cpu", dtype="float32")
    shimmed = offline_prompt_compressor(scorer.model, scorer.tokenizer, device="cpu")
    shimmed.compress_prompt([LONG], question="kettles?", rate=0.4, iterative_size=16)
    raw = offline_prompt_compressor(scorer.model, scorer.tokenizer, device="cpu")
    raw.model = scorer.model  # upstream as published: the model gets legacy (key, value) tuples
    with pytest.raises((AttributeError, TypeError, ValueError)):
        raw.compress_prompt([LONG], question="kettles?", rate=0.4, iterative_size=16)


def test_chunks_within_the_target_are_sent_as_they_are(tiny_model: Path) -> None:
    scorer = CausalScorer(tiny_model, device="cpu", dtype="float32")
    compressor = UpstreamCompressor(scorer=scorer, counter=COUNTER)
    chunks = [*PROSE, HOSTILE]
    result = compressor.compress(chunks, "Where do kettles ship from?", target_tokens=100_000)
    assert [c.chunk.text for c in result.chunks] == chunks
    assert result.tokens_after == result.tokens_before
    assert compressor._upstream is None  # upstream never ran (it would have cut anyway)


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="method must be 'longllmlingua' or 'llmlingua2'"):
        UpstreamCompressor("gzip")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="model must name a local LLMLingua-2 folder"):
        UpstreamCompressor("llmlingua2")
    with pytest.raises(InvalidConfigError, match="model must be a local folder"):
        UpstreamCompressor("llmlingua2", model=tmp_path / "missing")
    with pytest.raises(InvalidConfigError, match="protect must be a sequence of patterns"):
        UpstreamCompressor(protect="A-\\d+")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match=r"rate must be a number > 0"):
        UpstreamCompressor(rate=0)


def test_llmlingua2_runs_per_chunk(tiny_llmlingua2: Path) -> None:
    compressor = UpstreamCompressor(
        "llmlingua2", model=tiny_llmlingua2, counter=COUNTER, two_stage=False
    )
    result = compressor.compress([*PROSE, HOSTILE], "ignored by LLMLingua-2", rate=0.5)
    assert [c.index for c in result.chunks] == list(range(4))
    assert not any(c.dropped for c in result.chunks)  # no coarse stage asked for
    for c in result.chunks:  # a random classifier keeps random words: only the plumbing is checked
        assert c.tokens_after == COUNTER.count(c.chunk.text)
        assert c.chunk.id == c.original.id
    hostile = result.chunks[3]
    assert hostile.fell_back or all(s in hostile.chunk.text for s in hostile.protected)


def test_llmlingua2_two_stage_drops_whole_chunks_and_keeps_the_mapping(
    tiny_llmlingua2: Path,
) -> None:
    """The authors' recipe: a coarse stage over the chunks, then the token stage, per chunk."""
    compressor = UpstreamCompressor("llmlingua2", model=tiny_llmlingua2, counter=COUNTER)
    chunks = [*PROSE, HOSTILE, LONG]
    result = compressor.compress(chunks, "ignored by LLMLingua-2", rate=0.3)
    assert [c.index for c in result.chunks] == list(range(len(chunks)))
    dropped = [c for c in result.chunks if c.dropped]
    # (0.3 + 1) / 2 of the chunks pass the coarse stage: the rest are dropped whole
    assert 1 <= len(dropped) <= len(chunks) - 2
    assert all("by LLMLingua-2: left out by the coarse stage" in c.reason for c in dropped)
    assert sorted(c.rank for c in result.chunks) == list(range(len(chunks)))
    for c in result.chunks:
        assert c.chunk.id == c.original.id
        assert c.tokens_after == COUNTER.count(c.chunk.text)
