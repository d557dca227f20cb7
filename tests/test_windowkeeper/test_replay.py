from __future__ import annotations

import json
from pathlib import Path

import pytest
from windowkeeper import Budget, TokenCounter, load_transcript
from windowkeeper._replay import build_memory, replay_transcript
from windowkeeper.cli import main
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.stores import SQLiteStore

from tests.conftest import TRANSCRIPT

COUNTER = TokenCounter("gpt-4o")


def test_replay_window_stays_in_budget_and_stores_every_turn(tmp_path: Path) -> None:
    transcript = load_transcript(TRANSCRIPT)
    budget = Budget(context_window=8_000, generation_reserve=1_000)
    store = SQLiteStore(tmp_path / "replay.db")
    memory = build_memory("window", COUNTER, store=store)
    replay = replay_transcript(
        transcript, memory, counter=COUNTER, budget=budget, max_utilization=0.8
    )
    assert len(replay.turns) == len(transcript.user_indices()) == 24
    for row in replay.turns:
        assert row.report.prompt_tokens <= 6_399  # strictly below 80 % of 8,000
        assert row.report.level in ("ok", "alert")
        assert row.stored == row.turn - 1
    assert replay.turns[-1].naive_tokens > 3 * replay.turns[-1].report.prompt_tokens
    assert store.count() == 24  # nothing lost
    reopened = SQLiteStore(store.path).units()
    assert [u.user.text for u in reopened] == [
        m.text for m in transcript.messages if m.role == "user" and m.zone_hint != "rag"
    ]


def test_cli_replay_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "replay.png"
    code = main(
        [
            "replay",
            str(TRANSCRIPT),
            "--strategy",
            "window",
            "--budget",
            "9000",
            "--plot",
            str(png),
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["context_window"] == 9_000
    assert len(data["turns"]) == 24
    assert all(t["prompt_tokens"] < 0.8 * 9_000 for t in data["turns"])
    assert all(
        sum(t["zones"][z] for z in ("system", "tools", "rag", "history", "user"))
        == t["prompt_tokens"]
        for t in data["turns"]
    )
    assert png.stat().st_size > 10_000


def test_cli_replay_table_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(TRANSCRIPT), "--strategy", "window"]) == 0
    out = capsys.readouterr().out
    assert "24 units stored, none lost" in out
    # 1,500 tokens cannot hold the 1,762-token system prompt: a typed error, exit code 3
    assert main(["replay", str(TRANSCRIPT), "--strategy", "window", "--budget", "2500"]) == 3
    assert "short by" in capsys.readouterr().err
    with pytest.raises(InvalidConfigError, match="strategy must be one of"):
        build_memory("everything", COUNTER)  # type: ignore[arg-type]


def test_cli_clone_takes_facts_from_a_stored_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from windowkeeper.stores import SummaryRecord

    db = tmp_path / "chat.db"
    with SQLiteStore(db) as store:
        store.save_summary(
            SummaryRecord(
                session_id="default",
                version=1,
                covers=10,
                levels=("Dana's order NW-48213 was split into two parcels.",),
            )
        )
    out = tmp_path / "clone.json"
    assert (
        main(
            [
                "clone",
                str(TRANSCRIPT),
                "--store",
                str(db),
                "--max-tokens",
                "2500",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["format"] == "windowkeeper.clone/1"
    assert data["facts"] == ["Dana's order NW-48213 was split into two parcels."]
    assert COUNTER.count(printed.split("\n\n")[0]) > 0
    from windowkeeper._cloning import CloneArtifact

    artifact = CloneArtifact.from_dict(data)
    assert COUNTER.count(artifact.render()) <= 2500
    assert artifact.missing_snippets() == []
    assert main(["clone", str(TRANSCRIPT), "--store", str(tmp_path / "nope.db")]) == 3
