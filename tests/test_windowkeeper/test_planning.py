from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from windowkeeper import (
    KV_PRESETS,
    InvalidConfigError,
    KVSpec,
    Message,
    PrefixCacheWarning,
    PrefixCheck,
    PromptCreepLog,
    TokenCounter,
    fit_creep,
    format_bytes,
    kv_cache_size,
    project_creep,
)


@pytest.mark.parametrize(
    ("fixed", "reply", "turn"),
    [(1_800, 350, 84), (1_800, 800, 61), (2_200, 350, 83)],  # the seed rounds the last one to 82
)
def test_seed_creep_figures(fixed: int, reply: int, turn: int) -> None:
    p = project_creep(
        context_window=128_000,
        fixed=fixed,
        rag_per_turn=800,
        user_per_turn=60,
        reply_per_turn=reply,
    )
    assert p.turns_until(0.8) == turn
    assert p.utilization_after(turn) >= 0.8 > p.utilization_after(turn - 1)


def test_creep_edge_cases() -> None:
    assert project_creep(context_window=1_000, fixed=900).turns_until(0.8) == 0
    assert project_creep(context_window=1_000, fixed=100).turns_until(0.8) is None
    with pytest.raises(InvalidConfigError, match="rag_per_turn"):
        project_creep(context_window=1_000, fixed=0, rag_per_turn=-1)
    with pytest.raises(InvalidConfigError, match="threshold"):
        project_creep(context_window=1_000, fixed=0).turns_until(0)


def test_fit_creep_recovers_a_line() -> None:
    observed = [1_800 + 1_210 * t + (7 if t % 2 else -7) for t in range(1, 21)]
    p = fit_creep(observed, context_window=128_000)
    assert p.per_turn == pytest.approx(1_210, abs=2)
    assert p.turns_until(0.8) in (83, 84, 85)
    with pytest.raises(InvalidConfigError, match="at least 2"):
        fit_creep([5], context_window=10)


def test_kv_seed_figures() -> None:
    mha = kv_cache_size(KV_PRESETS["7b-mha"], tokens=128_000, dtype="bf16")
    assert mha.bytes_per_token == 524_288
    assert mha.total_bytes == 67_108_864_000
    assert round(mha.gb, 1) == 67.1
    assert round(mha.gib, 1) == 62.5
    gqa = kv_cache_size(KV_PRESETS["7b-gqa8"], tokens=128_000)
    assert gqa.total_bytes * 4 == mha.total_bytes
    assert kv_cache_size(KV_PRESETS["70b-mha"], tokens=1).bytes_per_token == 2_621_440
    assert format_bytes(mha.total_bytes) == "67.1 GB (62.5 GiB)"


def test_kv_batch_dtype_and_mla() -> None:
    spec = KVSpec(layers=2, kv_heads=2, head_dim=4)
    assert (
        kv_cache_size(spec, tokens=10, dtype="fp32", batch=3).total_bytes
        == 2 * 2 * 2 * 4 * 4 * 10 * 3
    )
    assert kv_cache_size(spec, tokens=10, dtype="int4").total_bytes == 2 * 2 * 2 * 4 * 10 // 2
    mla = kv_cache_size(KV_PRESETS["deepseek-v3-mla"], tokens=1)
    assert mla.bytes_per_token == 61 * (512 + 64) * 2


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"layers": 0, "kv_heads": 1, "head_dim": 1}, "layers"),
        ({"layers": 1}, "kv_heads"),
        ({"layers": 1, "kv_heads": 1, "head_dim": 1, "latent_dim": 5}, "either"),
    ],
)
def test_kv_spec_validation(kwargs: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidConfigError, match=needle):
        KVSpec(**kwargs)


def test_kv_size_validation() -> None:
    with pytest.raises(InvalidConfigError, match="dtype"):
        kv_cache_size(KV_PRESETS["7b-mha"], tokens=1, dtype="fp64")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="batch"):
        kv_cache_size(KV_PRESETS["7b-mha"], tokens=1, batch=0)


def test_prefix_check_flags_short_and_changed_prefixes() -> None:
    counter = TokenCounter("gpt-4o")
    check = PrefixCheck(counter)
    long_system = [Message(role="system", content="Follow the policy carefully. " * 300)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = check.check(long_system)
    assert first.cacheable
    assert first.tokens >= 1024
    again = check.check(long_system)
    assert again.fingerprint == first.fingerprint
    assert again.cacheable
    with pytest.warns(PrefixCacheWarning, match="changed"):
        changed = check.check(
            [Message(role="system", content="Follow the policy carefully. " * 301)]
        )
    assert changed.changed
    assert not changed.cacheable
    with pytest.warns(PrefixCacheWarning, match="1024"):
        short = PrefixCheck(counter).check([Message(role="system", content="Be brief.")])
    assert not short.cacheable


def test_prefix_includes_tools(cookbook: dict) -> None:  # type: ignore[type-arg]
    counter = TokenCounter("gpt-4o")
    system = [Message(role="system", content="x")]
    a = PrefixCheck(counter, warn=False).check(system)
    b = PrefixCheck(counter, warn=False).check(system, cookbook["tools_example"]["tools"])
    assert a.fingerprint != b.fingerprint
    assert b.tokens > a.tokens


def test_prompt_creep_log(tmp_path: Path) -> None:
    counter = TokenCounter("gpt-4o")
    log = PromptCreepLog(tmp_path / "creep.jsonl", counter)
    log.record([Message(role="system", content="Be brief.")], label="v1", timestamp=1.0)
    log.record(
        [Message(role="system", content="Be brief. Always cite sources. " * 10)],
        label="v2",
        timestamp=2.0,
        tools=[{"name": "search", "parameters": {"type": "object", "properties": {}}}],
    )
    with (tmp_path / "creep.jsonl").open("a") as fh:
        fh.write('{"time": 3, "label": "torn')  # a crash mid-write
    report = PromptCreepLog(tmp_path / "creep.jsonl", counter).report()
    assert report.entries == 2
    assert report.versions == 2
    assert report.system_growth > 50
    assert report.tools_growth > 0
    assert report.growth_ratio > 5


def test_prompt_creep_log_empty_and_bad_path(tmp_path: Path) -> None:
    counter = TokenCounter("gpt-4o")
    assert PromptCreepLog(tmp_path / "none.jsonl", counter).report().entries == 0
    with pytest.raises(InvalidConfigError, match="directory"):
        PromptCreepLog(tmp_path, counter)
