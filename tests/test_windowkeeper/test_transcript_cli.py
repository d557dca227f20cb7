from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from windowkeeper import (
    Budget,
    InvalidMessageError,
    TokenCounter,
    Transcript,
    audit_transcript,
    load_transcript,
)
from windowkeeper.cli import main

from tests.conftest import TRANSCRIPT


@pytest.fixture(scope="module")
def transcript() -> Transcript:
    return load_transcript(TRANSCRIPT)


def test_bundled_transcript_is_realistic(transcript: Transcript) -> None:
    roles = [m.role for m in transcript.messages]
    assert len(transcript.user_indices()) >= 20
    assert len(transcript.tools) >= 5
    assert roles.count("tool") >= 10
    assert sum(1 for m in transcript.messages if m.zone_hint == "rag") >= 10
    assert TokenCounter("gpt-4o").count_message(transcript.messages[0]) > 1_000


def test_audit_rows_match_direct_counts(transcript: Transcript) -> None:
    counter = TokenCounter("gpt-4o")
    budget = Budget.for_model("gpt-4o")
    audit = audit_transcript(transcript, counter, budget)
    starts = transcript.user_indices()
    assert len(audit.turns) == len(starts)
    for row, start in zip(audit.turns, starts, strict=True):
        request = list(transcript.messages[: start + 1])
        assert row.report.prompt_tokens == counter.count_messages(
            request, tools=list(transcript.tools)
        )
    prompts = [r.report.prompt_tokens for r in audit.turns]
    assert prompts == sorted(prompts)  # history is re-sent: it only grows
    assert audit.last.zones["system"] == counter.count_message(transcript.messages[0])
    assert audit.projection is not None
    assert audit.projection.per_turn > 0
    assert audit.turns_until_alert is not None
    assert audit.turns_until_act is not None
    assert audit.turns_until_alert < audit.turns_until_act < audit.turns_until_full  # type: ignore[operator]
    assert audit.cost_per_call is not None
    assert audit.cost_per_call > 0
    assert audit.prefix.cacheable


def test_transcript_round_trips(transcript: Transcript) -> None:
    again = Transcript.from_dict(json.loads(json.dumps(transcript.to_dict())))
    assert again.messages == transcript.messages
    assert [m.metadata for m in again.messages] == [m.metadata for m in transcript.messages]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"messages": []}, "non-empty"),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "wizard", "content": "y"}]},
            "message 1",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "a", "content": "r"},
                ]
            },
            "message 1: tool result",
        ),
        ({"messages": [{"role": "system", "content": "x"}]}, "user message"),
        ({"format": "other/2", "messages": [{"role": "user", "content": "x"}]}, "format"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"nope": 1}]}, r"tools\[0\]"),
        ("text", "transcript is an object"),
    ],
)
def test_bad_transcripts(data: object, needle: str) -> None:
    with pytest.raises(InvalidMessageError, match=needle):
        Transcript.from_dict(data)


def test_invalid_json_file_names_the_position(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text('{"messages": [', encoding="utf-8")
    with pytest.raises(InvalidMessageError, match=r"not valid JSON.*line 1"):
        load_transcript(bad)


def test_non_utf8_file_is_named_with_its_first_bad_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "latin1.json"
    bad.write_bytes('[{"role": "user", "content": "café"}]'.encode("latin-1"))
    expected = (
        f"{str(bad)!r} is not UTF-8 text (byte 0xe9 at offset 33); "
        "windowkeeper reads UTF-8 text and JSON files only"
    )
    with pytest.raises(InvalidMessageError) as info:
        load_transcript(bad)
    assert str(info.value) == expected
    assert isinstance(info.value.__cause__, UnicodeDecodeError)
    # the command line words it the same
    assert main(["audit", str(bad)]) == 3
    assert " ".join(capsys.readouterr().err.split()) == f"error: {expected}"


# -------------------------------------------------------------------------------------------- CLI


def test_cli_audit_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "creep.png"
    assert main(["audit", str(TRANSCRIPT), "--plot", str(png), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "gpt-4o"
    assert data["last"]["level"] == "ok"
    assert len(data["turns"]) == 24
    assert data["projection"]["turns_until_act"] > 24
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_audit_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(TRANSCRIPT)]) == 0
    out = capsys.readouterr().out
    for needle in ("history", "level: ok", "creep:", "cost:", "prefix cache: cacheable"):
        assert needle in out


def test_cli_fail_on_gives_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(TRANSCRIPT), "--window", "30000", "--fail-on", "act"]) == 1
    assert main(["audit", str(TRANSCRIPT), "--fail-on", "act"]) == 0


def test_cli_bad_input_gives_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(tmp_path / "missing.json")]) == 3
    assert main(["audit", str(TRANSCRIPT), "--model", "gpt-9000"]) == 3
    assert "has no profile" in capsys.readouterr().err


def test_cli_usage_error_gives_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["audit"])
    assert info.value.code == 2


def test_cli_plan_reproduces_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--system", "1400", "--tools", "800", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["available_for_rag_and_history"] == 124_300
    assert main(["plan", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["turns_until"]["80%"] == 84


def test_cli_kv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kv", "--preset", "7b-mha", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["7b-mha"]
    assert (data["bytes_per_token"], data["total_bytes"]) == (524_288, 67_108_864_000)
    assert (
        main(
            [
                "kv",
                "--layers",
                "80",
                "--kv-heads",
                "64",
                "--head-dim",
                "128",
                "--tokens",
                "1",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["custom"]["bytes_per_token"] == 2_621_440
    assert main(["kv", "--layers", "80"]) == 2


def test_cli_count_breakdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "t.txt"
    text.write_text("tiktoken is great!", encoding="utf-8")
    assert main(["count", str(text), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cl100k_base"]["tokens"] == 6
    assert data["o200k_base"]["tokens"] == 6
    assert main(["count", str(text), "--model", "gpt-4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpt-4"]["tokens"] == 6


def test_cli_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    names = {p["name"] for p in json.loads(capsys.readouterr().out)}
    assert {"gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro"} <= names


def test_console_script_runs_from_stdin() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "windowkeeper", "count", "--encoding", "cl100k_base", "--json"],
        input="hello world",
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["cl100k_base"]["tokens"] == 2
