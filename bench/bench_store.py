"""Per-turn cost of persistence: `WindowMemory` over each store, at 100, 1,000 and 10,000 units.

Run: `uv run python bench/bench_store.py [--sizes 100 1000 10000] [--turns 200] [--dir FOLDER]`.

Four stores: `MemoryStore` (the anchor: no persistence at all), `SQLiteStore(durability="normal")`
(the default), `SQLiteStore(durability="full")` and `PostgresStore` (a PostgreSQL 16 server that
`pgserver` starts in the same folder, on a local socket, with its default `synchronous_commit=on`:
every commit is flushed; `--postgres-dsn` uses yours), each SQLite store a real file in a temporary
folder (`--dir` chooses where it is made; on tmpfs an fsync costs nothing, so the script says when
the folder is there). Each is pre-loaded with N units (untimed, in one transaction per unit with
`durability="normal"`, then reopened with the setting under test), then `--turns` further turns are
timed, each `assemble(...)` (the same request as `bench/bench_memory.py`'s window row: 16k window,
6,000-token history zone, a system prompt and a chunk) + `memory.add(turn)`, each part timed on its
own. Every store at every size is live at once and they take turns, so noise from the rest of the
machine falls on all of them alike; each has its own counter (the same text at a given size, never
found already counted by another store), and every turn starts with cold caches (an 8 MiB read,
untimed), so no store is timed warmer for the one that went before it. Goal: with the default
durability, add + assemble ≤ 1 ms per turn (median) at 10,000 units.

The slowest-turn column shows SQLite's WAL checkpoints: every 1,000 pages of WAL (about 420 turns
here) one commit copies the WAL into the database and syncs both. Pre-loaded stores start with an
empty WAL, so 200 turns reach none; `--turns 1000` shows them.

Text: LoCoMo utterances when ../shared/data/locomo10.json is present (read by path, never copied),
otherwise the synthetic 50-word text of `bench_memory.py` (the script says which).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import rotated  # noqa: E402
from bench_memory import LOCOMO, UTTERANCES, load_utterances, sentence, turn  # noqa: E402
from windowkeeper import Budget, TokenCounter  # noqa: E402
from windowkeeper._assembler import Chunk, ContextAssembler  # noqa: E402
from windowkeeper._units import Unit  # noqa: E402
from windowkeeper.memory._recent import WindowMemory  # noqa: E402
from windowkeeper.stores import (  # noqa: E402
    ConversationStore,
    MemoryStore,
    PostgresStore,
    SQLiteStore,
)
from windowkeeper.stores._postgres import _payload  # noqa: E402

STORES = ["memory", "normal", "full", "postgres"]
LABELS = {
    "memory": "`MemoryStore` (anchor)",
    "normal": '`SQLiteStore`, `durability="normal"` (default)',
    "full": '`SQLiteStore`, `durability="full"`',
    "postgres": "`PostgresStore` (PostgreSQL 16, local socket)",
}
POSTGRES: dict[str, str] = {}  # the DSN, once a server is started (or given)


def filesystem(folder: Path) -> str:
    """The type of the file system holding ``folder`` (Linux; ``"?"`` elsewhere)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    best, kind = "", "?"
    real = str(folder.resolve())
    for fields in mounts:
        point = fields[1]
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def history(size: int, rng: random.Random) -> list[Unit]:
    units = []
    for i in range(size):
        msgs = turn(rng, i)
        units.append(
            Unit(
                index=i,
                messages=tuple(msgs),
                session_id="default",
                timestamp=msgs[0].metadata["timestamp"],
            )
        )
    return units


def make_store(kind: str, size: int, folder: Path, units: list[Unit]) -> ConversationStore:
    """A store of ``kind`` holding ``units`` (loaded untimed)."""
    if kind == "postgres":
        store = PostgresStore(POSTGRES["dsn"], schema=f"bench_store_{size}")
        with psycopg.connect(POSTGRES["dsn"], autocommit=True) as conn, conn.transaction():
            s = f"bench_store_{size}"  # a bulk load in one transaction (untimed)
            conn.execute(f"DELETE FROM {s}.units; DELETE FROM {s}.sessions")
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {s}.units VALUES (%s, %s, %s, 0, %s)",
                    [(u.session_id, u.index, u.timestamp, _payload(u)) for u in units],
                )
            conn.execute(f"INSERT INTO {s}.sessions VALUES ('default', %s)", (len(units),))
        return store
    if kind == "memory":
        store = MemoryStore()
        for unit in units:
            store.append(unit)
        return store
    path = folder / f"{kind}-{size}.db"
    with SQLiteStore(path, durability="normal") as loader:  # bulk load: no fsync per unit
        for unit in units:
            loader.append(unit)
    return SQLiteStore(path, durability="full" if kind == "full" else "normal")


# read through before each timed turn (untimed): larger than the cores' L2 caches together, so every
# turn starts with the same cold caches, whatever the turn before it was (a SQLite write leaves
# more of its own data in the cache than a list append; without this the turn after a SQLite write
# was slower, and the table measured the order of the stores instead of the stores)
SCRUB = b"\x02" * (8 << 20)


def scrub() -> None:
    SCRUB.find(b"\x01")


def cell(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{statistics.median(ordered):.2f} / {ordered[int(0.99 * (len(ordered) - 1))]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument(
        "--text",
        choices=["locomo", "synthetic"],
        default="locomo" if LOCOMO.is_file() else "synthetic",
    )
    parser.add_argument("--data", type=Path, default=LOCOMO, help="path of locomo10.json")
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go")
    parser.add_argument("--stores", nargs="+", choices=STORES, default=STORES)
    parser.add_argument(
        "--postgres-dsn",
        default=None,
        help="a PostgreSQL server to use (default: pgserver starts one)",
    )
    args = parser.parse_args()
    if args.text == "locomo":
        if not args.data.is_file():
            sys.exit(f"LoCoMo not found at {args.data}: pass --data PATH or --text synthetic")
        UTTERANCES.extend(load_utterances(args.data))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-store-") as tmp:
        folder = Path(tmp)
        fs = filesystem(folder)
        print(
            f"text: {args.text}"
            + (
                f" ({len(UTTERANCES):,} LoCoMo utterances, {args.data})"
                if UTTERANCES
                else " (50-word vocabulary"
                + ("" if args.data.is_file() else f"; LoCoMo not found at {args.data}")
                + ")"
            )
            + f"; files in {folder} ({fs}); load average "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
        if fs in ("tmpfs", "ramfs"):
            print("warning: fsync is free on tmpfs; pass --dir FOLDER on a disk to see its cost")
        server = None
        if "postgres" in args.stores:
            if args.postgres_dsn:
                POSTGRES["dsn"] = args.postgres_dsn
            else:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    import pgserver

                    server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
                POSTGRES["dsn"] = server.get_uri()
            with psycopg.connect(POSTGRES["dsn"]) as conn:
                version = conn.execute("SHOW server_version").fetchone()
            print(f"PostgreSQL {version[0] if version else '?'} at {POSTGRES['dsn']}")
        try:
            run(args, folder)
        finally:
            if server is not None:
                server.cleanup()
        print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def run(args: argparse.Namespace, folder: Path) -> None:
    budget = Budget(context_window=16_000, generation_reserve=1_000, zone_limits={"history": 6_000})
    system = "You are a helpful assistant. " * 20
    cases = [(kind, size) for size in args.sizes for kind in args.stores]
    # every store sees the same text at a given size; each has its own counter, so none of them
    # finds a turn already counted (cached) by the store that went before it
    rngs = {case: random.Random(case[1]) for case in cases}
    memories = {}
    assemblers = {}
    for case in cases:
        kind, size = case
        counter = TokenCounter("gpt-4o")
        store = make_store(kind, size, folder, history(size, rngs[case]))
        memories[case] = WindowMemory(counter, store=store)
        assemblers[case] = ContextAssembler(counter, budget)
    total: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    add: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    assemble: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    for i in range(args.turns + 5):
        # every store at every size takes its turn, in a rotating order, so noise falls on all
        for case in rotated(cases, i):
            rng, memory = rngs[case], memories[case]
            msgs = turn(rng, case[1] + i)
            chunk = Chunk(text=sentence(rng, 60), score=0.5)
            scrub()
            t0 = time.perf_counter()
            out = assemblers[case].assemble(msgs[0], system=system, memory=memory, chunks=[chunk])
            t1 = time.perf_counter()
            memory.add([out.messages[-1], msgs[1]])
            t2 = time.perf_counter()
            if i >= 5:  # warm-up: first counts, first pages read
                total[case].append((t2 - t0) * 1000)
                assemble[case].append((t1 - t0) * 1000)
                add[case].append((t2 - t1) * 1000)
    for memory in memories.values():
        close = getattr(memory.store, "close", None)
        if callable(close):
            close()
    print(
        f"\n{args.turns} timed turns per row; ms per turn, median / p99\n\n"
        "| store | units | add + assemble | add alone | assemble alone | slowest turn |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    for kind in args.stores:
        for size in args.sizes:
            case = (kind, size)
            print(
                f"| {LABELS[kind]} | {size:,} | {cell(total[case])} | {cell(add[case])} "
                f"| {cell(assemble[case])} | {max(total[case]):.2f} |"
            )
    if not {"memory", "normal"} <= set(args.stores):
        return
    largest = args.sizes[-1]
    default = statistics.median(total[("normal", largest)])
    anchor = statistics.median(total[("memory", largest)])
    print(
        f"\ngoal (default durability, {largest:,} units): add + assemble ≤ 1 ms per turn (median): "
        f"{default:.2f} ms, {'holds' if default <= 1 else 'DOES NOT HOLD'}; "
        f"{default / anchor:.2f}× the MemoryStore anchor"
        + (
            f"; full {statistics.median(total[('full', largest)]) / anchor:.2f}×"
            if "full" in args.stores
            else ""
        )
    )


if __name__ == "__main__":
    main()
