"""Protected spans: the parts of a text that must stay verbatim wherever it is shortened.

Code (fenced and inline), numbers with their units and separators, dates and times, URLs, emails,
file paths, IDs, UUIDs and hashes, JSON, and any pattern the user adds. Found as character ranges
of the original text. One finder for the whole project: a compressor keeps them and checks them
again in its result (:func:`missing_spans`; ``windowkeeper-llmlingua`` re-exports these), and an
abbreviated tool result lists those of the part it cuts (:func:`windowkeeper.memory.kept_facts`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from windowkeeper.exceptions import InvalidConfigError

__all__ = ["DEFAULT_PATTERNS", "Span", "find_spans", "missing_spans", "protected_words"]

_UNITS = (
    r"%|‰|°[CF]|[kKMGTP]i?B|bytes?|ms|µs|ns|s|sec|secs|min|mins|h|hrs?|days?|weeks?|months?|years?"
    r"|mg|µg|kg|g|lbs?|oz|km|m|cm|mm|µm|nm|mi|ft|in|ml|mL|l|L|kWh|Wh|W|kW|MW|V|mV|A|mA|Hz|kHz|MHz|GHz"
    r"|px|pt|em|rem|x|USD|EUR|GBP|JPY|CHF"
)
_CURRENCY = r"(?:[$€£¥₹]|(?:USD|EUR|GBP|JPY|CHF|CAD|AUD)\s?)"

DEFAULT_PATTERNS: dict[str, str] = {
    "code block": r"```[\s\S]*?(?:```|\Z)|~~~[\s\S]*?(?:~~~|\Z)",
    "inline code": r"`[^`\n]+`",
    "url": r"\b(?:https?|ftp|file)://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}]|\bwww\.[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]}]",
    "email": r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b",
    "uuid": r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
    "path": r"(?:[A-Za-z]:\\|~/|\.{1,2}/|/)[\w.@+-]+(?:[/\\][\w.@+-]*[\w@+-])+"
    r"|\b[\w.-]+(?:/[\w.-]+)+\.[A-Za-z0-9]{1,8}\b",
    "date or time": r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"
    r"|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b|\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AaPp][Mm])?\b",
    "number": rf"{_CURRENCY}?[-+−]?\d+(?:[,\u202f\u00a0 ]\d{{3}})*(?:[.,]\d+)?(?:[eE][-+]?\d+)?"
    rf"(?:\s?(?:{_UNITS})\b)?",
    "id": r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9]+(?:[-_.:#/][A-Za-z0-9]+)+\b"
    r"|\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{6,}\b|#\d+\b|\b0x[0-9a-fA-F]+\b",
}
"""The span kinds found by default: name -> regular expression."""


@dataclass(frozen=True, slots=True)
class Span:
    """A protected span: ``text[start:end]`` of the original chunk, and what kind it is."""

    start: int
    end: int
    kind: str
    text: str


def _compile(patterns: Iterable[str | re.Pattern[str]]) -> list[re.Pattern[str]]:
    out: list[re.Pattern[str]] = []
    for pattern in patterns:
        if isinstance(pattern, re.Pattern):
            out.append(pattern)
            continue
        if not isinstance(pattern, str) or not pattern:
            raise InvalidConfigError(
                f"protect must hold regular expressions (str or re.Pattern); got {pattern!r}"
            )
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            raise InvalidConfigError(
                f"protect pattern {pattern!r} is not a valid regex: {exc}"
            ) from exc
    return out


@functools.cache
def _default_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """The default kinds, compiled on first use (not at ``import windowkeeper``)."""
    return [(kind, re.compile(p)) for kind, p in DEFAULT_PATTERNS.items()]


def _json_spans(text: str) -> list[tuple[int, int]]:
    """Balanced ``{...}`` / ``[...]`` segments that parse as JSON (objects and arrays)."""
    out: list[tuple[int, int]] = []
    decoder = json.JSONDecoder()
    i = 0
    while True:
        i = min((p for p in (text.find("{", i), text.find("[", i)) if p >= 0), default=-1)
        if i < 0:
            return out
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        if isinstance(value, dict | list) and value:
            out.append((i, end))
            i = end
        else:
            i += 1


def find_spans(
    text: str,
    extra: Sequence[str | re.Pattern[str]] = (),
    *,
    defaults: bool = True,
    kinds: Collection[str] | None = None,
) -> list[Span]:
    """The protected spans of ``text``, sorted, overlapping ones merged.

    ``kinds`` limits the default kinds looked for (e.g. no ``"json"``: an array of dates is then
    its dates, not one span); ``None`` looks for all of them.

    Example:
        >>> [s.text for s in find_spans("Pay USD 1,234.50 by 2024-03-17 at https://x.io/pay.")]
        ['USD 1,234.50', '2024-03-17', 'https://x.io/pay']
    """
    found: list[tuple[int, int, str]] = []
    if defaults:
        for kind, pattern in _default_patterns():
            if kinds is None or kind in kinds:
                found += [
                    (m.start(), m.end(), kind)
                    for m in pattern.finditer(text)
                    if m.end() > m.start()
                ]
        if kinds is None or "json" in kinds:
            found += [(a, b, "json") for a, b in _json_spans(text)]
    for pattern in _compile(extra):
        found += [
            (m.start(), m.end(), "user") for m in pattern.finditer(text) if m.end() > m.start()
        ]
    found.sort(key=lambda s: (s[0], -s[1]))
    merged: list[list[object]] = []
    for start, end, kind in found:
        if merged and start < int(merged[-1][1]):  # type: ignore[call-overload]
            last = merged[-1]
            if end > int(last[1]):  # type: ignore[call-overload]
                last[1] = end
            continue
        merged.append([start, end, kind])
    return [Span(int(a), int(b), str(k), text[int(a) : int(b)]) for a, b, k in merged]  # type: ignore[call-overload]


def protected_words(words: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[bool]:
    """For each word ``(start, end)`` (sorted), whether it overlaps a protected span."""
    out = [False] * len(words)
    j = 0
    for i, (start, end) in enumerate(words):
        while j < len(spans) and spans[j].end <= start:
            j += 1
        k = j
        while k < len(spans) and spans[k].start < end:
            if spans[k].end > start:
                out[i] = True
                break
            k += 1
    return out


def missing_spans(spans: Sequence[Span], compressed: str) -> list[Span]:
    """The spans not found verbatim in ``compressed``, in order (an empty list: all kept)."""
    missing: list[Span] = []
    at = 0
    for span in spans:
        found = compressed.find(span.text, at)
        if found < 0:
            missing.append(span)
        else:
            at = found + len(span.text)
    return missing
