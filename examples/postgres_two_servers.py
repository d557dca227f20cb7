"""Two app servers, one conversation: windowkeeper's PostgresStore (offline, a real server).

Run: `uv run python examples/postgres_two_servers.py [postgresql://...]`. Without a DSN the
example starts a private PostgreSQL 16 with `pgserver` in a temporary folder (as the tests do).

Two worker processes stand for two app servers behind a load balancer. They take turns serving
the same chat session, each with its own `PostgresStore` (its own connection pool) and its own
memory; every turn is stored once, in one order, and each server's view shows the whole
conversation. A summary is made in the background by exactly one of them at a time.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from windowkeeper import Message, PostgresStore, TokenCounter
from windowkeeper._units import Unit
from windowkeeper.memory import RollingSummary

QUESTIONS = [
    "My order A-48213 has not arrived.",
    "It was supposed to come on Monday.",
    "Can you check with the courier?",
    "I moved to Porto last week, is that the problem?",
    "Please send it to Rua das Flores 12 instead.",
    "How long will the reshipment take?",
]


def notes(previous: str, units: Sequence[Unit]) -> str:
    """A stand-in summariser (no model needed): the user's words, condensed."""
    said = "; ".join(u.user.text for u in units if u.user is not None)
    return f"{previous} {said}".strip()[-600:]


def server(name: str, dsn: str, turns: list[int], inbox: Any, outbox: Any) -> None:
    store = PostgresStore(dsn, max_size=2)
    memory = RollingSummary(
        TokenCounter("gpt-4o"), store=store, session_id="chat-42", summarizer=notes, keep_last=2
    )
    for i in turns:
        inbox.get()  # the load balancer sends this turn here
        view = memory.view(QUESTIONS[i], budget=400)
        shown = len(view.recent)
        memory.add(
            [
                Message(role="user", content=QUESTIONS[i]),
                Message(role="assistant", content=f"({name}) Noted: {QUESTIONS[i].lower()}"),
            ]
        )
        outbox.put(
            f"turn {i}: {name} saw {shown} recent turns"
            + (f" and a summary of {view.summary_covers}" if view.summary else "")
        )
    memory.flush(timeout=30)
    memory.close()
    store.close()


def main() -> None:
    dsn = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory(prefix="wk-postgres-") as tmp:
        pg = None
        if dsn is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver

                pg = pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
            dsn = pg.get_uri()
        try:
            PostgresStore(dsn).close()  # creates the schema once, before the servers start
            ctx = multiprocessing.get_context("spawn")
            inboxes = [ctx.Queue(), ctx.Queue()]
            outbox = ctx.Queue()
            servers = [
                ctx.Process(
                    target=server,
                    args=(name, dsn, list(range(k, len(QUESTIONS), 2)), inboxes[k], outbox),
                )
                for k, name in enumerate(("server-a", "server-b"))
            ]
            for p in servers:
                p.start()
            for i in range(len(QUESTIONS)):  # alternate, one turn at a time
                inboxes[i % 2].put(i)
                print(outbox.get(timeout=120))
            for p in servers:
                p.join(120)
            with PostgresStore(dsn) as store:
                units = store.units("chat-42")
                summary = store.latest_summary("chat-42")
            print(f"\nstored: {len(units)} turns, indexes {[u.index for u in units]}")
            for u in units:
                print(f"  {u.index}: {u.user.text if u.user else ''}")
            if summary is not None:
                print(f"summary v{summary.version} covers {summary.covers} turns")
            assert [u.user.text for u in units if u.user] == QUESTIONS  # once each, in order
        finally:
            if pg is not None:
                pg.cleanup()


if __name__ == "__main__":
    main()
