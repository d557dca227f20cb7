"""Planning tools: context-creep projection, KV-cache memory, prompt-cache check, prompt-creep audit."""

from __future__ import annotations

from windowkeeper.planning._creep import CreepProjection, fit_creep, project_creep
from windowkeeper.planning._kv import KV_PRESETS, KVCacheSize, KVSpec, format_bytes, kv_cache_size
from windowkeeper.planning._prefix import (
    PrefixCheck,
    PrefixVerdict,
    PromptCreepLog,
    PromptCreepReport,
    prefix_fingerprint,
)

__all__ = [
    "KV_PRESETS",
    "CreepProjection",
    "KVCacheSize",
    "KVSpec",
    "PrefixCheck",
    "PrefixVerdict",
    "PromptCreepLog",
    "PromptCreepReport",
    "fit_creep",
    "format_bytes",
    "kv_cache_size",
    "prefix_fingerprint",
    "project_creep",
]
