"""The conformance suite, run by every memory through the assembler.

2,000 generated conversations per memory (``WK_CONFORMANCE_EXAMPLES`` changes the number): they
may open with assistant messages, hold several assistant messages in a row, parallel tool calls
and system notes mid-way (``tests/strategies.py``).

Within budget (exact count), input unchanged, the user message verbatim (the same object), tool
calls never split from their results, the system prompt kept and first, nothing stored lost, and the
same request twice.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from windowkeeper import (
    Budget,
    BudgetExceededError,
    Message,
    TokenCounter,
    messages_to_openai,
    validate_tool_pairs,
)
from windowkeeper._assembler import Chunk, ContextAssembler
from windowkeeper._units import Unit, group_units, split_system
from windowkeeper.memory import Memory, WindowMemory
from windowkeeper.stores import MemoryStore

from tests.strategies import TEXT, TOOLS, conversations

COUNTER = TokenCounter("gpt-4o")


class HashEmbedder:
    """A deterministic bag-of-words embedder (unit tests only)."""

    model_id = "hash-64"
    dimension = 64

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


def fake_summarizer(previous: str, units: Sequence[Unit]) -> str:
    return (previous + " " + " ".join(f"t{u.index}" for u in units)).strip()[-300:]


def memories() -> dict[str, Callable[[], Memory]]:
    out: dict[str, Callable[[], Memory]] = {
        "window": lambda: WindowMemory(COUNTER, store=MemoryStore())
    }
    try:
        from windowkeeper.memory._recall import TurnRecall
    except ImportError:  # pragma: no cover - while the module is being built
        pass
    else:
        out["recall-bm25"] = lambda: TurnRecall(COUNTER, embedder=None, recent_units=2)
        out["recall-hybrid"] = lambda: TurnRecall(COUNTER, embedder=HashEmbedder(), recent_units=2)
    try:
        from windowkeeper.memory._summary import RollingSummary
    except ImportError:  # pragma: no cover
        pass
    else:
        out["summary"] = lambda: RollingSummary(COUNTER, summarizer=fake_summarizer, keep_last=2)
    try:
        from windowkeeper.memory._layered import LayeredMemory
    except ImportError:  # pragma: no cover
        pass
    else:
        out["layered"] = lambda: LayeredMemory(
            COUNTER, summarizer=fake_summarizer, embedder=HashEmbedder(), recent_units=2
        )
    return out


MEMORIES = memories()


@pytest.mark.parametrize("name", sorted(MEMORIES))
@settings(
    max_examples=int(os.environ.get("WK_CONFORMANCE_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(conversations(), st.integers(200, 4_000), st.booleans(), TEXT)
def test_memory_conforms(
    name: str, messages: list[Message], window: int, with_tools: bool, chunk: str
) -> None:
    system, rest = split_system(messages)
    units = group_units(rest)
    if not units:
        return
    *history, current = units
    tools = TOOLS if with_tools else None
    before = copy.deepcopy(messages_to_openai(messages, include_metadata=True))
    memory = MEMORIES[name]()
    try:
        for u in history:
            memory.add([m for m in u.messages if m.zone_hint != "rag"])
        wait = getattr(memory, "wait_idle", None) or getattr(memory, "flush", None)
        if callable(wait):
            wait()
        budget = Budget(context_window=window, generation_reserve=min(100, window // 4))
        assembler = ContextAssembler(COUNTER, budget)
        user = current.user
        turn = [m for m in current.messages if m.zone_hint != "rag"]
        try:
            out = assembler.assemble(
                turn,
                system=system,
                tools=tools,
                memory=memory,
                chunks=[Chunk(text=chunk, score=0.5)],
            )
        except BudgetExceededError:
            # only when the system prompt and the current turn (and tools) cannot fit
            fixed = COUNTER.count_messages([*system, *turn], tools=tools)
            assert fixed > budget.prompt_limit
            return
        assert out.report.prompt_tokens == COUNTER.count_messages(
            out.messages, tools=list(out.tools) or None
        )
        assert out.report.prompt_tokens <= budget.prompt_limit
        assert list(out.messages[: len(system)]) == system  # system prompt kept, first
        assert any(m is user for m in out.messages)  # the very object: byte-identical
        sent_turn = out.messages[-len(turn) :]
        for sent, original in zip(sent_turn, turn, strict=True):
            if sent != original:  # only an older tool result of the turn, cleared to fit
                assert original.role == "tool"
                assert sent.tool_call_id == original.tool_call_id
                assert sent.text.startswith("[tool result cleared: ")
        validate_tool_pairs(
            [
                m
                for m in out.messages
                if m.metadata.get("windowkeeper") is None and m.zone_hint != "rag"
            ][len(system) :]
        )
        for u in out.view.recent:  # whole units only
            assert u.messages == memory.units[u.index].messages  # type: ignore[attr-defined]
        assert len(memory) == len(history)  # nothing stored lost, nothing changed
        assert [u.messages for u in memory.units] == [  # type: ignore[attr-defined]
            tuple(m for m in u.messages if m.zone_hint != "rag") for u in history
        ]
        again = assembler.assemble(
            turn, system=system, tools=tools, memory=memory, chunks=[Chunk(text=chunk, score=0.5)]
        )
        assert again.messages == out.messages  # the same request twice
        assert messages_to_openai(messages, include_metadata=True) == before
    finally:
        close = getattr(memory, "close", None)
        if callable(close):
            close()
