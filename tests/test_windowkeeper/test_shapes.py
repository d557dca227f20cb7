"""Every well-formed conversation is stored whole, and messages come as objects or OpenAI dicts.

Conversations may open with assistant messages (a greeting), hold several assistant messages in a
row, parallel tool calls and system notes mid-way: every memory stores them (in memory and in
SQLite), gives them back verbatim after reopening and shows them within budget. Everything that
takes messages takes OpenAI chat dicts too, and anything else gets a typed error naming the
position.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from windowkeeper import (
    Budget,
    InvalidMessageError,
    Message,
    SQLiteStore,
    TextPart,
    TokenCounter,
    as_messages,
    group_units,
    messages_to_openai,
    validate_tool_pairs,
)
from windowkeeper._assembler import ContextAssembler
from windowkeeper._cloning import clone_conversation
from windowkeeper._units import Unit, split_system
from windowkeeper.memory import (
    LayeredMemory,
    RollingSummary,
    StoredMemory,
    TokenWindow,
    TurnRecall,
    WindowMemory,
    render_unit,
)
from windowkeeper.stores import MemoryStore

from tests.strategies import conversations
from tests.test_windowkeeper.test_memory_conformance import HashEmbedder

COUNTER = TokenCounter("gpt-4o")
ROOT = Path(__file__).resolve().parents[2]

CONVERSATION: list[dict[str, Any]] = [
    {"role": "assistant", "content": "Hi! I'm Northwind Assist. How can I help today?"},
    {"role": "assistant", "content": "Tip: have your order number (NW-…) ready."},
    {
        "role": "user",
        "content": "Where are my orders NW-48213-77 and NW-31877-02?",
        "metadata": {"timestamp": "2026-03-14T10:02:11Z"},
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_yY5Wn1T7cDY5CG3RaLNRhYO2",
                "type": "function",
                "function": {"name": "lookup_order", "arguments": '{"order_id": "NW-48213-77"}'},
            },
            {
                "id": "call_REXxJvc4nj2HYCeXKW1TSgsB",
                "type": "function",
                "function": {"name": "lookup_order", "arguments": '{"order_id": "NW-31877-02"}'},
            },
        ],
    },
    {  # parallel results, in the other order
        "role": "tool",
        "tool_call_id": "call_REXxJvc4nj2HYCeXKW1TSgsB",
        "content": '{"order_id": "NW-31877-02", "status": "delivered"}',
    },
    {
        "role": "tool",
        "tool_call_id": "call_yY5Wn1T7cDY5CG3RaLNRhYO2",
        "content": '{"order_id": "NW-48213-77", "status": "exception", "eta": null}',
    },
    {"role": "assistant", "content": "NW-31877-02 was delivered; NW-48213-77 is delayed."},
    {"role": "developer", "content": "The customer is verified (CUS-2291847)."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Refund the delayed one, please."}],
        "metadata": {"timestamp": "2026-03-14T10:04:00Z"},
    },
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_p3XDP4ROzlkHSCag42rUY5e4",
                "type": "function",
                "function": {"name": "issue_refund", "arguments": '{"amount": 467.07}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_p3XDP4ROzlkHSCag42rUY5e4", "content": "RF-7731-0459"},
    {"role": "assistant", "content": "Done: refund RF-7731-0459 for $467.07."},
    {"role": "assistant", "content": "Anything else I can help with?"},
    {"role": "user", "content": "No, thanks!"},
    {"role": "assistant", "content": "Have a good day, Zoë."},
]


def notes(previous: str, units: Sequence[Unit]) -> str:
    """A stand-in summariser (unit tests only): the rendered units, newest last."""
    return "\n".join([previous, *(render_unit(u) for u in units)]).strip()


MEMORIES: dict[str, Callable[[Any], StoredMemory]] = {
    "window": lambda store: WindowMemory(COUNTER, store=store),
    "summary": lambda store: RollingSummary(COUNTER, store=store, summarizer=notes, keep_last=1),
    "recall-bm25": lambda store: TurnRecall(COUNTER, store=store, embedder=None, recent_units=1),
    "recall-hybrid": lambda store: TurnRecall(
        COUNTER, store=store, embedder=HashEmbedder(), recent_units=1
    ),
    "layered": lambda store: LayeredMemory(
        COUNTER, store=store, summarizer=notes, embedder=HashEmbedder(), recent_units=1, min_batch=1
    ),
}


def _settle(memory: StoredMemory) -> None:
    flush = getattr(memory, "flush", None)
    if callable(flush):
        flush()


def _close(memory: StoredMemory) -> None:
    close = getattr(memory, "close", None)
    if callable(close):
        close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("name", sorted(MEMORIES))
def test_a_conversation_opening_with_assistant_messages_is_stored_whole(
    name: str, kind: str, tmp_path: Path
) -> None:
    given = copy.deepcopy(CONVERSATION)
    path = tmp_path / "chat.db"
    store: Any = SQLiteStore(path) if kind == "sqlite" else MemoryStore()
    memory = MEMORIES[name](store)
    units = memory.extend(given)
    assert given == CONVERSATION  # the caller's dicts are not touched
    assert [u.user is None for u in units] == [True, False, False, False]
    assert units[0].timestamp is None
    assert units[1].timestamp == "2026-03-14T10:02:11Z"
    _settle(memory)
    _close(memory)
    if kind == "sqlite":
        store.close()
        store = SQLiteStore(path)
    reopened = MEMORIES[name](store)
    try:
        stored = [m for u in reopened.units for m in u.messages]
        # verbatim: the same messages, metadata included, in the same order
        assert messages_to_openai(stored, include_metadata=True) == messages_to_openai(
            as_messages(CONVERSATION), include_metadata=True
        )
        assert [u.index for u in reopened.units] == [0, 1, 2, 3]
        _settle(reopened)
        for budget in (0, 40, 90, 200, 400, 5_000):
            view = reopened.view("refund", budget=budget)
            assert view.tokens <= budget
            assert view.tokens == sum(COUNTER.count_message(m) for m in view.messages())
            for unit in view.recent:  # whole units, never split
                assert unit.messages == reopened.units[unit.index].messages
        assembler = ContextAssembler(COUNTER, Budget(context_window=700, generation_reserve=100))
        turn = {"role": "user", "content": "And when does the refund arrive?"}
        out = assembler.assemble(turn, system="You are Northwind Assist.", memory=reopened)
        assert out.report.prompt_tokens == COUNTER.count_messages(out.messages)
        assert out.report.prompt_tokens <= 600
        assert out.messages[-1] == Message(role="user", content=turn["content"])
        shown = [m for m in out.messages if m.metadata.get("windowkeeper") is None]
        validate_tool_pairs(shown[1:], finished=True)
        big = ContextAssembler(COUNTER, Budget(context_window=20_000, generation_reserve=100))
        whole = big.assemble(turn, system="You are Northwind Assist.", memory=reopened)
        # with room, the greeting is shown: verbatim first, or in the summary or recalled block
        assert "How can I help today?" in whole.messages[1].text
        if name == "window":
            assert whole.messages[1] == stored[0]
    finally:
        _close(reopened)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_any_conversation_comes_back_verbatim_from_sqlite(messages: list[Message]) -> None:
    import tempfile

    _, rest = split_system(messages)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "chat.db")
        with SQLiteStore(path) as store:
            try:
                WindowMemory(COUNTER, store=store).extend(rest)
            except InvalidMessageError:
                # only the conversation's last turn may leave a tool call open (dropped above)
                assert rest[-1].tool_calls
                return
        with SQLiteStore(path) as store:
            back = [m for u in WindowMemory(COUNTER, store=store).units for m in u.messages]
    assert messages_to_openai(back, include_metadata=True) == messages_to_openai(
        rest, include_metadata=True
    )


def test_units_without_a_user_message_are_summarised_recalled_and_cloned() -> None:
    calls: list[list[int]] = []

    def summarize(previous: str, units: Sequence[Unit]) -> str:
        calls.append([u.index for u in units])
        return notes(previous, units)

    memory = LayeredMemory(
        COUNTER, summarizer=summarize, embedder=None, recent_units=1, min_batch=1
    )
    memory.extend(CONVERSATION)
    assert memory.flush(timeout=10)
    assert calls[0][0] == 0  # the greeting is summarised like any unit
    assert "Northwind Assist" in memory.summary
    recall = TurnRecall(COUNTER, embedder=None, recent_units=1)
    recall.extend(CONVERSATION)
    recalled, _ = recall.recall("Northwind Assist greeting order number", budget=400)
    assert 0 in [u.index for u in recalled]
    memory.close()
    artifact = clone_conversation(CONVERSATION, counter=COUNTER, summarizer=notes, max_tokens=800)
    assert artifact.intent.startswith("Where are my orders")
    assert "RF-7731-0459" in artifact.render()


def test_the_token_window_keeps_or_drops_a_greeting_whole() -> None:
    messages = [Message(role="system", content="Be brief."), *as_messages(CONVERSATION)]
    full = TokenWindow(COUNTER, max_tokens=5_000).trim(messages)
    assert full.messages == tuple(messages)
    assert full.kept_units == 4
    tight = TokenWindow(COUNTER, max_tokens=60).trim(messages)
    assert tight.messages[0].role == "system"
    assert tight.messages[1].role == "user"  # no greeting fragment, no orphan tool result
    assert [d.what for d in tight.dropped] == ["unit 0", "unit 1", "unit 2"]


# ------------------------------------------------------------------------- invalid shapes


def test_invalid_shapes_keep_a_typed_error_naming_the_index() -> None:
    memory = WindowMemory(COUNTER)
    orphan = [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_x", "content": "42"},
    ]
    with pytest.raises(InvalidMessageError, match="no earlier assistant message called") as info:
        memory.add(orphan)
    assert info.value.index == 1
    unanswered = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
    ]
    with pytest.raises(InvalidMessageError, match="no tool result: a finished turn") as info:
        memory.add(unanswered)
    assert info.value.index == 1
    with pytest.raises(InvalidMessageError, match="no tool result before message 2") as info:
        memory.extend([*unanswered, {"role": "user", "content": "well?"}])
    assert info.value.index == 1
    assert len(memory) == 0  # nothing half-stored
    with pytest.raises(InvalidMessageError, match="got 2 units: store a whole conversation"):
        memory.add([{"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "x"}])


def test_no_error_message_says_a_assistant() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "packages").rglob("*.py"))
    assert not re.search(r"\ba (assistant|\{[^}]*role[^}]*\})", source)


# ----------------------------------------------------------------- messages as OpenAI dicts


def test_the_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    memory = namespace["memory"]
    assert len(memory) == 1
    assert memory.units[0].messages[-1].text == "..."
    memory.close()


def test_everything_that_takes_messages_takes_openai_dicts() -> None:
    dicts = copy.deepcopy(CONVERSATION)
    objects = as_messages(CONVERSATION)
    assert COUNTER.count_messages(dicts) == COUNTER.count_messages(objects)
    assert COUNTER.count_zones_of(dicts) == COUNTER.count_zones_of(objects)
    assert COUNTER.count_message(dicts[2]) == COUNTER.count_message(objects[2])
    assert [u.messages for u in group_units(dicts)] == [u.messages for u in group_units(objects)]
    validate_tool_pairs(dicts)
    assembler = ContextAssembler(COUNTER, Budget(context_window=4_000, generation_reserve=100))
    out = assembler.assemble(
        {"role": "user", "content": "hi"},
        system={"role": "system", "content": "Be brief."},
        history=dicts,
    )
    assert [m.role for m in out.messages][:3] == ["system", "assistant", "assistant"]
    mixed = assembler.assemble([objects[2], *dicts[3:6]], history=dicts[:2])
    assert mixed.messages[-4] is objects[2]  # a Message is kept as the very object
    window = TokenWindow(COUNTER, max_tokens=5_000).trim(dicts)
    assert window.messages == tuple(objects)
    assert dicts == CONVERSATION


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: WindowMemory(COUNTER).add([{"role": "user", "content": "a"}, 5]), "message 1: "),
        (lambda: WindowMemory(COUNTER).add("hello"), "messages must be a list of messages"),
        (lambda: WindowMemory(COUNTER).extend([None]), "message 0: expected a Message or"),
        (lambda: COUNTER.count_messages([Message(role="user", content="a"), "b"]), "message 1: "),
        (lambda: COUNTER.count_messages("hello"), "messages must be a list of messages"),
        (lambda: COUNTER.count_zones_of([{"role": "robot", "content": "x"}]), "message 0: role"),
        (lambda: COUNTER.count_message(3), "expected a Message or an OpenAI chat dict"),
        (
            lambda: ContextAssembler(
                COUNTER, Budget(context_window=900, generation_reserve=100)
            ).assemble("hi", history=[{"role": "user", "content": "a"}, object()]),
            "message 1: expected a Message",
        ),
        (
            lambda: ContextAssembler(
                COUNTER, Budget(context_window=900, generation_reserve=100)
            ).assemble([7]),
            "message 0: expected a Message",
        ),
        (
            lambda: clone_conversation([{"role": "user", "content": "a"}, 1.5], counter=COUNTER),
            "message 1: ",
        ),
    ],
)
def test_anything_else_gets_a_typed_error_naming_the_position(
    call: Callable[[], object], match: str
) -> None:
    with pytest.raises(InvalidMessageError, match=match):
        call()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"content": 5}, "content must be a str or a list of content parts.*got int 5"),
        ({"content": None}, "got NoneType None \\(use '' for no content\\)"),
        ({"content": b"hi"}, "content must be a str or a list"),
        ({"content": {"type": "text", "text": "hi"}}, "content must be a str or a list"),
        ({"content": ["hi", 5]}, "content\\[0\\] must be a TextPart"),
        ({"content": [{"type": "image_url"}]}, "content\\[0\\] must look like"),
        ({"content": "x", "name": 3}, "name must be a str or None; got int 3"),
        ({"content": "x", "tool_call_id": 9}, "tool_call_id must be a str or None"),
        ({"content": "x", "metadata": ["a"]}, "metadata must be a dict or None"),
        ({"content": "x", "tool_calls": "f"}, "tool_calls must be a list"),
        ({"content": "x", "tool_calls": [3]}, "tool_calls\\[0\\] must be a ToolCall"),
        ({"role": "robot", "content": "x"}, "role must be one of"),
        ({"role": 3, "content": "x"}, "role must be one of"),
    ],
)
def test_bad_message_fields_get_typed_errors(kwargs: dict[str, Any], match: str) -> None:
    kwargs = {"role": "user", **kwargs}
    with pytest.raises(InvalidMessageError, match=match):
        Message(**kwargs)


def test_bad_parts_get_typed_errors() -> None:
    with pytest.raises(InvalidMessageError, match=r"TextPart\.text must be a str; got int 3"):
        TextPart(text=3)  # type: ignore[arg-type]


def test_openai_content_parts_and_tool_call_dicts_are_accepted() -> None:
    m = Message(role="user", content=[{"type": "text", "text": "hi"}, TextPart(text="there")])
    assert m.text == "hi\nthere"
    assert m == Message.from_openai(
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}],
        }
    )
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    a = Message(role="assistant", tool_calls=[call])
    assert a.tool_calls[0].arguments == '{"a": 1}'
    assert a.to_openai()["tool_calls"][0]["id"] == "c1"


def test_a_stored_system_note_is_history_not_the_system_prompt() -> None:
    memory = WindowMemory(COUNTER)
    note = Message(role="developer", content="The customer is verified (CUS-2291847).")
    memory.add([note, Message(role="assistant", content="Welcome back, Zoë!")])
    assembler = ContextAssembler(COUNTER, Budget(context_window=2_000, generation_reserve=100))
    system = Message(role="system", content="You are Northwind Assist.")
    out = assembler.assemble("hi", system=system, memory=memory)
    assert out.messages[1] is memory.units[0].messages[0]
    assert out.report.zones["system"] == COUNTER.count_message(system)
    assert out.report.zones["history"] == memory.unit_tokens(0)
    assert COUNTER.count_zones_of(out.messages, system=1) == {
        k: out.report.zones[k] for k in ("system", "tools", "rag", "history", "user")
    }


@pytest.mark.parametrize("strategy", ["window", "summary", "recall", "layered"])
def test_the_cli_replays_audits_and_clones_a_transcript_opening_with_a_greeting(
    strategy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from windowkeeper.cli import main

    path = tmp_path / "greeting.json"
    system = {"role": "system", "content": "You are Northwind Assist."}
    path.write_text(json.dumps({"messages": [system, *CONVERSATION]}), encoding="utf-8")
    store = tmp_path / "replay.db"
    args = ["replay", str(path), "--strategy", strategy, "--embedder", "none", "--json"]
    assert main([*args, "--settle", "--store", str(store)]) == 0
    rows = json.loads(capsys.readouterr().out)["turns"]
    assert len(rows) == 3  # one request per user turn; the greeting makes none
    assert rows[0]["stored"] == 1  # the greeting was stored before the first request
    with SQLiteStore(store) as saved:
        assert saved.count() == 4
        assert saved.units()[0].messages[0].text.startswith("Hi! I'm Northwind Assist")
    assert main(["audit", str(path), "--json"]) == 0
    audit = json.loads(capsys.readouterr().out)
    assert len(audit["turns"]) == 3
    assert main(["clone", str(path), "--json"]) == 0
    artifact = json.loads(capsys.readouterr().out)
    assert artifact["intent"].startswith("Where are my orders")
    assert artifact["source"]["units"] == 4
