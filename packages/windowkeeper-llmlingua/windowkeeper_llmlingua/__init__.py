"""windowkeeper-llmlingua: question-aware compression of retrieved chunks, per chunk in and out.

- :class:`ChunkCompressor`: the fast path (one batched pass of a small causal LM per request).
- :class:`CausalScorer`: the scorer (the embedded SmolLM2-135M-Instruct by default).
- :class:`UpstreamCompressor`: the real ``llmlingua.PromptCompressor`` offline, per chunk.
- :func:`find_spans`: the protected spans, kept verbatim and checked after compression.
"""

from windowkeeper_llmlingua._compressor import ChunkCompressor, CompressedChunk, CompressionResult
from windowkeeper_llmlingua._scorer import CausalScorer, ChunkScore, shared_scorer
from windowkeeper_llmlingua._spans import DEFAULT_PATTERNS, Span, find_spans, missing_spans
from windowkeeper_llmlingua._upstream import LegacyCacheModel, UpstreamCompressor

__all__ = [
    "DEFAULT_PATTERNS",
    "CausalScorer",
    "ChunkCompressor",
    "ChunkScore",
    "CompressedChunk",
    "CompressionResult",
    "LegacyCacheModel",
    "Span",
    "UpstreamCompressor",
    "find_spans",
    "missing_spans",
    "shared_scorer",
]
