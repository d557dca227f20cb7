"""The protocol a RAG-chunk compressor implements for :class:`~windowkeeper.ContextAssembler`.

The core decides when to compress (the chunks' messages do not fit the rag zone) and by how much
(the zone's room minus each chunk's message frame); a compressor (``windowkeeper-llmlingua``'s
``ChunkCompressor``, or any object with the same ``compress``) decides which words stay. Only
retrieved chunks are handed over: the system prompt, the history and the user's message never are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from windowkeeper._assembler import Chunk
from windowkeeper.exceptions import InvalidConfigError

__all__ = ["CompressedChunkInfo", "CompressionOutcome", "Compressor", "check_compressor"]


class CompressedChunkInfo(Protocol):
    """One chunk of a compressor's answer."""

    @property
    def chunk(self) -> Chunk: ...  # the chunk to send (same id, score and metadata)
    @property
    def original(self) -> Chunk: ...
    @property
    def dropped(self) -> bool: ...
    @property
    def tokens_before(self) -> int: ...
    @property
    def tokens_after(self) -> int: ...
    @property
    def reason(self) -> str: ...


class CompressionOutcome(Protocol):
    """A compressor's answer: one entry per input chunk, in input order."""

    @property
    def chunks(self) -> Sequence[CompressedChunkInfo]: ...


@runtime_checkable
class Compressor(Protocol):
    """Shortens retrieved chunks for a question to a token target (never the question itself)."""

    def compress(
        self, chunks: Sequence[Chunk], question: str, *, target_tokens: int | None = None
    ) -> CompressionOutcome: ...


def check_compressor(compressor: object) -> Compressor | None:
    """``compressor`` when it is a :class:`Compressor` or ``None``, else a typed error naming it."""
    if compressor is not None and not isinstance(compressor, Compressor):
        raise InvalidConfigError(
            "compressor must have compress(chunks, question, *, target_tokens=...) or be None; "
            f"got {type(compressor).__name__}"
        )
    return compressor
