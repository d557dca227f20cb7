from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import pytest
from windowkeeper import (
    ApproximateCountWarning,
    Calibration,
    ImagePart,
    InvalidConfigError,
    Message,
    ModelProfile,
    ReasoningPart,
    TextPart,
    TokenCounter,
    get_profile,
    prompt_tokens_from_usage,
)
from windowkeeper._profiles import ImageRule
from windowkeeper.tokens import HFTokenizerEncoder, image_tokens


def _png(width: int, height: int) -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )
    return "data:image/png;base64," + base64.b64encode(raw + chunk(b"IEND", b"")).decode()


def test_cached_recount_touches_only_new_messages() -> None:
    counter = TokenCounter("gpt-4o")
    history = [
        Message(role="user" if i % 2 else "assistant", content=f"message {i}") for i in range(50)
    ]
    first = counter.count_messages(history)
    assert counter.cache_info()["by_identity"] == 50
    history.append(Message(role="user", content="one more"))
    second = counter.count_messages(history)
    assert counter.cache_info()["by_identity"] == 51
    uncached = TokenCounter("gpt-4o", cache_size=0)
    assert second == uncached.count_messages(history)
    assert second - first == uncached.count_message(history[-1])


def test_equal_content_hits_the_cache_and_gives_the_same_count() -> None:
    counter = TokenCounter("gpt-4o")
    a = Message(role="user", content="same words", metadata={"turn": 1})
    b = Message(role="user", content="same words", metadata={"turn": 2})
    assert counter.count_message(a) == counter.count_message(b)
    assert counter.cache_info()["by_content"] == 1


def test_cache_is_bounded() -> None:
    counter = TokenCounter("gpt-4o", cache_size=10)
    for i in range(25):
        counter.count_message(Message(role="user", content=str(i)))
    assert counter.cache_info()["by_identity"] <= 10


def test_zones_sum_to_the_exact_request_count(cookbook: dict) -> None:  # type: ignore[type-arg]
    example = cookbook["tools_example"]
    counter = TokenCounter("gpt-4o")
    messages = [
        Message(
            role="system",
            content="You are a helpful assistant that can answer to questions about the weather.",
        ),
        Message(role="system", content="Doc: SF is foggy.", metadata={"zone": "rag"}),
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello!"),
        Message(role="user", content="What's the weather like in San Francisco?"),
    ]
    zones = counter.count_zones_of(messages, tools=example["tools"])
    assert sum(zones.values()) == counter.count_messages(messages, tools=example["tools"])
    assert zones["rag"] == counter.count_message(messages[1])
    assert zones["history"] == counter.count_message(messages[2]) + counter.count_message(
        messages[3]
    )
    assert zones["user"] == counter.count_message(messages[4]) + 3
    assert zones["tools"] > 0


def test_reasoning_counts_only_where_the_provider_keeps_it() -> None:
    message = Message(
        role="assistant", content=(ReasoningPart(text="let me think " * 20), TextPart(text="ok"))
    )
    with_reasoning = TokenCounter("gpt-4o").count_message(message)
    without = TokenCounter("o3").count_message(message)
    assert with_reasoning - without == TokenCounter("gpt-4o").count("let me think " * 20)


@pytest.mark.parametrize(
    ("size", "detail", "expected"),
    [
        ((1, 1), "auto", 85 + 170),
        ((1024, 1024), "high", 85 + 170 * 4),
        ((4096, 2048), "high", 85 + 170 * 6),
        ((512, 512), "low", 85),
        ((2000, 500), "high", 85 + 170 * 4),
    ],
)
def test_image_tile_rule(size: tuple[int, int], detail: str, expected: int) -> None:
    part = ImagePart(url=_png(*size), detail=detail)  # type: ignore[arg-type]
    assert image_tokens(part, ImageRule()) == expected


def test_unknown_image_size_counts_the_upper_bound() -> None:
    assert image_tokens(ImagePart(url="https://example.com/x.jpg"), ImageRule()) == 85 + 170 * 8


def test_gpt4o_mini_image_rule() -> None:
    counter = TokenCounter("gpt-4o-mini")
    message = Message(role="user", content=(ImagePart(url=_png(1, 1)),))
    assert counter.count_message(message) == 3 + 1 + 2833 + 5667


def test_model_without_images_refuses_them() -> None:
    from windowkeeper import InvalidMessageError

    with pytest.raises(InvalidMessageError, match="takes no images"):
        TokenCounter("gpt-3.5-turbo").count_message(
            Message(role="user", content=(ImagePart(url="u"),))
        )


def test_stand_in_encoding_warns_and_declares_a_band() -> None:
    with pytest.warns(ApproximateCountWarning, match="stand-in"):
        counter = TokenCounter("claude-sonnet-4-5")
    assert not counter.exact
    assert counter.error_band == pytest.approx(0.30)
    low, high = counter.bounds(1000)
    assert (low, high) == (700, 1300)


def test_calibration_learns_a_correction_and_reports_errors() -> None:
    with pytest.warns(ApproximateCountWarning):
        counter = TokenCounter("claude-haiku-4-5")
    for counted, reported in [(1000, 1120), (2000, 2250), (500, 560), (800, 890), (1500, 1690)]:
        stats = counter.calibrate(counted, {"input_tokens": reported})
    assert stats.observations == 5
    assert stats.factor == pytest.approx(6510 / 5800, rel=1e-6)
    assert stats.max_abs_error == 250
    assert stats.mean_rel_error == pytest.approx(
        sum(
            abs(r - c) / r
            for c, r in [(1000, 1120), (2000, 2250), (500, 560), (800, 890), (1500, 1690)]
        )
        / 5
    )
    assert counter.calibrated(1000) == round(1000 * 6510 / 5800)
    # with five observations the band becomes the residual error, far tighter than the declared 30 %
    assert counter.error_band == stats.max_rel_error_corrected
    assert counter.error_band < 0.02


def test_calibration_persists() -> None:
    cal = Calibration(max_observations=3)
    for i in range(1, 6):
        cal.observe(counted=100 * i, reported=110 * i)
    restored = Calibration.from_dict(cal.to_dict())
    assert restored.stats() == cal.stats()
    assert restored.stats().observations == 3


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 129}, 129),
        ({"input_tokens": 50, "output_tokens": 3}, 50),
        (
            {"input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 5},
            105,
        ),
    ],
)
def test_usage_shapes(usage: dict, expected: int) -> None:  # type: ignore[type-arg]
    assert prompt_tokens_from_usage(usage) == expected


def test_usage_without_prompt_tokens_is_a_typed_error() -> None:
    with pytest.raises(InvalidConfigError, match="prompt_tokens"):
        prompt_tokens_from_usage({"total_tokens": 5})


def _train_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"])
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 50, trainer)
    tok.save(str(path))


def test_tokenizer_json_gives_exact_counts(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    file = tmp_path / "tokenizer.json"
    _train_tokenizer(file)
    profile = ModelProfile(
        name="tiny-local",
        context_window=4096,
        max_output_tokens=512,
        encoding="cl100k_base",
        tokenizer_file=str(file),
    )
    counter = TokenCounter(profile)
    text = "the lazy dog jumps over the quick brown fox"
    assert counter.exact
    assert counter.count(text) == len(
        Tokenizer.from_file(str(file)).encode(text, add_special_tokens=False).ids
    )
    assert counter.count_batch([text, "fox"]) == [counter.count(text), counter.count("fox")]


def test_missing_tokenizer_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="tokenizer_file"):
        HFTokenizerEncoder(tmp_path / "missing.json")


def test_custom_encoder_protocol_is_checked() -> None:
    with pytest.raises(InvalidConfigError, match="encoder"):
        TokenCounter("gpt-4o", encoder=object())  # type: ignore[arg-type]


def test_bad_tool_choice_is_a_typed_error() -> None:
    counter = TokenCounter("gpt-4o")
    with pytest.raises(InvalidConfigError, match="tool_choice"):
        counter.count_messages(
            [Message(role="user", content="x")], tools=[{"name": "f"}], tool_choice=42
        )  # type: ignore[arg-type]


def test_profile_prices_give_costs() -> None:
    assert get_profile("gpt-4o").cost(1_000_000, 1_000_000) == pytest.approx(12.5)
    assert get_profile("gpt-4o").cost(1_000_000, 0, cached_tokens=1_000_000) == pytest.approx(1.25)
    assert get_profile("llama-3.1-8b-instruct").cost(10, 10) is None


def test_tiktoken_count_batch_agrees_with_count_on_short_and_long_batches() -> None:
    from windowkeeper.tokens._encodings import THREADED_CHARS, load_encoding

    encoder = load_encoding("o200k_base")
    short = [f"#{i} Ann: the parcel {i} arrived broken\n" for i in range(300)]  # counted in a loop
    long = [("Rua das Flores 12, Porto. " * 80)[: THREADED_CHARS * 2 + i] for i in range(6)]
    for texts in (short, long, [*short[:3], *long]):
        assert encoder.count_batch(texts) == [encoder.count(t) for t in texts]
    assert encoder.count_batch([]) == []
