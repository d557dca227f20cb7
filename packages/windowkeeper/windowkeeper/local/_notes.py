"""Tidying a small model's replies into summary notes (the fallback is ``FactNotes``).

SmolLM2-135M quotes turns faithfully more often than it abstracts them, and sometimes loops,
invents a next turn or a number, or emits markup only. These functions keep what can be trusted.
"""

from __future__ import annotations

import re

__all__ = ["clean_reply", "plain_lines", "sentences"]

# a reply line shaped like a transcript turn or a prompt header
_SPEAKER = re.compile(
    r"^\s*[-*]?\s*(?:conversation|earlier notes[^:]*|notes|user|assistant|tool result)\s*:",
    re.I,
)
_PREAMBLE = re.compile(r"^(?:here(?:'s| is| are)|sure|certainly|updated notes)[^\n]*:\s*\n", re.I)
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s*")
_MARKER_CHARS = re.compile(r"[*_#>`|~]")
_SENTENCE_END = re.compile(r"[.!?](?:[\"')\]]*)(?=\s|$)|\n")


def clean_reply(text: str, *, truncated: bool, source: str = "", known: str = "") -> str:
    """Tidy a reply of the small model before it becomes part of a summary.

    Drops a chatty preamble, repeated sentences (loops) and sentences already in ``known``,
    markup-only lines, and, when ``source`` is given, any line with a number the source does
    not contain (the model made it up). A line shaped like a transcript turn (``user: ...``) is
    kept only when its words are in ``source`` (the model quoting the turns); otherwise the
    reply ends there. A sentence cut by the token cap is removed.
    """
    text = _PREAMBLE.sub("", text.strip(), count=1).strip()
    if truncated:  # first, so that what is left of a cut list item is dropped below
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        if ends and ends[-1] < len(text):
            text = text[: ends[-1]].rstrip()
    plain_source = _key(source)
    numbers = set(_NUMBER.findall(source))
    seen = {_key(s) for s in sentences(known)}
    lines: list[str] = []
    for line in text.splitlines():
        turn = _SPEAKER.match(line)
        if turn is not None:
            said = _key(line[turn.end() :])
            if not said or said not in plain_source:
                break  # an echoed prompt header, or a turn nobody took: the notes end here
        body = _plain(line)
        if line.strip() and not re.search(r"[^\W\d_]", body):
            continue  # markup or numbering only
        if source and any(n not in numbers for n in _NUMBER.findall(body)):
            continue  # a number the turns do not contain
        kept = []
        for sentence in sentences(line):
            key = _key(sentence)
            if key in seen:
                continue
            seen.add(key)
            kept.append(sentence)
        if kept or not line.strip():
            lines.append(" ".join(kept))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text if re.search(r"\w", text) else ""


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def _key(text: str) -> str:
    return " ".join(text.split()).lower()


def plain_lines(text: str) -> str:
    """``text`` without list markers and markdown emphasis, line by line."""
    return "\n".join(_plain(line).strip() for line in text.splitlines())


def _plain(line: str) -> str:
    """A line without its list marker and markdown emphasis."""
    return _MARKER_CHARS.sub("", _LIST_MARKER.sub("", line, count=1))
