"""ContextAssembler(compressor=...): the core decides when and how much, the compressor what."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from windowkeeper import Budget, Chunk, ContextAssembler, InvalidConfigError, TokenCounter

COUNTER = TokenCounter("gpt-4o")
TEXT = "The parcel left the Lyon depot on Monday and reached the customer on Thursday. " * 6


@dataclass(frozen=True)
class Entry:
    chunk: Chunk
    original: Chunk
    dropped: bool
    tokens_before: int
    tokens_after: int
    reason: str = ""


@dataclass(frozen=True)
class Outcome:
    chunks: tuple[Entry, ...]


class HalvingCompressor:
    """A unit-test fake: keeps the first words of each chunk up to the target, drops the last chunk."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None, int]] = []

    def compress(
        self, chunks: Sequence[Chunk], question: str, *, target_tokens: int | None = None
    ) -> Outcome:
        self.calls.append((question, target_tokens, len(chunks)))
        assert target_tokens is not None
        share = target_tokens // max(len(chunks) - 1, 1)
        out = []
        for i, c in enumerate(chunks):
            before = COUNTER.count(c.text)
            if i == len(chunks) - 1:
                out.append(
                    Entry(Chunk(text="", score=c.score, id=c.id), c, True, before, 0, "worst")
                )
                continue
            words = c.text.split()
            while words and COUNTER.count(" ".join(words)) > share:
                words.pop()
            text = " ".join(words)
            kept = Chunk(text=text, score=c.score, id=c.id, metadata=c.metadata)
            out.append(Entry(kept, c, False, before, COUNTER.count(text)))
        return Outcome(tuple(out))


def chunks(n: int) -> list[Chunk]:
    return [Chunk(text=TEXT, score=1.0 - i / 10, id=f"d{i}", metadata={"i": i}) for i in range(n)]


def assembler(compressor: object, rag: int) -> ContextAssembler:
    budget = Budget(context_window=8_000, generation_reserve=500, zone_limits={"rag": rag})
    return ContextAssembler(COUNTER, budget, compressor=compressor)  # type: ignore[arg-type]


def test_over_the_zone_the_chunks_are_compressed_and_reported() -> None:
    fake = HalvingCompressor()
    user = "When did the parcel reach me?  Exactly as typed."
    out = assembler(fake, rag=400).assemble(user, system="Be brief.", chunks=chunks(4))
    assert len(fake.calls) == 1
    question, target, n = fake.calls[0]
    assert question == user
    assert n == 4
    assert target is not None
    assert 0 < target < 400  # the zone minus the four message frames
    assert out.messages[-1].text == user  # the user's message is never touched
    assert out.report.zones["rag"] <= 400
    assert [c.id for c in out.chunks] == ["d2", "d1", "d0"]  # ascending, best next to the user
    reasons = {d.what: d.reason for d in out.report.dropped if d.zone == "rag"}
    assert reasons["chunk d3"] == "worst"
    assert reasons["chunk d0 (compressed)"].startswith("compressed from")
    assert all(dict(c.metadata)["i"] == int(c.id[1]) for c in out.chunks)  # type: ignore[index]


def test_within_the_zone_nothing_is_compressed() -> None:
    fake = HalvingCompressor()
    out = assembler(fake, rag=4_000).assemble("hi", chunks=chunks(2))
    assert fake.calls == []
    assert [c.text for c in out.chunks] == [TEXT, TEXT]


def test_a_compressor_must_have_compress() -> None:
    with pytest.raises(InvalidConfigError, match="compressor must have compress"):
        assembler(object(), rag=400)
