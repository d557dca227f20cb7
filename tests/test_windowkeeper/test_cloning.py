from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from windowkeeper import BudgetExceededError, InvalidConfigError, Message, TokenCounter
from windowkeeper._cloning import CLONE_FORMAT, CloneArtifact, clone_conversation
from windowkeeper._units import Unit

COUNTER = TokenCounter("gpt-4o")

CONVERSATION = [
    Message(role="system", content="You are a senior backend engineer."),
    Message(
        role="user",
        content="I want to migrate our billing service from MySQL 5.7 to Postgres 16. "
        "I prefer short answers with code.",
    ),
    Message(
        role="assistant",
        content="Start with pgloader. See https://pgloader.readthedocs.io/en/latest/ for the options.",
    ),
    Message(
        role="user",
        content="Please always use snake_case in SQL. The main table is invoices with 48,213,992 rows.",
    ),
    Message(
        role="assistant",
        content="We decided to go with logical replication because downtime must stay under 5 minutes. "
        "Set this:\n```ini\nmax_wal_senders = 10\nwal_level = logical\n```",
    ),
    Message(
        role="user",
        content="Ticket BILL-4471 tracks it. The config lives in deploy/pg/postgresql.conf.",
    ),
    Message(
        role="assistant",
        content="Next step: I will write the cutover runbook. We still need to test the rollback on staging.",
    ),
    Message(
        role="user",
        content="Thanks. Also Maria from finance must sign off; Maria is on leave until March 3.",
    ),
    Message(role="assistant", content="Noted: Maria signs off after March 3."),
]


def fake_summarizer(previous: str, units: Sequence[Unit]) -> str:
    assert previous == ""
    return f"The user is migrating billing to Postgres 16. The conversation has {len(units)} turns."


def test_clone_extracts_every_kind_of_item_verbatim() -> None:
    art = clone_conversation(
        CONVERSATION, counter=COUNTER, summarizer=fake_summarizer, max_tokens=2_000
    )
    assert art.intent.startswith(
        "I want to migrate our billing service from MySQL 5.7 to Postgres 16."
    )
    assert any("prefer short answers" in p for p in art.preferences)
    assert any("snake_case" in p for p in art.preferences)
    assert [d.why for d in art.decisions] == ["downtime must stay under 5 minutes"]
    assert "https://pgloader.readthedocs.io/en/latest/" in art.artifacts
    assert "deploy/pg/postgresql.conf" in art.artifacts
    assert any("runbook" in t for t in art.open_tasks)
    assert any("rollback" in t for t in art.open_tasks)
    assert "Maria" in art.entities
    texts = [s.text for s in art.snippets]
    assert any("max_wal_senders = 10" in t for t in texts)
    assert any("48,213,992" in t for t in texts)
    assert any("BILL-4471" in t for t in texts)
    assert art.facts == (
        "The user is migrating billing to Postgres 16.",
        "The conversation has 4 turns.",
    )
    assert art.missing_snippets() == []
    assert art.source["units"] == 4
    rendered = art.render()
    for s in art.snippets:
        assert s.text in rendered


def test_clone_fits_its_budget_dropping_the_least_important_first() -> None:
    full = clone_conversation(
        CONVERSATION, counter=COUNTER, summarizer=fake_summarizer, max_tokens=5_000
    )
    size = COUNTER.count(full.render())
    small = clone_conversation(
        CONVERSATION, counter=COUNTER, summarizer=fake_summarizer, max_tokens=size - 20
    )
    assert COUNTER.count(small.render()) <= size - 20
    assert small.intent == full.intent
    assert small.entities == ()  # the least important go first
    assert [s for s in small.snippets if s.kind != "number"] == [
        s for s in full.snippets if s.kind != "number"
    ]
    assert small.decisions == full.decisions
    with pytest.raises(BudgetExceededError):
        clone_conversation(CONVERSATION, counter=COUNTER, summarizer=fake_summarizer, max_tokens=10)


def test_artifact_round_trips_and_is_versioned() -> None:
    art = clone_conversation(CONVERSATION, counter=COUNTER, summarizer=fake_summarizer)
    again = CloneArtifact.from_json(art.to_json())
    assert again == art
    assert json.loads(art.to_json())["format"] == CLONE_FORMAT
    data = art.to_dict() | {"format": "windowkeeper.clone/99"}
    with pytest.raises(InvalidConfigError, match="format must be"):
        CloneArtifact.from_dict(data)
    assert art.message().role == "system"


def test_async_summarizer_and_bad_input() -> None:
    async def summarize(previous: str, units: Sequence[Unit]) -> str:
        return "Async facts."

    art = clone_conversation(CONVERSATION, counter=COUNTER, summarizer=summarize)
    assert art.facts == ("Async facts.",)
    with pytest.raises(InvalidConfigError, match="max_tokens must be a positive int; got 0"):
        clone_conversation(CONVERSATION, counter=COUNTER, summarizer=fake_summarizer, max_tokens=0)
    with pytest.raises(InvalidConfigError, match="at least one message after its system prompt"):
        clone_conversation([CONVERSATION[0]], counter=COUNTER, summarizer=fake_summarizer)
    with pytest.raises(InvalidConfigError, match="must return a str"):
        clone_conversation(CONVERSATION, counter=COUNTER, summarizer=lambda p, u: 3)  # type: ignore[arg-type,return-value]
