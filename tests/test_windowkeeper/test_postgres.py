"""PostgresStore against a real PostgreSQL server (pgserver, or WINDOWKEEPER_TEST_POSTGRES_DSN).

The store protocol, versioned summaries and vectors, schema set-up and migration, many writer
processes on the same sessions, summaries made once across processes, killed writers, a server
restart, and the typed errors a bad DSN or schema gets.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
import pytest
from windowkeeper import (
    InvalidConfigError,
    Message,
    PostgresStore,
    StoreUnavailableError,
    TokenCounter,
)
from windowkeeper._units import Unit
from windowkeeper.memory import RollingSummary, TurnRecall, WindowMemory
from windowkeeper.stores import SummaryRecord
from windowkeeper.stores._postgres import _V1, SCHEMA_VERSION

from tests.conftest import Postgres
from tests.test_windowkeeper.test_units_stores import _unit

COUNTER = TokenCounter("gpt-4o")


unit = _unit  # the store tests' unit: "<text> <i>" and "ok <i>", metadata {"turn": i}


@pytest.fixture
def store(postgres: Postgres, pg_schema: str) -> Iterator[PostgresStore]:
    with PostgresStore(postgres.dsn, schema=pg_schema, max_size=4) as s:
        yield s


# ------------------------------------------------------------------------------ the protocol


def test_units_round_trip_verbatim_per_session(store: PostgresStore) -> None:
    units = [unit(i, "s", text="Zoë 🙂 <|endoftext|> ' \" \\ %s") for i in range(5)]
    for u in units:
        store.append(u)
    store.append(unit(0, "other"))
    again = store.units("s")
    assert [u.messages for u in again] == [u.messages for u in units]
    assert [m.metadata for u in again for m in u.messages] == [
        m.metadata for u in units for m in u.messages
    ]
    assert [u.index for u in store.units("s", 1, 3)] == [1, 2]
    assert store.count("s") == 5
    assert store.count("missing") == 0
    assert store.sessions() == ["other", "s"]
    with pytest.raises(InvalidConfigError, match=r"must be the next index .*\(5\); got 3"):
        store.append(unit(3, "s"))
    assert store.count("s") == 5  # the refused append left nothing behind
    assert store.schema_version == SCHEMA_VERSION


def test_append_next_takes_the_index_on_the_server(store: PostgresStore) -> None:
    first = store.append_next(unit(0, "n"))
    second = store.append_next(unit(0, "n"))  # a stale index is ignored, not a collision
    assert (first.index, second.index) == (0, 1)
    assert second.session_id == "n"
    assert [u.user.text for u in store.units("n")] == ["hi 0", "hi 0"]


def test_summaries_are_versioned_and_vectors_replace_by_index(store: PostgresStore) -> None:
    assert store.latest_summary("s") is None
    store.save_summary(SummaryRecord(session_id="s", version=1, covers=4, levels=("a",)))
    store.save_summary(SummaryRecord(session_id="s", version=2, covers=6, levels=("b", "c")))
    latest = store.latest_summary("s")
    assert latest is not None
    assert (latest.version, latest.covers, latest.levels) == (2, 6, ("b", "c"))
    with pytest.raises(InvalidConfigError, match=r"record\.version must be 3"):
        store.save_summary(SummaryRecord(session_id="s", version=2, covers=7, levels=("x",)))
    with pytest.raises(InvalidConfigError, match="coverage never shrinks"):
        store.save_summary(SummaryRecord(session_id="s", version=3, covers=5, levels=("x",)))
    store.save_vectors("s", "m", [(0, b"\x00\x01"), (1, b"\x02")])
    store.save_vectors("s", "m", [(1, b"\x09\x09")])
    store.save_vectors("s", "m", [])
    assert store.load_vectors("s", "m") == [(0, b"\x00\x01"), (1, b"\x09\x09")]
    assert store.load_vectors("s", "other-model") == []
    assert store.load_vectors("t", "m") == []


# ------------------------------------------------------------------------------ schema


def test_an_older_schema_is_upgraded_and_appends_continue(
    postgres: Postgres, pg_schema: str
) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:  # version 1, as it was
        conn.execute(_V1.format(s=pg_schema))
        conn.execute(f"INSERT INTO {pg_schema}.meta VALUES ('schema_version', '1')")
        for i in range(3):
            conn.execute(
                f"INSERT INTO {pg_schema}.units VALUES ('old', %s, NULL, 0, %s)",
                (i, '[{"role": "user", "content": "before ' + str(i) + '"}]'),
            )
    with pytest.raises(
        InvalidConfigError, match=r"version 1; this windowkeeper needs 2.*migrate=True"
    ):
        PostgresStore(postgres.dsn, schema=pg_schema, migrate=False)
    with PostgresStore(postgres.dsn, schema=pg_schema) as store:
        assert store.schema_version == 2
        assert store.count("old") == 3
        store.append(unit(3, "old"))
        assert [u.user.text for u in store.units("old")] == [
            "before 0",
            "before 1",
            "before 2",
            "hi 3",
        ]


def test_bad_dsn_missing_schema_and_newer_schema_get_errors_that_say_what_to_do(
    postgres: Postgres, pg_schema: str
) -> None:
    with pytest.raises(StoreUnavailableError, match="cannot be reached"):
        PostgresStore("postgresql://nobody@/none?host=/nonexistent-socket-dir", timeout=2)
    with pytest.raises(InvalidConfigError, match="dsn is not a valid connection string"):
        PostgresStore("host=a =b")
    with pytest.raises(InvalidConfigError, match="dsn must be a non-empty"):
        PostgresStore("")
    with pytest.raises(InvalidConfigError, match="schema must be a PostgreSQL name"):
        PostgresStore(postgres.dsn, schema="Robert'); DROP TABLE")
    with pytest.raises(InvalidConfigError, match="max_size must be >= min_size"):
        PostgresStore(postgres.dsn, min_size=3, max_size=2)
    with pytest.raises(InvalidConfigError, match=r"has no windowkeeper schema .*migrate=True"):
        PostgresStore(postgres.dsn, schema=pg_schema, migrate=False)
    PostgresStore(postgres.dsn, schema=pg_schema).close()
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema}.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(InvalidConfigError, match=r"version 99, newer than .*upgrade windowkeeper"):
        PostgresStore(postgres.dsn, schema=pg_schema)
    closed = PostgresStore.__new__(PostgresStore)  # never opened: a closed store says so
    closed._closed = True
    closed.dsn, closed.schema = postgres.dsn, pg_schema
    with pytest.raises(InvalidConfigError, match="is closed"):
        closed.count("s")


# ------------------------------------------------------------------------------ memories


def test_two_app_servers_share_one_conversation(postgres: Postgres, pg_schema: str) -> None:
    """Requests of one session served by two processes' memories: each sees the whole chat."""
    with (
        PostgresStore(postgres.dsn, schema=pg_schema) as one,
        PostgresStore(postgres.dsn, schema=pg_schema) as two,
    ):
        a = WindowMemory(COUNTER, store=one, session_id="chat")
        b = WindowMemory(COUNTER, store=two, session_id="chat")
        a.add(
            [
                Message(role="user", content="my name is Ann"),
                Message(role="assistant", content="hi"),
            ]
        )
        view = b.view("who am I?", budget=1000)  # b never added: it reads what a stored
        assert [m.text for m in view.messages()] == ["my name is Ann", "hi"]
        added = b.add(
            [
                Message(role="user", content="I live in Porto"),
                Message(role="assistant", content="ok"),
            ]
        )
        a.add(
            [Message(role="user", content="I like tea"), Message(role="assistant", content="noted")]
        )
        assert added.index == 1
        assert [u.index for u in a.units] == [0, 1, 2]  # a caught up with b's turn on its append
        assert [u.user.text for u in a.units] == ["my name is Ann", "I live in Porto", "I like tea"]
        assert [u.user.text for u in b.view("", budget=1000).recent] == [
            "my name is Ann",
            "I live in Porto",
            "I like tea",
        ]


@contextlib.contextmanager
def two_recall_servers(
    postgres: Postgres, schema: str, first: Any, second: Any
) -> Iterator[tuple[TurnRecall, TurnRecall]]:
    """One session's turn recall on two app servers (two stores), with these embedders."""
    with (
        PostgresStore(postgres.dsn, schema=schema) as one,
        PostgresStore(postgres.dsn, schema=schema) as two,
    ):
        a = TurnRecall(COUNTER, store=one, session_id="chat", embedder=first, recent_units=1)
        b = TurnRecall(COUNTER, store=two, session_id="chat", embedder=second, recent_units=1)
        try:
            yield a, b
        finally:
            a.close()
            b.close()


def said(text: str) -> list[Message]:
    return [Message(role="user", content=text), Message(role="assistant", content="ok")]


def test_a_second_server_reuses_the_vectors_the_first_one_saved(
    postgres: Postgres, pg_schema: str
) -> None:
    """Recall on two app servers: a turn is embedded once, by the server that stored it."""
    from tests.test_windowkeeper.test_recall import HashEmbedder

    e1, e2 = HashEmbedder(), HashEmbedder()
    with two_recall_servers(postgres, pg_schema, e1, e2) as (a, b):
        for i in range(6):
            a.add(said(f"fact {i}: code K{i}"))
        a.flush()
        assert e1.texts == 6
        view = b.view("which code had fact 2?", budget=400)  # b reads a's six turns
        b.flush()
        # the query and the last turn's user message (the query's context) only: the six
        # stored turns' vectors came from the store
        assert e2.texts == 2
        assert 2 in [u.index for u in view.recalled]
        for i in range(6):  # the same vectors as a's, row for row
            assert np.array_equal(b.index._vectors.vector(i), a.index._vectors.vector(i))
        b.add(said("fact 6: code K6"))  # a turn b stores is embedded by b, and a reuses it
        b.flush()
        assert e2.texts == 3
        a.view("fact 6?", budget=400)
        a.flush()
        assert e1.texts == 6 + 2  # the query and its context, not the turn


def test_a_vector_not_saved_yet_is_embedded_by_the_reader(
    postgres: Postgres, pg_schema: str
) -> None:
    """The first server has not saved a turn's vector yet: the second embeds it itself."""
    from tests.test_windowkeeper.test_recall import HashEmbedder

    class Held(HashEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.go = threading.Event()

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            self.go.wait(10)
            return super().embed(texts)

    e1, e2 = Held(), HashEmbedder()
    with two_recall_servers(postgres, pg_schema, e1, e2) as (a, b):
        for i in range(3):
            a.add(said(f"fact {i}"))
        b.view("fact 1?", budget=400)  # a's worker is held: nothing saved yet
        b.flush()
        assert e2.texts == 3 + 2  # the three turns and the query with its context
        e1.go.set()
        a.flush()  # a saves its own (equal) vectors over b's: the same rows, the same bytes
        assert np.array_equal(a.index._vectors.vector(1), b.index._vectors.vector(1))


def test_the_summary_lease_is_held_by_one_process_at_a_time(
    postgres: Postgres, pg_schema: str
) -> None:
    with (
        PostgresStore(postgres.dsn, schema=pg_schema) as one,
        PostgresStore(postgres.dsn, schema=pg_schema) as two,
    ):
        with one.lease("s") as held:
            assert held
            with two.lease("s") as other:
                assert not other  # the same session's lease: taken
            with two.lease("t") as other:
                assert other  # another session's: free
        with two.lease("s") as held:
            assert held  # released when the block ended


def _hold_lease(dsn: str, schema: str, ready: Any) -> None:
    store = PostgresStore(dsn, schema=schema)
    with store.lease("s") as held:
        ready.value = 1 if held else -1
        time.sleep(60)  # killed while holding it


def test_a_dead_holders_lease_is_released(postgres: Postgres, pg_schema: str) -> None:
    PostgresStore(postgres.dsn, schema=pg_schema).close()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Value("i", 0, lock=False)
    proc = ctx.Process(target=_hold_lease, args=(postgres.dsn, pg_schema, ready))
    proc.start()
    deadline = time.time() + 60
    while time.time() < deadline and ready.value == 0:
        time.sleep(0.05)
    assert ready.value == 1
    with PostgresStore(postgres.dsn, schema=pg_schema) as store:
        with store.lease("s") as held:
            assert not held
        proc.kill()
        proc.join()
        deadline = time.time() + 20
        taken = False
        while time.time() < deadline and not taken:
            with store.lease("s") as held:
                taken = held
            time.sleep(0.05)
        assert taken  # the server ended the dead process's session and its lock


# ------------------------------------------------------------------------------ many writers


def _summarize(previous: str, units: Sequence[Unit]) -> str:
    time.sleep(0.01)
    return f"{previous} [{units[0].index}-{units[-1].index}]".strip()[-2000:]


def _chat_writer(dsn: str, schema: str, worker: int, sessions: int, turns: int) -> None:
    """One app process: ``turns`` turns in each session, interleaved, summaries in the background."""
    store = PostgresStore(dsn, schema=schema, max_size=4)
    memories = {
        s: RollingSummary(
            COUNTER,
            store=store,
            session_id=f"s{s}",
            summarizer=_summarize,
            keep_last=2,
            summary_tokens=200,
        )
        for s in range(sessions)
    }
    for t in range(turns):
        for s, memory in memories.items():
            memory.view(f"turn {t}", budget=2000)
            memory.add(
                [
                    Message(role="user", content=f"s{s} w{worker} t{t}"),
                    Message(role="assistant", content=f"ok s{s} w{worker} t{t}"),
                ]
            )
    for memory in memories.values():
        memory.flush(timeout=60)
        memory.close()
    store.close()


def test_many_writer_processes_lose_nothing_and_never_collide(
    postgres: Postgres, pg_schema: str
) -> None:
    workers, sessions, turns = 4, 6, 12
    PostgresStore(postgres.dsn, schema=pg_schema).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_chat_writer, args=(postgres.dsn, pg_schema, w, sessions, turns))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    with PostgresStore(postgres.dsn, schema=pg_schema) as store:
        assert store.sessions() == sorted(f"s{s}" for s in range(sessions))
        for s in range(sessions):
            units = store.units(f"s{s}")
            assert [u.index for u in units] == list(range(workers * turns))  # gap-free
            texts = [u.user.text for u in units]
            assert all(text.startswith(f"s{s} ") for text in texts)  # no cross-session leak
            assert len(set(texts)) == len(texts)  # no duplicate
            for w in range(workers):  # no unit lost, each writer's turns in its own order
                assert [t for t in texts if f" w{w} " in t] == [
                    f"s{s} w{w} t{t}" for t in range(turns)
                ]
            latest = store.latest_summary(f"s{s}")
            assert latest is not None
            assert latest.covers <= workers * turns
            with psycopg.connect(postgres.dsn) as conn:
                versions = [
                    v
                    for (v,) in conn.execute(
                        f"SELECT version FROM {pg_schema}.summaries WHERE session_id = %s "
                        "ORDER BY version",
                        (f"s{s}",),
                    )
                ]
                spans = [
                    c
                    for (c,) in conn.execute(
                        f"SELECT covers FROM {pg_schema}.summaries WHERE session_id = %s "
                        "ORDER BY version",
                        (f"s{s}",),
                    )
                ]
            assert versions == list(range(1, len(versions) + 1))
            assert spans == sorted(set(spans))  # each range summarised once, never again


def _append_forever(dsn: str, schema: str, committed: Any) -> None:
    store = PostgresStore(dsn, schema=schema, max_size=1)
    while True:
        u = store.append_next(unit(0, "k"))
        committed.value = u.index + 1


def test_a_killed_writer_leaves_every_committed_unit_and_nothing_partial(
    postgres: Postgres, pg_schema: str
) -> None:
    PostgresStore(postgres.dsn, schema=pg_schema).close()
    ctx = multiprocessing.get_context("spawn")
    seen = 0
    for _ in range(3):
        committed = ctx.Value("q", 0, lock=False)
        proc = ctx.Process(target=_append_forever, args=(postgres.dsn, pg_schema, committed))
        proc.start()
        deadline = time.time() + 60
        while time.time() < deadline and committed.value < seen + 20:
            time.sleep(0.02)
        proc.kill()  # SIGKILL, mid-transaction at some point
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        with PostgresStore(postgres.dsn, schema=pg_schema) as store:
            units = store.units("k")
            assert len(units) >= committed.value  # every committed unit is there
            assert [u.index for u in units] == list(range(len(units)))  # gap-free
            assert store.count("k") == len(units)  # the counter and the rows agree
            assert all(u.user.text == "hi 0" and len(u.messages) == 2 for u in units)
            seen = len(units)


def test_a_server_restart_fails_calls_with_a_typed_error_then_recovers(
    postgres: Postgres, pg_schema: str
) -> None:
    with PostgresStore(postgres.dsn, schema=pg_schema, timeout=2) as store:
        for i in range(5):
            store.append(unit(i, "r"))
        postgres.stop()
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="unreachable") as info:
                store.append(unit(5, "r"))  # tried again for `timeout` seconds, then raised
            assert time.monotonic() - started >= 1.0
            assert info.value.cause
            with pytest.raises(StoreUnavailableError):
                store.units("r")  # a read too, after the same retries
        finally:
            postgres.start()
        deadline = time.time() + 30
        while True:  # the pool reconnects by itself (its retries back off: a few seconds)
            try:
                store.append(unit(5, "r"))
                break
            except StoreUnavailableError:
                if time.time() > deadline:
                    raise
        assert [u.index for u in store.units("r")] == list(range(6))


def test_after_a_restart_one_failed_call_clears_every_broken_pooled_connection(
    postgres: Postgres, pg_schema: str
) -> None:
    """Connections are not tested when lent: the first call after a restart fails once, the
    pool's idle connections are all checked then, and the retry succeeds on a fresh one."""
    with PostgresStore(postgres.dsn, schema=pg_schema, min_size=4, max_size=4, timeout=20) as store:
        for i in range(3):
            store.append(unit(i, "p"))
        postgres.stop()
        postgres.start()  # every pooled connection is now broken
        started = time.monotonic()
        store.append(unit(3, "p"))  # retried, not raised
        assert time.monotonic() - started < 5.0  # one pause, not one per broken connection
        assert [u.index for u in store.units("p")] == [0, 1, 2, 3]
        assert store._pool.get_stats().get("connections_lost", 0) >= 3


def test_writes_during_a_server_restart_land_once_each(postgres: Postgres, pg_schema: str) -> None:
    """Appends keep going while the server restarts: retried, none lost, none stored twice."""
    import threading

    with PostgresStore(postgres.dsn, schema=pg_schema, timeout=30) as store:
        returned: list[int] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def writer() -> None:
            n = 0
            while not stop.is_set():
                try:
                    returned.append(store.append_next(unit(0, "w", text=f"w{n}")).index)
                except BaseException as exc:
                    errors.append(exc)
                    return
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.3)
        postgres.restart()
        time.sleep(0.3)
        stop.set()
        thread.join(60)
        assert not errors
        units = store.units("w")
        texts = [u.user.text for u in units]
        assert [u.index for u in units] == list(range(len(units)))  # gap-free
        assert len(set(texts)) == len(texts)  # a retried write never landed twice
        assert texts == [f"w{n} 0" for n in range(len(texts))]  # in the order written
        assert returned == list(range(len(returned)))  # every returned append is there
        assert len(units) == len(returned)


def test_vector_search_in_the_database_stays_in_its_session(store: PostgresStore) -> None:
    """pgvector (pgserver carries it): the nearest units of one session, indexed or exact."""
    import numpy as np

    assert store.pgvector
    rng = np.random.default_rng(3)
    query = rng.normal(size=8).astype(np.float32)
    mine = rng.normal(size=(300, 8)).astype(np.float32)
    theirs = np.tile(query, (300, 1))  # another session's vectors: every one a perfect match
    store.save_vectors("a", "m", [(i, v.astype("<f4").tobytes()) for i, v in enumerate(mine)])
    store.save_vectors("b", "m", [(i, v.astype("<f4").tobytes()) for i, v in enumerate(theirs)])
    cosine = mine @ query / (np.linalg.norm(mine, axis=1) * np.linalg.norm(query))
    want = [int(i) for i in np.argsort(-cosine)[:5]]
    exact = store.vector_search("a", "m", query.tolist(), 5)
    assert [i for i, _ in exact] == want
    assert all(score < 0.999 for _, score in exact)  # none of b's perfect matches
    np.testing.assert_allclose([sc for _, sc in exact], cosine[want], rtol=1e-5)
    name = store.create_vector_index("m", 8)
    # the index scan meets b's 300 perfect matches first; the search falls back to exact
    assert [i for i, _ in store.vector_search("a", "m", query.tolist(), 5)] == want
    assert store.vector_search("b", "m", query.tolist(), 3)[0][1] > 0.999
    with psycopg.connect(store.dsn) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (f"{store.schema}.{name}",)).fetchone()[0]
    with pytest.raises(InvalidConfigError, match="k must be an int >= 1"):
        store.vector_search("a", "m", query.tolist(), 0)
    with pytest.raises(InvalidConfigError, match="dimension must be an int >= 1"):
        store.create_vector_index("m", 0)
