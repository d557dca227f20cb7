from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from windowkeeper import (
    EncodingError,
    InvalidConfigError,
    ModelProfile,
    ModelRegistry,
    UnknownModelError,
    get_profile,
    load_encoding,
    register_model,
)


def test_encoding_is_loaded_once_per_process() -> None:
    assert load_encoding("o200k_base") is load_encoding("o200k_base")


def test_special_token_text_is_counted_as_plain_text() -> None:
    enc = load_encoding("cl100k_base")
    assert enc.count("<|endoftext|>") > 1


def test_unknown_encoding_is_a_config_error() -> None:
    with pytest.raises(InvalidConfigError, match="encoding must be one of"):
        load_encoding("p50k_base")


def test_corrupt_bpe_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "cl100k_base.tiktoken.gz"
    bad.write_bytes(gzip.compress(b"IQ== 0\n"))
    with pytest.raises(EncodingError, match="sha256"):
        load_encoding("cl100k_base", bpe_file=bad)


def test_missing_bpe_file_is_an_encoding_error(tmp_path: Path) -> None:
    with pytest.raises(EncodingError, match="cannot read"):
        load_encoding("cl100k_base", bpe_file=tmp_path / "nope")


def test_tiktoken_cache_is_not_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an empty cache folder: tiktoken would have to download; we must not care
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    from windowkeeper.tokens import _encodings

    monkeypatch.setattr(_encodings, "_LOADED", {})
    assert load_encoding("cl100k_base").count("hello world") == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("azure/gpt-35-turbo", "gpt-3.5-turbo"),
        ("anthropic:claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gpt-4-0314", "gpt-4"),
    ],
)
def test_name_resolution(name: str, canonical: str) -> None:
    assert get_profile(name).name == canonical


def test_unknown_model_suggests_close_names_and_how_to_register() -> None:
    with pytest.raises(UnknownModelError) as info:
        get_profile("gpt-4o-mino")
    assert "gpt-4o-mini" in info.value.suggestions
    assert "register_model" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_registering_a_model_in_a_private_registry() -> None:
    reg = ModelRegistry(())
    reg.register(
        ModelProfile(
            name="acme-1",
            context_window=8192,
            max_output_tokens=1024,
            encoding="cl100k_base",
            exact=False,
            error_band=0.2,
            aliases=("acme",),
        )
    )
    assert reg.get("acme").name == "acme-1"
    assert "acme-1" in reg
    assert "gpt-4o" not in reg
    with pytest.raises(InvalidConfigError, match="already exists"):
        reg.register(reg.get("acme"), replace_existing=False)


def test_register_model_extends_the_default_registry() -> None:
    register_model(
        ModelProfile(
            name="test-only-model",
            context_window=1000,
            max_output_tokens=100,
            encoding="o200k_base",
        )
    )
    assert get_profile("test-only-model").context_window == 1000


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"context_window": 0}, "context_window"),
        ({"max_output_tokens": 10**9}, "max_output_tokens"),
        ({"encoding": "gpt2"}, "encoding"),
        ({"error_band": 0.2}, "exact profile"),
        ({"exact": False, "error_band": 1.5}, "error_band"),
        ({"effective_window": 10**9}, "effective_window"),
        ({"input_price": -1.0}, "input_price"),
        ({"name": ""}, "name"),
    ],
)
def test_profile_validation(kwargs: dict, needle: str) -> None:  # type: ignore[type-arg]
    base = {
        "name": "m",
        "context_window": 1000,
        "max_output_tokens": 100,
        "encoding": "cl100k_base",
    }
    with pytest.raises(InvalidConfigError, match=needle):
        ModelProfile(**{**base, **kwargs})
