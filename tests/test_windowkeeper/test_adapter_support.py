"""Core pieces the framework adapters share: Sessions, ChatSummarizer, fitting a long tool loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from windowkeeper import (
    MESSAGE_ID,
    Budget,
    BudgetExceededError,
    ChatSummarizer,
    ContextAssembler,
    ContextEditor,
    InvalidConfigError,
    InvalidMessageError,
    MemoryStore,
    Message,
    RollingSummary,
    Sessions,
    SQLiteStore,
    TokenCounter,
    ToolCall,
    TurnLog,
    Unit,
    WindowMemory,
    validate_tool_pairs,
)

COUNTER = TokenCounter("gpt-4o")


def framework_messages(turns: int, prefix: str = "m") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in range(turns):
        out.append({"id": f"{prefix}{t}u", "role": "user", "content": f"question {t}"})
        out.append({"id": f"{prefix}{t}a", "role": "assistant", "content": f"answer {t}"})
    return out


def convert(items: Sequence[dict[str, Any]]) -> list[Message]:
    return [
        Message(role=d["role"], content=d["content"], metadata={MESSAGE_ID: d["id"]})
        if d.get("id")
        else Message(role=d["role"], content=d["content"])
        for d in items
    ]


def key(d: dict[str, Any]) -> str | None:
    return d.get("id")


class TestSessions:
    def test_stores_each_turn_once_and_converts_only_new_items(self) -> None:
        converted: list[int] = []

        def counting_convert(items: Sequence[dict[str, Any]]) -> list[Message]:
            converted.append(len(items))
            return convert(items)

        sessions: Sessions[dict[str, Any]] = Sessions(
            lambda sid: WindowMemory(COUNTER, session_id=sid)
        )
        msgs = framework_messages(3)
        assert len(sessions.sync("a", msgs, key=key, convert=counting_convert)) == 3
        assert sessions.sync("a", msgs, key=key, convert=counting_convert) == []
        msgs += framework_messages(5)[6:]  # turns 3 and 4
        assert [u.index for u in sessions.sync("a", msgs, key=key, convert=counting_convert)] == [
            3,
            4,
        ]
        assert converted == [6, 4]
        assert len(sessions.memory("a")) == 5
        assert len(sessions.memory("b")) == 0

    def test_restart_over_sqlite_stores_nothing_twice(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        store = SQLiteStore(path)
        first: Sessions[dict[str, Any]] = Sessions(
            lambda sid: WindowMemory(COUNTER, store=store, session_id=sid)
        )
        msgs = framework_messages(4)
        first.sync("t", msgs, key=key, convert=convert)
        first.close()
        store.close()
        store = SQLiteStore(path)
        second: Sessions[dict[str, Any]] = Sessions(
            lambda sid: WindowMemory(COUNTER, store=store, session_id=sid)
        )
        msgs += framework_messages(5)[8:]
        stored = second.sync("t", msgs, key=key, convert=convert)
        assert [u.index for u in stored] == [4]
        assert [u.user.text for u in second.memory("t").units] == [  # type: ignore[attr-defined,union-attr]
            f"question {t}" for t in range(5)
        ]
        store.close()

    def test_without_a_checkpoint_each_call_brings_only_new_turns(self) -> None:
        sessions: Sessions[dict[str, Any]] = Sessions(
            lambda sid: WindowMemory(COUNTER, session_id=sid)
        )
        for t in range(3):
            run = framework_messages(t + 1, prefix=f"r{t}-")[-2:]
            assert len(sessions.sync("x", run, key=key, convert=convert)) == 1
            assert sessions.sync("x", [], key=key, convert=convert) == []
        assert len(sessions.memory("x")) == 3

    def test_an_unfinished_turn_stores_nothing(self) -> None:
        sessions: Sessions[dict[str, Any]] = Sessions(
            lambda sid: WindowMemory(COUNTER, session_id=sid)
        )
        call = ToolCall(id="c1", name="lookup", arguments="{}")

        def with_call(items: Sequence[dict[str, Any]]) -> list[Message]:
            return [
                *convert(items[:1]),
                Message(role="assistant", tool_calls=(call,), metadata={MESSAGE_ID: "x"}),
            ]

        with pytest.raises(InvalidMessageError, match="c1"):
            sessions.sync("a", framework_messages(1)[:1], key=key, convert=with_call)
        assert len(sessions.memory("a")) == 0

    def test_least_recently_used_memory_is_closed_and_reopens(self) -> None:
        closed: list[str] = []

        class Closing(WindowMemory):
            def close(self) -> None:
                closed.append(self.session_id)

        from windowkeeper import MemoryStore

        store = MemoryStore()
        sessions: Sessions[dict[str, Any]] = Sessions(
            lambda sid: Closing(COUNTER, store=store, session_id=sid), max_open=2
        )
        sessions.sync("a", framework_messages(1), key=key, convert=convert)
        sessions.memory("b")
        sessions.memory("c")
        assert closed == ["a"]
        assert "a" not in sessions
        assert len(sessions.memory("a")) == 1  # reopened from the store
        sessions.close()
        assert sorted(closed) == ["a", "a", "b", "c"]

    def test_bad_input_is_named(self) -> None:
        with pytest.raises(InvalidConfigError, match="factory"):
            Sessions("nope")  # type: ignore[arg-type]
        with pytest.raises(InvalidConfigError, match="max_open"):
            Sessions(lambda sid: WindowMemory(COUNTER), max_open=0)
        sessions: Sessions[Any] = Sessions(lambda sid: object())  # type: ignore[arg-type,return-value]
        with pytest.raises(InvalidConfigError, match="must return a memory"):
            sessions.memory("a")
        with pytest.raises(InvalidConfigError, match="session_id"):
            Sessions(lambda sid: WindowMemory(COUNTER)).memory("")


UNIT = Unit(
    index=0,
    messages=(
        Message(role="user", content="Ship order A-17 to Oslo"),
        Message(role="assistant", content="Done."),
    ),
)


class TestChatSummarizer:
    def test_appends_notes_and_sends_the_turns(self) -> None:
        seen: list[list[dict[str, Any]]] = []

        def complete(chat: list[dict[str, Any]]) -> str:
            seen.append(chat)
            return " - A-17 ships to Oslo. "

        out = ChatSummarizer(complete)("- Ann likes tea.", [UNIT])
        assert out == "- Ann likes tea.\n- A-17 ships to Oslo."
        assert seen[0][0]["role"] == "system"
        assert "note-taker" in seen[0][0]["content"]
        assert "Ship order A-17 to Oslo" in seen[0][1]["content"]

    def test_condenses_without_units_and_keeps_text_on_empty_reply(self) -> None:
        summarizer = ChatSummarizer(lambda chat: chat[0]["content"][:3])
        assert summarizer("long notes", []) == "You"  # the condense prompt was sent
        assert ChatSummarizer(lambda chat: "  ")("keep me", []) == "keep me"
        assert ChatSummarizer(lambda chat: "x")("", []) == ""

    def test_async_complete(self) -> None:
        async def complete(chat: list[dict[str, Any]]) -> str:
            await asyncio.sleep(0)
            return "- note"

        result = ChatSummarizer(complete)("", [UNIT])
        assert asyncio.run(result) == "- note"  # type: ignore[arg-type]

    def test_a_memory_summarises_with_it_in_the_background(self) -> None:
        summary = RollingSummary(
            COUNTER,
            summarizer=ChatSummarizer(lambda chat: "- turn noted"),
            keep_last=1,
            min_batch=1,
        )
        for t in range(4):
            summary.add(
                [{"role": "user", "content": f"q{t}"}, {"role": "assistant", "content": "a"}]
            )
        assert summary.flush(timeout=10)
        assert "- turn noted" in summary.view("q", budget=500).summary
        summary.close()

    def test_bad_input_is_named(self) -> None:
        with pytest.raises(InvalidConfigError, match="complete"):
            ChatSummarizer("model")  # type: ignore[arg-type]
        with pytest.raises(InvalidConfigError, match="prompt"):
            ChatSummarizer(lambda chat: "", prompt=" ")
        with pytest.raises(TypeError, match="text"):
            ChatSummarizer(lambda chat: 3)("", [UNIT])  # type: ignore[arg-type,return-value]


def tool_loop(steps: int, size: int = 400) -> list[Message]:
    turn = [Message(role="user", content="Find the cheapest flight to Oslo.")]
    for i in range(steps):
        turn.append(
            Message(
                role="assistant", tool_calls=(ToolCall(id=f"c{i}", name="search", arguments="{}"),)
            )
        )
        turn.append(Message(role="tool", tool_call_id=f"c{i}", content="fare data " * size))
    return turn


class TestFitTurn:
    def test_clears_older_results_oldest_first_until_it_fits(self) -> None:
        turn = tool_loop(6)
        limit = 2_000
        edited, cleared = ContextEditor(COUNTER).fit_turn([], turn, limit)
        assert COUNTER.count_messages(edited) <= limit
        assert edited[0] is turn[0]  # the user's message, the very object
        assert edited[-1] is turn[-1]
        assert edited[-2] is turn[-2]
        cleared_ids = [d.what.split()[2] for d in cleared]
        assert cleared_ids == [f"c{i}" for i in range(len(cleared))]  # oldest first
        for m, original in zip(edited, turn, strict=True):
            if m is not original:
                assert m.text.startswith("[tool result cleared: search, ")
                assert m.tool_call_id == original.tool_call_id
        validate_tool_pairs(edited, finished=True)
        assert COUNTER.count_messages(edited[:-2]) > 0
        assert turn[2].text.startswith("fare data")  # the input is untouched

    def test_keeps_everything_when_it_already_fits(self) -> None:
        turn = tool_loop(2, size=5)
        edited, cleared = ContextEditor(COUNTER).fit_turn([], turn, 10_000)
        assert cleared == []
        assert all(a is b for a, b in zip(edited, turn, strict=True))

    def test_the_assembler_fits_a_long_loop_and_reports_the_clearing(self) -> None:
        assembler = ContextAssembler(COUNTER, Budget(context_window=2_400, generation_reserve=200))
        out = assembler.assemble(tool_loop(8), system="Be brief.")
        assert out.report.prompt_tokens <= 2_200
        assert any("of the current turn" in d.what for d in out.report.dropped)

    def test_says_by_how_much_when_even_clearing_cannot_fit(self) -> None:
        assembler = ContextAssembler(COUNTER, Budget(context_window=600, generation_reserve=100))
        with pytest.raises(BudgetExceededError, match=r"after clearing \d+ older tool results"):
            assembler.assemble(tool_loop(3), system="Be brief.")

    def test_can_be_switched_off(self) -> None:
        assembler = ContextAssembler(
            COUNTER, Budget(context_window=2_400, generation_reserve=200), clear_turn_results=False
        )
        with pytest.raises(BudgetExceededError, match="short by"):
            assembler.assemble(tool_loop(8), system="Be brief.")


def as_core(items: Sequence[dict[str, Any]]) -> list[Message]:
    return [Message(**d) for d in items]


class TestTurnLog:
    def make(self, store: Any) -> TurnLog[dict[str, Any]]:
        return TurnLog(
            lambda sid: WindowMemory(COUNTER, store=store, session_id=sid),
            "ann",
            convert=as_core,
            counter=COUNTER,
            store=store,
        )

    def test_stores_finished_turns_and_holds_the_rest(self) -> None:
        log = self.make(MemoryStore())
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        assert log.add([{"role": "user", "content": "q"}]) == []
        assert log.add([{"role": "assistant", "content": "", "tool_calls": [call]}]) == []
        assert len(log.pending) == 2
        stored = log.add(
            [
                {"role": "tool", "tool_call_id": "c1", "content": "r"},
                {"role": "assistant", "content": "a"},
            ]
        )
        assert [len(u.messages) for u in stored] == [4]
        assert log.pending == []

    def test_view_and_held_turn_fit_the_budget_together(self) -> None:
        log = self.make(MemoryStore())
        for i in range(20):
            log.add(
                [
                    {"role": "user", "content": f"q{i} " * 20},
                    {"role": "assistant", "content": "a " * 20},
                ]
            )
        log.add([{"role": "user", "content": "now " * 30}])
        view, held = log.view(200)
        assert len(held) == 1
        shown = [*view.messages(), *as_core(held)]
        assert COUNTER.count_messages(shown) <= 200
        assert view.recent  # some history still fits

    def test_clear_continues_in_a_new_epoch_and_reopens_there(self, tmp_path: Path) -> None:
        store = SQLiteStore(tmp_path / "log.db")
        log = self.make(store)
        log.add([{"role": "user", "content": "old"}, {"role": "assistant", "content": "x"}])
        log.clear()
        assert log.session == "ann#1"
        assert len(log.memory) == 0
        log.add([{"role": "user", "content": "new"}, {"role": "assistant", "content": "y"}])
        reopened = self.make(store)
        assert reopened.session == "ann#1"
        assert [u.user.text for u in reopened.memory.units] == ["new"]  # type: ignore[attr-defined,union-attr]
        assert len(WindowMemory(COUNTER, store=store, session_id="ann")) == 1  # nothing deleted
        store.close()

    def test_each_message_is_converted_once(self) -> None:
        converted: list[str] = []

        def counting(items: Sequence[dict[str, Any]]) -> list[Message]:
            converted.extend(str(d["content"]) for d in items)
            return as_core(items)

        log = TurnLog(
            lambda sid: WindowMemory(COUNTER, session_id=sid),
            "ann",
            convert=counting,
            counter=COUNTER,
        )
        log.add([{"role": "user", "content": "q1"}])
        log.view(500)
        log.add([{"role": "assistant", "content": "a1"}])
        core = as_core([{"role": "user", "content": "q2"}])
        log.add([{"role": "user", "content": "q2"}], converted=core)  # the caller converted it
        view, held = log.view(500)
        log.add([{"role": "assistant", "content": "a2"}])
        assert converted == ["q1", "a1", "a2"]
        assert [m.text for m in view.messages()] == ["q1", "a1"]
        assert held[0]["content"] == "q2"
        assert [u.user.text for u in log.memory.units] == ["q1", "q2"]  # type: ignore[attr-defined,union-attr]

    def test_bad_input_is_named(self) -> None:
        with pytest.raises(InvalidConfigError, match="converted must hold one message per item"):
            self.make(MemoryStore()).add([{"role": "user", "content": "q"}], converted=[])
        with pytest.raises(InvalidConfigError, match="session_id"):
            TurnLog(lambda sid: WindowMemory(COUNTER), "", convert=as_core, counter=COUNTER)
        with pytest.raises(InvalidConfigError, match="budget"):
            self.make(MemoryStore()).view(-1)


class TestAssemblerEditor:
    def test_older_tool_results_in_the_shown_history_are_cleared_and_reported(self) -> None:
        history: list[Message] = []
        for i in range(3):
            history += [
                Message(role="user", content=f"order {i}?"),
                *tool_loop(1, size=100)[1:],
                Message(role="assistant", content="done"),
            ]
        history = [  # unique call ids per turn
            m
            if m.role not in ("assistant", "tool") or not (m.tool_calls or m.tool_call_id)
            else Message(
                role=m.role,
                content=m.parts,
                tool_calls=tuple(
                    ToolCall(id=f"t{n}", name=c.name, arguments=c.arguments) for c in m.tool_calls
                ),
                tool_call_id=f"t{n}" if m.tool_call_id else None,
            )
            for n, m in ((k // 4, m) for k, m in enumerate(history))
        ]
        editor = ContextEditor(COUNTER, keep_tool_results=0)
        budget = Budget(context_window=8_000, generation_reserve=100)
        plain = ContextAssembler(COUNTER, budget).assemble("next?", history=history)
        edited = ContextAssembler(COUNTER, budget, editor=editor).assemble("next?", history=history)
        assert edited.report.prompt_tokens < plain.report.prompt_tokens
        assert any(d.what.startswith("tool result") for d in edited.report.dropped)
        assert edited.report.prompt_tokens == COUNTER.count_messages(edited.messages)
        with pytest.raises(InvalidConfigError, match="editor"):
            ContextAssembler(COUNTER, budget, editor="yes")  # type: ignore[arg-type]


async def test_call_blocking_leaves_the_event_loop_only_for_a_shared_store() -> None:
    import threading

    from windowkeeper.adapters import call_blocking
    from windowkeeper.stores import MemoryStore

    class Shared:
        shared = True

    loop_thread = threading.get_ident()
    inline = await call_blocking(MemoryStore(), threading.get_ident)
    moved = await call_blocking(Shared(), threading.get_ident)
    assert inline == loop_thread  # in-process or SQLite: no thread hop
    assert moved != loop_thread  # over the network: a worker thread, the loop keeps serving
    assert await call_blocking(Shared(), lambda a, *, b: a + b, 1, b=2) == 3
