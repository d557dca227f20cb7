from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from windowkeeper import InvalidConfigError, InvalidMessageError, Message, ToolCall
from windowkeeper._units import Unit, group_units, split_system
from windowkeeper.stores import ConversationStore, MemoryStore, SQLiteStore
from windowkeeper.stores._sqlite import Durability


def _conversation() -> list[Message]:
    call = ToolCall(id="c1", name="lookup", arguments='{"id": 7}')
    return [
        Message(role="system", content="Be brief."),
        Message(
            role="user",
            content="first",
            metadata={"timestamp": "2026-03-14T10:00:00Z", "session_id": "s"},
        ),
        Message(role="assistant", content="one"),
        Message(role="system", content="chunk", metadata={"zone": "rag"}),
        Message(role="user", content="second"),
        Message(role="assistant", tool_calls=(call,)),
        Message(role="tool", tool_call_id="c1", content="{}"),
        Message(role="assistant", content="two"),
    ]


def test_units_group_whole_turns() -> None:
    system, rest = split_system(_conversation())
    assert [m.text for m in system] == ["Be brief."]
    units = group_units(rest)
    assert [len(u.messages) for u in units] == [2, 5]
    assert units[1].messages[0].zone_hint == "rag"
    assert units[1].user.text == "second"
    assert units[0].timestamp == "2026-03-14T10:00:00Z"
    assert units[0].session_id == "s"
    assert "assistant: one" in units[0].text


def test_messages_before_the_first_user_turn_form_a_unit_of_their_own() -> None:
    greeting = Message(role="assistant", content="hi", metadata={"timestamp": "t0"})
    units = group_units([greeting, Message(role="user", content="x")])
    assert [u.user for u in units] == [None, units[1].messages[0]]
    assert units[0].messages == (greeting,)
    assert units[0].timestamp == "t0"
    assert Unit(index=0, messages=(Message(role="assistant", content="x"),)).user is None
    with pytest.raises(InvalidMessageError, match="at most one user message"):
        Unit(
            index=0, messages=(Message(role="user", content="a"), Message(role="user", content="b"))
        )
    with pytest.raises(InvalidMessageError, match="at least one message"):
        Unit(index=0, messages=())


def _unit(i: int, session: str | None = None, text: str = "hi") -> Unit:
    return Unit(
        index=i,
        session_id=session,
        messages=(
            Message(role="user", content=f"{text} {i}", metadata={"turn": i}),
            Message(role="assistant", content=f"ok {i}"),
        ),
    )


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ConversationStore:
    return MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "chat.db")


def test_store_is_append_only_and_isolated_per_session(store: ConversationStore) -> None:
    assert isinstance(store, ConversationStore)
    for i in range(3):
        store.append(_unit(i, "a"))
    store.append(_unit(0, "b"))
    assert store.count("a") == 3
    assert store.count("b") == 1
    assert store.sessions() == ["a", "b"]
    assert [u.user.text for u in store.units("a", 1)] == ["hi 1", "hi 2"]
    assert [u.user.text for u in store.units("b")] == ["hi 0"]
    with pytest.raises(InvalidConfigError, match="append-only"):
        store.append(_unit(1, "a"))
    assert store.count("a") == 3


def test_sqlite_reopen_returns_every_turn_verbatim(tmp_path: Path) -> None:
    (tmp_path / "deep").mkdir()  # the store never creates folders
    path = tmp_path / "deep" / "chat.db"
    units = [_unit(i, "s", text="Zoë 🙂 <|endoftext|>") for i in range(20)]
    with SQLiteStore(path) as store:
        for u in units:
            store.append(u)
    again = SQLiteStore(path).units("s")
    assert [u.messages for u in again] == [u.messages for u in units]
    assert [m.metadata for u in again for m in u.messages] == [
        m.metadata for u in units for m in u.messages
    ]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _writer(path: str, durability: Durability, committed: ctypes.c_longlong) -> None:
    store = SQLiteStore(path, durability=durability)
    i = 0
    while True:  # killed from outside, mid-write at some point
        store.append(_unit(i, "k"))
        i += 1
        committed.value = i  # append returned: unit i - 1 is committed


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_a_killed_writer_leaves_every_committed_unit_readable(
    tmp_path: Path, durability: Durability
) -> None:
    path = str(tmp_path / "kill.db")
    ctx = multiprocessing.get_context("spawn")
    # no lock: a process killed while holding it would leave the reader waiting forever
    committed = ctx.Value("q", 0, lock=False)
    proc = ctx.Process(target=_writer, args=(path, durability, committed))
    proc.start()
    deadline = time.time() + 30
    while time.time() < deadline and committed.value < 20:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no clean-up, no atexit, no flush
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    units = SQLiteStore(path).units("k")
    assert committed.value >= 20
    assert len(units) >= committed.value  # 0 committed units lost (one more may be in the file)
    assert [u.index for u in units] == list(range(len(units)))
    assert all(u.user.text == f"hi {u.index}" for u in units)


@pytest.mark.parametrize(("durability", "level"), [("normal", 1), ("full", 2)])
def test_sqlite_applies_the_durability_setting(
    tmp_path: Path, durability: Durability, level: int
) -> None:
    with SQLiteStore(tmp_path / "chat.db", durability=durability) as store:
        assert store.durability == durability
        # read back through the store's own connection: PRAGMA synchronous is per connection
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == level


def test_sqlite_durability_defaults_to_normal(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "chat.db") as store:
        assert store.durability == "normal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1


@pytest.mark.parametrize("bad", ["fast", "FULL", "", None, 2, ["full"]])
def test_sqlite_rejects_an_unknown_durability(tmp_path: Path, bad: object) -> None:
    with pytest.raises(InvalidConfigError) as info:
        SQLiteStore(tmp_path / "chat.db", durability=bad)  # type: ignore[arg-type]
    assert str(info.value) == f"durability must be 'normal' or 'full'; got {bad!r}"
    assert list(tmp_path.iterdir()) == []  # checked before the file is opened


def test_sqlite_never_creates_a_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "deeper" / "chat.db"
    with pytest.raises(InvalidConfigError, match="does not exist") as info:
        SQLiteStore(path)
    assert repr(str(path)) in str(info.value)
    assert repr(str(path.parent)) in str(info.value)
    assert "create the folder first" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no folder, no file
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidConfigError, match="is not a folder"):
        SQLiteStore(tmp_path / "file" / "chat.db")
    with SQLiteStore(":memory:", durability="full") as store:  # no folder involved
        store.append(_unit(0))
        assert store.count() == 1


def test_sqlite_rejects_a_directory_and_a_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="directory"):
        SQLiteStore(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(InvalidConfigError, match="not a windowkeeper SQLite store"):
        SQLiteStore(junk)
