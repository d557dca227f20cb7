"""PostgresStore with many app processes: throughput, and what survives kills and a restart.

Run: `uv run --frozen python bench/bench_postgres.py [--workers 4] [--sessions 50] [--turns 200]
[--kills 100] [--quick] [--postgres-dsn DSN]`.

A real PostgreSQL 16 server: `pgserver` starts one in a temporary folder (local socket, default
settings: `synchronous_commit=on`, so every commit is flushed), or `--postgres-dsn` names yours.
Every writer is its own process (`fork`), with its own `PostgresStore` (connection pool).

(a) Throughput: 1, 2 and 4 writer processes, each doing `--tput-turns` turns (a `WindowMemory`
view of 2,000 tokens, then `add` of a user + assistant turn), all started together; turns per
second over the whole run. Two layouts: every process on sessions of its own, and every process
on the same 8 sessions (appends to one session queue on its row lock).

(b) Reliability, one run: `--workers` processes × `--sessions` sessions × `--turns` turns, every
process writing every session (so each session gets turns from all of them, interleaved), with
`RollingSummary` memories summarising in the background (a 10 ms summariser; keep_last 2, so a
summary is due all the time). The server is restarted (`pg_ctl restart -m fast`, open connections
cut) once in the middle. Counted: units lost, duplicated, out of each writer's own order, views
showing another session's text, summary versions that skip or repeat, summary commits that cover
the same range again.

(c) Kills: a writer appending in a loop is killed with SIGKILL `--kills` times, at a random moment
(10-200 ms after it started writing); after each kill, every unit it was told was committed must
be there, whole, gap-free, and nothing half-written visible.

Goals (issue #13): 0 lost, 0 duplicated, 0 reordered, 0 cross-session leaks; every committed unit
readable after each kill, nothing partial; the clients recover from the restart.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import load, machine  # noqa: E402
from windowkeeper import Message, PostgresStore, TokenCounter  # noqa: E402
from windowkeeper._units import Unit  # noqa: E402
from windowkeeper.memory import RollingSummary, WindowMemory  # noqa: E402

COUNTER = TokenCounter("gpt-4o")
CTX = multiprocessing.get_context("fork")


def turn(session: str, worker: int, t: int) -> list[Message]:
    return [
        Message(role="user", content=f"{session} w{worker} t{t}: where is my order A-{t:05d}?"),
        Message(role="assistant", content=f"{session} w{worker} t{t}: it left the depot today."),
    ]


def summarize(previous: str, units: Sequence[Unit]) -> str:
    time.sleep(0.01)
    return f"{previous} [{units[0].index}-{units[-1].index}]".strip()[-1500:]


# ------------------------------------------------------------------------------ (a) throughput


def _tput_worker(
    dsn: str, schema: str, worker: int, sessions: list[str], turns: int, go: Any
) -> None:
    store = PostgresStore(dsn, schema=schema, max_size=2)
    memories = [WindowMemory(COUNTER, store=store, session_id=s) for s in sessions]
    go.wait()
    for t in range(turns):
        memory = memories[t % len(memories)]
        memory.view("order", budget=2000)
        memory.add(turn(memory.session_id, worker, t))
    store.close()


def throughput(dsn: str, workers: int, turns: int, shared: bool) -> float:
    schema = f"tput_{workers}_{'shared' if shared else 'own'}_{os.getpid()}"
    PostgresStore(dsn, schema=schema).close()
    go = CTX.Event()
    procs = []
    for w in range(workers):
        sessions = [f"s{i}" for i in range(8)] if shared else [f"w{w}s{i}" for i in range(8)]
        procs.append(CTX.Process(target=_tput_worker, args=(dsn, schema, w, sessions, turns, go)))
    for p in procs:
        p.start()
    time.sleep(1.0)  # every process has opened its pool
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode
    return workers * turns / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------ (b) reliability


def _chat_worker(dsn: str, schema: str, worker: int, sessions: int, turns: int, out: Any) -> None:
    store = PostgresStore(dsn, schema=schema, max_size=4, timeout=60)
    memories = [
        RollingSummary(
            COUNTER,
            store=store,
            session_id=f"s{s}",
            summarizer=summarize,
            keep_last=2,
            summary_tokens=200,
        )
        for s in range(sessions)
    ]
    leaks = views = 0
    for t in range(turns):
        for s, memory in enumerate(memories):
            view = memory.view(f"order {t}", budget=1500)
            views += 1
            leaks += any(not m.text.startswith(f"s{s} ") for u in view.recent for m in u.messages)
            memory.add(turn(f"s{s}", worker, t))
    for memory in memories:
        memory.flush(timeout=120)
        memory.close()
    store.close()
    out.put((worker, views, leaks))


def reliability(dsn: str, server: Any, workers: int, sessions: int, turns: int) -> list[str]:
    schema = f"rel_{os.getpid()}"
    PostgresStore(dsn, schema=schema).close()
    out = CTX.Queue()
    procs = [
        CTX.Process(target=_chat_worker, args=(dsn, schema, w, sessions, turns, out))
        for w in range(workers)
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    expected = workers * sessions * turns
    restarted = "no server handle (--postgres-dsn): not restarted"
    if server is not None:  # restart the server once, half-way through
        with PostgresStore(dsn, schema=schema) as probe:
            while sum(probe.count(f"s{s}") for s in range(sessions)) < expected // 2:
                time.sleep(0.2)
            done = sum(probe.count(f"s{s}") for s in range(sessions))
        r0 = time.perf_counter()
        restart(server)
        restarted = (
            f"restarted at {done:,} of {expected:,} turns (down {time.perf_counter() - r0:.1f} s)"
        )
    results = [out.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    lost = duplicated = reordered = 0
    versions_bad = repeats = summaries = 0
    with PostgresStore(dsn, schema=schema) as store, psycopg.connect(dsn) as conn:
        for s in range(sessions):
            units = store.units(f"s{s}")
            texts = [u.user.text for u in units if u.user is not None]
            gapfree = [u.index for u in units] == list(range(len(units)))
            duplicated += len(texts) - len(set(texts)) + (0 if gapfree else 1)
            for w in range(workers):
                mine = [x.split(":")[0] for x in texts if f" w{w} " in x]
                want = [f"s{s} w{w} t{t}" for t in range(turns)]
                lost += len(set(want) - set(mine))
                reordered += (
                    sum(1 for a, b in zip(mine, want, strict=False) if a != b)
                    if len(set(mine)) == len(mine)
                    else 0
                )
            rows = conn.execute(
                f"SELECT version, covers FROM {schema}.summaries WHERE session_id = %s ORDER BY version",
                (f"s{s}",),
            ).fetchall()
            summaries += len(rows)
            versions_bad += [v for v, _ in rows] != list(range(1, len(rows) + 1))
            covers = [c for _, c in rows]
            repeats += len(covers) - len(set(covers))
    views = sum(v for _, v, _ in results)
    leaks = sum(x for _, _, x in results)
    return [
        f"{workers} processes × {sessions} sessions × {turns} turns = {expected:,} turns in "
        f"{wall:.0f} s ({expected / wall:,.0f} turns/s, summaries on); {restarted}",
        f"lost {lost}, duplicated {duplicated}, reordered {reordered}; cross-session leaks "
        f"{leaks} in {views:,} views",
        f"{summaries:,} summary commits: versions that skip or repeat in {versions_bad} sessions, "
        f"ranges summarised twice {repeats}",
    ]


def restart(server: Any) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    server.ensure_postgres_running()


# ------------------------------------------------------------------------------ (c) kills


def _append_forever(dsn: str, schema: str, committed: Any) -> None:
    store = PostgresStore(dsn, schema=schema, max_size=1)
    n = committed.value
    while True:
        unit = store.append_next(Unit(index=0, messages=tuple(turn("k", 0, n)), session_id="k"))
        n += 1
        committed.value = unit.index + 1


def kills(dsn: str, times: int, seed: int = 7) -> list[str]:
    schema = f"kill_{os.getpid()}"
    PostgresStore(dsn, schema=schema).close()
    rng = random.Random(seed)
    bad_after = partial = 0
    lost = 0
    extra: list[int] = []
    with PostgresStore(dsn, schema=schema) as store:
        for _ in range(times):
            before = store.count("k")
            committed = CTX.Value("q", before, lock=False)
            proc = CTX.Process(target=_append_forever, args=(dsn, schema, committed))
            proc.start()
            while committed.value == before:  # writing has started
                time.sleep(0.001)
            time.sleep(rng.uniform(0.01, 0.2))
            proc.kill()
            proc.join()
            assert proc.exitcode == -signal.SIGKILL
            units = store.units("k")
            told = committed.value
            lost += max(0, told - len(units))
            extra.append(len(units) - told)  # committed, but killed before it was told
            bad_after += [u.index for u in units] != list(range(len(units)))
            bad_after += store.count("k") != len(units)
            partial += sum(len(u.messages) != 2 for u in units)
    return [
        f"{times} SIGKILLs mid-write: {len(units):,} units; committed units missing {lost}; "
        f"gaps or counter disagreements {bad_after}; partial units {partial}; units committed "
        f"in the instant before a kill (stored, not yet reported) {sum(extra)} "
        f"(at most 1 per kill: {max(extra) if extra else 0})",
    ]


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--tput-turns", type=int, default=400)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="smoke run: small numbers")
    parser.add_argument("--postgres-dsn", default=None)
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.turns, args.tput_turns, args.kills = 5, 10, 50, 5
    print(f"machine: {machine(('psycopg', 'psycopg-pool', 'pgserver'))}; load average {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp:
        server = None
        dsn = args.postgres_dsn
        if dsn is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver

                server = pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
            dsn = server.get_uri()
        with psycopg.connect(dsn) as conn:
            settings = conn.execute(
                "SELECT current_setting('server_version'), current_setting('synchronous_commit')"
            ).fetchone()
        print(f"PostgreSQL {settings[0]}, synchronous_commit={settings[1]}\n")
        try:
            t0 = time.perf_counter()
            print(
                f"### (a) Throughput: turns per second (view + add), {args.tput_turns} turns each\n"
            )
            print("| writer processes | own sessions | the same 8 sessions |")
            print("|---:|---:|---:|")
            base: dict[bool, float] = {}
            for n in (1, 2, 4):
                cells = []
                for shared in (False, True):
                    rate = throughput(dsn, n, args.tput_turns, shared)
                    base.setdefault(shared, rate)
                    cells.append(f"{rate:,.0f} ({rate / base[shared]:.2f}×)")
                print(f"| {n} | " + " | ".join(cells) + " |", flush=True)
            print("\n### (b) Many writers, summaries on, a server restart\n")
            for line in reliability(dsn, server, args.workers, args.sessions, args.turns):
                print(f"- {line}", flush=True)
            print("\n### (c) Killed writers\n")
            for line in kills(dsn, args.kills):
                print(f"- {line}", flush=True)
            print(
                f"\nwhole run {time.perf_counter() - t0:.0f} s; load average {load()}; command: "
                "uv run --frozen python bench/bench_postgres.py " + " ".join(sys.argv[1:])
            )
        finally:
            if server is not None:
                server.cleanup()


if __name__ == "__main__":
    main()
