from __future__ import annotations

import pytest
from windowkeeper import (
    Budget,
    BudgetExceededError,
    InvalidConfigError,
    InvalidMessageError,
    Message,
    TokenCounter,
    ToolCall,
    validate_tool_pairs,
)
from windowkeeper._assembler import Chunk, ContextAssembler
from windowkeeper._toolselect import ToolSelector, tool_name
from windowkeeper._units import Unit
from windowkeeper.memory import MemoryView, WindowMemory

COUNTER = TokenCounter("gpt-4o")
SYSTEM = "You are a support agent for Acme. Answer from the documents; cite order ids."


def tool(name: str, description: str, **params: str) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {k: {"type": "string", "description": v} for k, v in params.items()},
            },
        },
    }


TOOLS = [
    tool("get_weather", "Current weather for a city", city="City name"),
    tool("refund_order", "Refund an order by its id", order_id="The order id"),
    tool("search_manual", "Search the product manual for a topic", topic="What to look for"),
    tool("escalate", "Hand the conversation to a human agent", reason="Why"),
    tool("track_parcel", "Where a parcel is, by tracking number", tracking="Tracking number"),
]


def unit(i: int, text: str) -> Unit:
    return Unit(
        index=i,
        messages=(
            Message(role="user", content=f"{text} (q{i})"),
            Message(role="assistant", content=f"reply {i}"),
        ),
    )


class FixedMemory:
    """A memory that shows a fixed view (to test placement independently of any strategy)."""

    session_id = "s"

    def __init__(self, view: MemoryView) -> None:
        self._view = view
        self.budgets: list[int] = []

    def add(self, messages):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def view(self, query: str = "", *, budget: int) -> MemoryView:
        self.budgets.append(budget)
        return self._view


def assembler(window: int = 4_000, reserve: int = 500, **kw) -> ContextAssembler:  # type: ignore[no-untyped-def]
    limits = kw.pop("zone_limits", {})
    return ContextAssembler(
        COUNTER,
        Budget(context_window=window, generation_reserve=reserve, zone_limits=limits),
        **kw,
    )


def test_zone_order_and_exact_report() -> None:
    recent = (unit(5, "recent question"), unit(6, "latest question"))
    view = MemoryView(
        summary="Ann ordered a kettle (order 1182).",
        summary_covers=3,
        recalled=(unit(1, "old question about the kettle"),),
        recent=recent,
    )
    memory = FixedMemory(
        MemoryView(
            summary=view.summary,
            summary_covers=3,
            recalled=view.recalled,
            recent=recent,
            tokens=COUNTER.count_messages(view.messages()) - 3,
        )
    )
    user = Message(role="user", content="Can I get a refund for order 1182?")
    chunks = [
        Chunk(text="Shipping is free.", score=0.1, id="kb/ship"),
        Chunk(text="Refunds take 5 days.", score=0.9, id="kb/refund"),
    ]
    out = assembler().assemble(user, system=SYSTEM, tools=TOOLS, memory=memory, chunks=chunks)
    kinds = [
        m.metadata.get("windowkeeper") or m.metadata.get("zone") or m.role for m in out.messages
    ]
    assert kinds == [
        "system",
        "summary",
        "recalled",
        "user",
        "assistant",
        "user",
        "assistant",
        "rag",
        "rag",
        "user",
    ]
    assert out.messages[-1] is user  # the very object: never altered
    assert out.messages[-2].metadata["chunk_id"] == "kb/refund"  # best chunk next to the user
    assert "<conversation_summary" in out.messages[1].text
    assert out.report.prompt_tokens == COUNTER.count_messages(out.messages, tools=list(out.tools))
    zones = dict(out.report.zones)
    assert zones["rag"] == sum(COUNTER.count_message(m) for m in out.messages[7:9])
    assert zones["history"] == sum(COUNTER.count_message(m) for m in out.messages[1:7])
    assert out.report.prompt_tokens <= 3_500


def test_edges_order_puts_second_best_first() -> None:
    chunks = [
        Chunk(text=f"fact {i}", score=s, id=str(i)) for i, s in enumerate([0.5, 0.9, 0.1, 0.7, 0.3])
    ]
    out = assembler(chunk_order="edges").assemble("question", chunks=chunks)
    assert [c.score for c in out.chunks] == [0.7, 0.3, 0.1, 0.5, 0.9]
    out = assembler().assemble("question", chunks=chunks)
    assert [c.score for c in out.chunks] == [0.1, 0.3, 0.5, 0.7, 0.9]


def test_rag_limit_drops_lowest_scores_first() -> None:
    chunks = [Chunk(text="detail " * 40, score=s / 10, id=f"c{s}") for s in range(10)]
    per_chunk = COUNTER.count_message(assembler().chunk_message(chunks[0]))
    out = assembler(zone_limits={"rag": per_chunk * 3 + 1}).assemble("q", chunks=chunks)
    assert sorted(c.id for c in out.chunks) == ["c7", "c8", "c9"]
    assert out.report.zones["rag"] <= per_chunk * 3 + 1
    assert [d.what for d in out.report.dropped] == [f"chunk c{s}" for s in range(6, -1, -1)]


def test_history_limit_keeps_newest_whole_units() -> None:
    memory = WindowMemory(COUNTER)
    for i in range(40):
        memory.add(
            [
                Message(role="user", content=f"question {i} " * 8),
                Message(role="assistant", content=f"answer {i}"),
            ]
        )
    out = assembler(zone_limits={"history": 300}).assemble("next?", system=SYSTEM, memory=memory)
    assert out.report.zones["history"] <= 300
    shown = [u.index for u in out.view.recent]
    assert shown == list(range(40 - len(shown), 40))
    (dropped,) = out.report.dropped
    assert dropped.what == f"units 0-{39 - len(shown)}"
    assert dropped.tokens == sum(memory.unit_tokens(i) for i in range(40 - len(shown)))
    assert len(memory) == 40  # the store keeps everything


def test_history_list_without_memory_and_agent_loop_turn() -> None:
    call = ToolCall(id="c1", name="refund_order", arguments='{"order_id": "1182"}')
    history = [Message(role="user", content="hi"), Message(role="assistant", content="hello")]
    current = [
        Message(role="user", content="refund 1182 please"),
        Message(role="assistant", tool_calls=(call,)),
        Message(role="tool", tool_call_id="c1", content='{"ok": true}'),
    ]
    out = assembler().assemble(current, system=SYSTEM, history=history, tools=TOOLS)
    assert list(out.messages[-3:]) == current
    assert all(a is b for a, b in zip(out.messages[-3:], current, strict=True))
    validate_tool_pairs(list(out.messages[1:]))
    assert out.report.prompt_tokens == COUNTER.count_messages(out.messages, tools=TOOLS)


def test_fixed_zones_that_do_not_fit_raise_with_the_shortfall() -> None:
    asm = assembler(window=300, reserve=100)
    with pytest.raises(BudgetExceededError) as info:
        asm.assemble("word " * 400, system=SYSTEM)
    err = info.value
    assert err.zone == "total"
    assert err.limit == 300
    assert err.required > 400
    assert "short by" in str(err)
    with pytest.raises(BudgetExceededError) as info:
        assembler(zone_limits={"user": 10}).assemble("word " * 50)
    assert info.value.zone == "user"


def test_prefix_is_byte_stable_across_turns() -> None:
    asm = assembler()
    memory = WindowMemory(COUNTER)
    prints, heads = set(), set()
    for i in range(5):
        out = asm.assemble(
            f"question {i}", system=SYSTEM, tools=TOOLS, memory=memory, chunks=[(f"doc {i}", 0.5)]
        )
        prints.add(out.prefix_fingerprint)
        heads.add(repr(out.to_openai()[0]))
        memory.add([out.messages[-1], Message(role="assistant", content=f"answer {i}")])
    assert len(prints) == 1
    assert len(heads) == 1


def test_dynamic_tool_selection_keeps_relevant_tools_in_original_order() -> None:
    asm = assembler(
        zone_limits={"tools": 80}, tool_selector=ToolSelector(always_include=["escalate"])
    )
    out = asm.assemble("I want a refund for order 1182", system=SYSTEM, tools=TOOLS)
    names = [tool_name(t) for t in out.tools]
    assert "refund_order" in names
    assert "escalate" in names
    assert names == [n for n in (tool_name(t) for t in TOOLS) if n in names]  # original order
    assert out.report.zones["tools"] <= 80
    assert {d.what for d in out.report.dropped} == {
        f"tool {n}" for n in (tool_name(t) for t in TOOLS) if n not in names
    }
    again = asm.assemble("and the refund for order 1183?", system=SYSTEM, tools=TOOLS)
    assert again.prefix_fingerprint == out.prefix_fingerprint


def test_always_included_tools_that_cannot_fit_raise() -> None:
    asm = assembler(
        zone_limits={"tools": 30},
        tool_selector=ToolSelector(always_include=["escalate", "refund_order"]),
    )
    with pytest.raises(BudgetExceededError) as info:
        asm.assemble("hello", system=SYSTEM, tools=TOOLS)
    assert info.value.zone == "tools"


def test_bad_input_is_rejected() -> None:
    with pytest.raises(InvalidConfigError, match="chunk_order must be"):
        assembler(chunk_order="middle")
    with pytest.raises(InvalidConfigError, match="budget must be a Budget"):
        ContextAssembler(COUNTER, 4000)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match=r"Chunk.score must be a finite number; got nan"):
        Chunk(text="x", score=float("nan"))
    with pytest.raises(InvalidConfigError, match="not both"):
        assembler().assemble("q", memory=WindowMemory(COUNTER), history=[])
    with pytest.raises(InvalidMessageError, match="starting with it"):
        assembler().assemble([Message(role="assistant", content="x")])
    with pytest.raises(InvalidConfigError, match="not offered"):
        assembler(
            zone_limits={"tools": 10}, tool_selector=ToolSelector(always_include=["nope"])
        ).assemble("q", tools=TOOLS)
    with pytest.raises(InvalidConfigError, match="needs an embedder"):
        ToolSelector(method="embedding")
