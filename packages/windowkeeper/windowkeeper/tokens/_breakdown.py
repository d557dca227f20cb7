"""Where the tokens of a text go, by kind of content ("foam vs sweaters").

Prose packs about four characters into a token; JSON punctuation, code indentation, long numbers,
URLs and CJK text pack far fewer. The breakdown finds spans of each kind and counts them separately,
so a user can see which part of a prompt is foam.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["ContentKind", "ContentShare", "TextBreakdown", "breakdown"]

ContentKind: TypeAlias = Literal["prose", "json", "code", "url", "number", "cjk"]
KINDS: tuple[ContentKind, ...] = ("prose", "json", "code", "url", "number", "cjk")

_FENCE = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`)\]]+|\bwww\.[^\s<>\"'`)\]]+")
_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    r"\u3000-\u303f\uff01-\uff0f]+"
)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,._:/-]*\d(?![\w])|(?<![\w.])\d(?![\w])")
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |return\b|if .*:\s*$|for .*:\s*$|\}|\{|"
    r"(?:const|let|var|function|public|private|fn|func)\s|#include|SELECT\s|.*\)\s*\{\s*$)"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ContentShare:
    """Tokens and characters of one kind of content.

    Example:
        >>> ContentShare(kind="prose", chars=400, tokens=100).chars_per_token
        4.0
    """

    kind: ContentKind
    """What the spans are."""
    chars: int
    """Characters of all spans of this kind."""
    tokens: int
    """Tokens of all spans of this kind, each span counted on its own."""

    @property
    def chars_per_token(self) -> float:
        """Characters per token (0 when there are no tokens)."""
        return self.chars / self.tokens if self.tokens else 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class TextBreakdown:
    """Tokens of a text by kind of content.

    ``total_tokens`` is the exact count of the whole text. The parts are counted span by span, so
    their sum can differ from the total by a few tokens where spans meet (``boundary_tokens``).
    """

    total_tokens: int
    """Exact tokens of the whole text."""
    total_chars: int
    """Characters of the whole text."""
    shares: tuple[ContentShare, ...]
    """One entry per kind present, largest token share first."""

    @property
    def boundary_tokens(self) -> int:
        """Total minus the sum of the parts (merges across span boundaries)."""
        return self.total_tokens - sum(s.tokens for s in self.shares)

    def share(self, kind: ContentKind) -> ContentShare:
        """The entry for ``kind`` (zeros if absent)."""
        for s in self.shares:
            if s.kind == kind:
                return s
        return ContentShare(kind=kind, chars=0, tokens=0)


def _is_json(text: str) -> bool:
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] not in "{[":
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


def _split(text: str) -> list[tuple[ContentKind, str]]:
    """Cut a text into (kind, span) pieces that concatenate back to the text."""
    if _is_json(text):
        return [("json", text)]
    pieces: list[tuple[ContentKind, str]] = []
    pos = 0
    for fence in _FENCE.finditer(text):
        pieces += _split_loose(text[pos : fence.start()])
        lang = fence.group(1).lower()
        body_kind: ContentKind = "json" if lang == "json" or _is_json(fence.group(2)) else "code"
        pieces.append((body_kind, fence.group(0)))
        pos = fence.end()
    pieces += _split_loose(text[pos:])
    return pieces


def _split_loose(text: str) -> list[tuple[ContentKind, str]]:
    if not text:
        return []
    pieces: list[tuple[ContentKind, str]] = []
    block: list[str] = []
    block_kind: ContentKind | None = None
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        kind: ContentKind | None = None
        if stripped.startswith(("{", "[")) and _is_json(stripped):
            kind = "json"
        elif stripped and (_CODE_LINE.match(line) or line.startswith(("    ", "\t"))):
            kind = "code"
        if kind != block_kind and block:
            pieces += _flush(block_kind, "".join(block))
            block = []
        block_kind = kind
        block.append(line)
    if block:
        pieces += _flush(block_kind, "".join(block))
    return pieces


def _flush(kind: ContentKind | None, text: str) -> list[tuple[ContentKind, str]]:
    return [(kind, text)] if kind else _split_inline(text)


def _split_inline(text: str) -> list[tuple[ContentKind, str]]:
    spans: list[tuple[int, int, ContentKind]] = []
    taken = [False] * len(text)
    for pattern, kind in ((_URL, "url"), (_CJK, "cjk"), (_NUMBER, "number")):
        for match in pattern.finditer(text):
            start, end = match.span()
            if not any(taken[start:end]):
                spans.append((start, end, kind))  # type: ignore[arg-type]
                taken[start:end] = [True] * (end - start)
    spans.sort()
    pieces: list[tuple[ContentKind, str]] = []
    pos = 0
    for start, end, kind in spans:
        if start > pos:
            pieces.append(("prose", text[pos:start]))
        pieces.append((kind, text[start:end]))
        pos = end
    if pos < len(text):
        pieces.append(("prose", text[pos:]))
    return pieces


def breakdown(text: str, count: Callable[[str], int]) -> TextBreakdown:
    """Tokens of ``text`` by kind of content, counted with ``count`` (e.g. ``TokenCounter.count``).

    Example:
        >>> from windowkeeper import TokenCounter
        >>> b = breakdown('See https://example.com/a?b=1 for {"id": 42}', TokenCounter("gpt-4o").count)
        >>> b.share("url").chars
        25
    """
    chars: dict[ContentKind, int] = dict.fromkeys(KINDS, 0)
    tokens: dict[ContentKind, int] = dict.fromkeys(KINDS, 0)
    for kind, span in _split(text):
        chars[kind] += len(span)
        tokens[kind] += count(span)
    shares = tuple(
        sorted(
            (ContentShare(kind=k, chars=chars[k], tokens=tokens[k]) for k in KINDS if chars[k]),
            key=lambda s: (-s.tokens, s.kind),
        )
    )
    return TextBreakdown(total_tokens=count(text), total_chars=len(text), shares=shares)
