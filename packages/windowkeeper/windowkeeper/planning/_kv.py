"""KV-cache memory: what a context of N tokens costs in accelerator memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from windowkeeper.exceptions import InvalidConfigError

__all__ = ["KV_PRESETS", "KVCacheSize", "KVSpec", "format_bytes", "kv_cache_size"]

DType: TypeAlias = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]
DTYPE_BYTES: dict[str, float] = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


@dataclass(frozen=True, kw_only=True, slots=True)
class KVSpec:
    """The attention shape that sets KV-cache size.

    Standard attention (MHA, GQA, MQA) stores a key and a value per layer and KV head:
    ``2 × layers × kv_heads × head_dim`` elements per token. Multi-head latent attention (MLA, DeepSeek)
    stores one compressed latent plus a decoupled RoPE key per layer: ``layers × (latent_dim + rope_dim)``.

    Example:
        >>> KVSpec(layers=32, kv_heads=32, head_dim=128).elements_per_token
        262144
    """

    layers: int
    """Transformer layers."""
    kv_heads: int = 0
    """Key/value heads (= attention heads for MHA, fewer for GQA, 1 for MQA)."""
    head_dim: int = 0
    """Dimension of one head."""
    latent_dim: int = 0
    """MLA only: the compressed KV latent dimension."""
    rope_dim: int = 0
    """MLA only: the decoupled RoPE key dimension."""
    note: str = ""
    """Where the shape comes from."""

    def __post_init__(self) -> None:
        if self.layers <= 0:
            raise InvalidConfigError(f"layers must be a positive int; got {self.layers!r}")
        mla = self.latent_dim > 0
        if mla and (self.kv_heads or self.head_dim):
            raise InvalidConfigError(
                "give either kv_heads and head_dim (MHA/GQA) or latent_dim (MLA), not both"
            )
        if not mla and (self.kv_heads <= 0 or self.head_dim <= 0):
            raise InvalidConfigError(
                f"kv_heads and head_dim must be positive ints; got kv_heads={self.kv_heads!r}, "
                f"head_dim={self.head_dim!r}"
            )
        if self.rope_dim < 0:
            raise InvalidConfigError(f"rope_dim must be >= 0; got {self.rope_dim!r}")

    @property
    def elements_per_token(self) -> int:
        """Cached elements per token across all layers."""
        if self.latent_dim:
            return self.layers * (self.latent_dim + self.rope_dim)
        return 2 * self.layers * self.kv_heads * self.head_dim


KV_PRESETS: dict[str, KVSpec] = {
    "7b-mha": KVSpec(layers=32, kv_heads=32, head_dim=128, note="Llama-2-7B shape: MHA, 32 heads"),
    "7b-gqa8": KVSpec(
        layers=32, kv_heads=8, head_dim=128, note="Llama-3-8B / Mistral-7B: GQA, 8 KV heads"
    ),
    "13b-mha": KVSpec(layers=40, kv_heads=40, head_dim=128, note="Llama-2-13B: MHA"),
    "70b-mha": KVSpec(
        layers=80, kv_heads=64, head_dim=128, note="a 70B model with full MHA (hypothetical)"
    ),
    "70b-gqa8": KVSpec(layers=80, kv_heads=8, head_dim=128, note="Llama-2/3-70B: GQA, 8 KV heads"),
    "qwen2.5-7b": KVSpec(layers=28, kv_heads=4, head_dim=128, note="Qwen2.5-7B: GQA, 4 KV heads"),
    "mixtral-8x7b": KVSpec(
        layers=32, kv_heads=8, head_dim=128, note="Mixtral-8x7B: GQA, 8 KV heads"
    ),
    "deepseek-v3-mla": KVSpec(
        layers=61,
        latent_dim=512,
        rope_dim=64,
        note="DeepSeek-V3: MLA, latent 512 + RoPE 64 per layer",
    ),
}
"""Common attention shapes; the 7B/70B MHA and GQA figures are the seed's worked examples."""


@dataclass(frozen=True, kw_only=True, slots=True)
class KVCacheSize:
    """KV-cache size of a context.

    Example:
        >>> s = kv_cache_size(KV_PRESETS["7b-mha"], tokens=128_000, dtype="bf16")
        >>> s.bytes_per_token, s.total_bytes
        (524288, 67108864000)
    """

    spec: KVSpec
    """The attention shape."""
    dtype: str
    """Element type."""
    tokens: int
    """Context length."""
    batch: int
    """Sequences held at once."""
    bytes_per_token: int
    """Bytes one token costs across all layers."""
    total_bytes: int
    """``bytes_per_token × tokens × batch``."""

    @property
    def gb(self) -> float:
        """Decimal gigabytes (10⁹)."""
        return self.total_bytes / 1e9

    @property
    def gib(self) -> float:
        """Binary gibibytes (2³⁰)."""
        return self.total_bytes / 2**30


def kv_cache_size(
    spec: KVSpec, *, tokens: int, dtype: DType = "bf16", batch: int = 1
) -> KVCacheSize:
    """``2 × layers × kv_heads × head_dim × bytes × tokens × batch`` (MLA: see :class:`KVSpec`)."""
    if dtype not in DTYPE_BYTES:
        raise InvalidConfigError(f"dtype must be one of {sorted(DTYPE_BYTES)}; got {dtype!r}")
    if tokens < 0:
        raise InvalidConfigError(f"tokens must be >= 0; got {tokens!r}")
    if batch < 1:
        raise InvalidConfigError(f"batch must be >= 1; got {batch!r}")
    per_token = spec.elements_per_token * DTYPE_BYTES[dtype]
    return KVCacheSize(
        spec=spec,
        dtype=dtype,
        tokens=tokens,
        batch=batch,
        bytes_per_token=int(per_token),
        total_bytes=int(per_token * tokens * batch),
    )


def format_bytes(n: float) -> str:
    """``67.1 GB (62.5 GiB)``: decimal and binary units side by side.

    Example:
        >>> format_bytes(67_108_864_000)
        '67.1 GB (62.5 GiB)'
    """

    def pick(value: float, base: int, units: tuple[str, ...]) -> str:
        for unit in units[:-1]:
            if abs(value) < base:
                return f"{value:.1f} {unit}" if unit != units[0] else f"{value:.0f} {unit}"
            value /= base
        return f"{value:.1f} {units[-1]}"

    return f"{pick(n, 1000, ('B', 'kB', 'MB', 'GB', 'TB'))} ({pick(n, 1024, ('B', 'KiB', 'MiB', 'GiB', 'TiB'))})"
