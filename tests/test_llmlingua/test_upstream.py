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


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="method must be 'longllmlingua' or 'llmlingua2'"):
        UpstreamCompressor("gzip")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="model must name a local LLMLingua-2 folder"):
        UpstreamCompressor("llmlingua2")
    with pytest.raises(InvalidConfigError, match="model must be a local folder"):
        UpstreamCompressor("llmlingua2", model=tmp_path / "missing")


def test_llmlingua2_runs_per_chunk(tiny_llmlingua2: Path) -> None:
    compressor = UpstreamCompressor("llmlingua2", model=tiny_llmlingua2, counter=COUNTER)
    result = compressor.compress([*PROSE, HOSTILE], "ignored by LLMLingua-2", rate=0.5)
    assert [c.index for c in result.chunks] == list(range(4))
    assert not any(c.dropped for c in result.chunks)  # LLMLingua-2 has no coarse stage here
    for c in result.chunks:  # a random classifier keeps random words: only the plumbing is checked
        assert c.tokens_after == COUNTER.count(c.chunk.text)
        assert c.chunk.id == c.original.id
    hostile = result.chunks[3]
    assert hostile.fell_back or all(s in hostile.chunk.text for s in hostile.protected)
