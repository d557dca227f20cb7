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


# ------------------------------------------------------------------ the other zones a user allows


class RateCompressor:
    """A unit-test fake: keeps each chunk's first words up to the target (or half its tokens)."""

    def __init__(self, drop: Sequence[str] = ()) -> None:
        self.calls: list[tuple[str, int | None, list[str]]] = []
        self.drop = set(drop)

    def compress(
        self, chunks: Sequence[Chunk], question: str, *, target_tokens: int | None = None
    ) -> Outcome:
        self.calls.append((question, target_tokens, [c.text for c in chunks]))
        total = sum(COUNTER.count(c.text) for c in chunks)
        goal = total // 2 if target_tokens is None else target_tokens
        out = []
        for c in chunks:
            before = COUNTER.count(c.text)
            if c.id in self.drop:
                out.append(Entry(Chunk(text="", score=c.score, id=c.id), c, True, before, 0))
                continue
            words = c.text.split()
            while words and COUNTER.count(" ".join(words)) > goal * before // max(total, 1):
                words.pop()
            text = " ".join(words)
            after = COUNTER.count(text)
            out.append(Entry(Chunk(text=text, score=c.score, id=c.id), c, False, before, after))
        return Outcome(tuple(out))


SYSTEM = "You are the support agent of a parcel company. Answer briefly and politely. " * 12


def test_compress_zones_is_checked() -> None:
    budget = Budget(context_window=8_000, generation_reserve=500)
    for bad in ("system", ["rag", "reserve"], ["user"]):
        with pytest.raises(InvalidConfigError, match="compress_zones must be a collection of"):
            ContextAssembler(COUNTER, budget, compressor=RateCompressor(), compress_zones=bad)  # type: ignore[arg-type]


def test_a_system_prompt_over_its_zone_is_compressed_only_when_allowed() -> None:
    budget = Budget(context_window=8_000, generation_reserve=500, zone_limits={"system": 120})
    user = "Where is my parcel?"
    with pytest.raises(Exception, match=r"never shortened.*compress_zones including 'system'"):
        ContextAssembler(COUNTER, budget, compressor=RateCompressor()).assemble(user, system=SYSTEM)
    fake = RateCompressor()
    asm = ContextAssembler(COUNTER, budget, compressor=fake, compress_zones=("rag", "system"))
    first = asm.assemble(user, system=SYSTEM)
    assert first.report.zones["system"] <= 120
    assert first.messages[0].role == "system"
    assert first.messages[0].text != SYSTEM
    assert first.messages[-1].text == user
    assert fake.calls[0][0] == ""  # question-blind: the prefix must not follow the question
    squeezed = [d for d in first.report.dropped if d.zone == "system"]
    assert squeezed
    assert squeezed[0].tokens == COUNTER.count(SYSTEM) - COUNTER.count(first.messages[0].text)
    second = asm.assemble("A different question entirely", system=SYSTEM)
    assert second.prefix_fingerprint == first.prefix_fingerprint  # byte-stable prefix
    assert len(fake.calls) == 1  # cached: the compressor ran once


def test_a_request_that_cannot_fit_compresses_the_system_prompt_instead_of_failing() -> None:
    budget = Budget(context_window=400, generation_reserve=100)
    user = "Where is my parcel?"
    with pytest.raises(Exception, match="short by"):
        ContextAssembler(COUNTER, budget).assemble(user, system=SYSTEM * 3)
    out = ContextAssembler(
        COUNTER, budget, compressor=RateCompressor(), compress_zones=("system",)
    ).assemble(user, system=SYSTEM * 3)
    assert out.report.prompt_tokens <= 300
    assert out.messages[-1].text == user


def history_with_tools() -> list[dict[str, object]]:
    msgs: list[dict[str, object]] = []
    for i in range(3):
        msgs += [
            {"role": "user", "content": f"Where is order A-{i}?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call{i}",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": f'{{"order": "A-{i}"}}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"call{i}", "content": f"Order A-{i}: " + TEXT},
            {"role": "assistant", "content": f"Order A-{i} arrived."},
        ]
    return msgs


def test_history_tool_results_are_compressed_but_not_the_newest_turns() -> None:
    budget = Budget(context_window=8_000, generation_reserve=500)
    user = "And order A-1?"
    plain = ContextAssembler(COUNTER, budget).assemble(user, history=history_with_tools())
    fake = RateCompressor(drop=["call0"])
    out = ContextAssembler(COUNTER, budget, compressor=fake, compress_zones=("history",)).assemble(
        user, history=history_with_tools()
    )
    assert fake.calls[0][0] == user
    assert fake.calls[0][1] is None
    assert len(fake.calls[0][2]) == 2  # call0 and call1; call2 is the newest turn's
    tools = {m.tool_call_id: m.text for m in out.messages if m.role == "tool"}
    assert tools["call2"].startswith("Order A-2: The parcel")
    assert COUNTER.count(tools["call2"]) == COUNTER.count("Order A-2: " + TEXT)
    assert tools["call0"].startswith("[tool result cleared: lookup")  # dropped: a placeholder
    assert 0 < COUNTER.count(tools["call1"]) < COUNTER.count("Order A-1: " + TEXT) // 2 + 2
    assert [m.tool_call_id for m in out.messages if m.role == "tool"] == ["call0", "call1", "call2"]
    assert out.messages[-1].text == user
    saved = sum(d.tokens for d in out.report.dropped if "(compressed)" in d.what)
    assert out.report.prompt_tokens == plain.report.prompt_tokens - saved


def long_tools() -> list[dict[str, object]]:
    prose = "Looks the record up in the order system and returns its current state. " * 6
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": f"Tool {i}. " + prose,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "order_id": {"type": "string", "description": "The order id. " + prose},
                        "mode": {"type": "string", "enum": ["fast", "full"]},
                    },
                    "required": ["order_id"],
                },
            },
        }
        for i in range(4)
    ]


def test_tool_descriptions_are_compressed_before_any_tool_is_dropped() -> None:
    import copy
    import json

    budget = Budget(context_window=8_000, generation_reserve=500, zone_limits={"tools": 600})
    tools = long_tools()
    original = copy.deepcopy(tools)
    plain = ContextAssembler(COUNTER, budget).assemble("Where is A-1?", tools=tools)
    assert len(plain.tools) < 4  # without compression the selector drops tools
    fake = RateCompressor()
    asm = ContextAssembler(COUNTER, budget, compressor=fake, compress_zones=("tools",))
    out = asm.assemble("Where is A-1?", tools=tools)
    assert [t["function"]["name"] for t in out.tools] == [f"tool_{i}" for i in range(4)]
    assert out.report.zones["tools"] <= 600
    assert tools == original  # the caller's schemas untouched
    for kept, before in zip(out.tools, original, strict=True):
        json.dumps(kept)  # still JSON
        fn, was = kept["function"], before["function"]
        assert fn["description"] != was["description"]
        assert fn["parameters"]["required"] == was["parameters"]["required"]
        props, old = fn["parameters"]["properties"], was["parameters"]["properties"]
        assert props["mode"] == old["mode"]  # types and enums exactly as they were
        assert set(props) == set(old)
    assert fake.calls[0][0] == ""  # question-blind
    again = asm.assemble("A different question", tools=tools)
    assert again.prefix_fingerprint == out.prefix_fingerprint  # byte-stable prefix
    assert len(fake.calls) == 1  # cached
    assert any(d.zone == "tools" and "(compressed)" in d.what for d in out.report.dropped)
