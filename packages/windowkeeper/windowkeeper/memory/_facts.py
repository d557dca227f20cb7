"""Fact notes: a deterministic extractive summariser (no model, milliseconds, nothing invented).

Each new unit becomes short notes: the sentences (or, for long sentences, the clauses) of its user
and assistant messages that carry facts, such as ids, amounts, dates, names, decisions, promises and
preferences, each said by whom and in which turn; a JSON tool result becomes its fact-bearing
fields. A fact already in the notes does not earn a second sentence. Condensing keeps, by the
same rule, the sentences with the most facts per token that fit the cap, in their order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from windowkeeper._checks import check_int
from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.tokens._counter import TokenCounter

__all__ = ["FactNotes", "fact_terms", "sentence_weight"]

# ------------------------------------------------------------------------------ what a fact is

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_URL = r"https?://[^\s<>\"')\]]+"
_AMOUNT = (
    r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:%|USD|EUR|CAD|GBP|dollars|euros)(?![\w])"
)
_ID = r"(?=[\w-]*\d)(?=[\w-]*[^\W\d_])[^\W_][\w]*(?:[-_/.][\w]+)+|(?=\w*\d)(?=\w*[^\W\d_])\w{3,}"
_DATE = (
    rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\b"
    rf"|\b(?:{_DAYS})\b|\d{{4}}-\d{{2}}-\d{{2}}"
)
_NUMBER = r"\d+(?:[.,:/]\d+)*"
_FACT = re.compile(
    rf"(?P<email>{_EMAIL})|(?P<url>{_URL})|(?P<amount>{_AMOUNT})|(?P<date>{_DATE})|"
    rf"(?P<id>\b{_ID}\b)|(?P<number>\b{_NUMBER}\b)",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_CUE = re.compile(
    r"\b(?:decided|decide|decision|agreed|agree|chose|choose|going with|promise[ds]?|will|won't|"
    r"i'll|we'll|you'll|approved|issued|refund(?:ed)?|cancel(?:l?ed)?|booked|scheduled|"
    r"escalat\w*|confirmed|created|submitted|ordered|bought|paid|charged|due|deadline|expires?|"
    r"prefer(?:s|red)?|favou?rite|love[sd]?|hate[sd]?|enjoy(?:s|ed)?|allerg\w*|started|joined|"
    r"moved|married|adopt\w*|plan(?:s|ned|ning)?)\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|my|me|we|we're|our)\b", re.IGNORECASE)
_COMMON = frozenset(
    """a about after again all also an and any are as at be because been before but by can could
    did do does done for from had has have he her here hers him his how i if in into is it its
    just let me more most my no not now of off oh ok okay on once one only or our out over please
    really she so some sorry sure than thank thanks that the their them then there these they this
    those to too up very was we well were what when where which while who why will with would yes
    yeah you your hi hello hey great good nice wow cool awesome perfect fine right got alright
    honestly actually anyway understood done here's there's that's it's i'm i've i'll i'd you're
    you've you'll we're we've we'll they're let's what's january february march april may june
    july august september october november december monday tuesday wednesday thursday friday
    saturday sunday today tomorrow yesterday""".split()  # noqa: SIM905
)
_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")
_CLAUSE = re.compile(r"\s*(?:;|:\s|\s[-–—]\s|,\s(?=(?:and|but|so|which|because|while)\b))\s*")
_MARKUP = re.compile(r"\*\*|__|`+|^#+\s*|^>\s*|^\s*(?:[-*+•]|\d+[.)])\s+")
_NOTE = re.compile(r"^#(?P<unit>\d+) (?P<speaker>[^:\n]{1,60}): (?P<body>.*)$")
_STAMP = re.compile(r"^\[(?P<stamp>[^\]\n]+)\]$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")

LONG_SENTENCE_WORDS = 32
"""A sentence longer than this is cut to its clauses that carry facts."""
TOOL_FIELDS = 6
"""Most fields of one JSON tool result that become a note."""
TOOL_SHARE = 0.5
"""What a tool result's facts weigh when condensing, against the same facts said in the chat."""
DENSITY_POWER = 0.5
"""Condensing ranks a sentence by its weight over its tokens to this power (1: facts per token)."""
RECENCY = 0.25
"""The newest sentence's rank is this much higher than the oldest's, all else equal."""
_TOOL_NOTE = " result"
_TIME_OF_DAY = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_STATUS_KEYS = frozenset(
    {"status", "state", "result", "decision", "resolution", "priority", "tier", "reason", "type"}
)


def fact_terms(text: str, *, known_words: Iterable[str] = ()) -> set[str]:
    """The facts a text states, normalised: ids, amounts, numbers, dates, emails, URLs and names.

    A capitalised word is a name unless it is a common word, or it opens a sentence and
    ``known_words`` does not hold it capitalised (the conversation never uses it as a name
    mid-sentence) or holds it in lower case (an ordinary word).

    Example:
        >>> sorted(fact_terms("Zoë paid $19.95 for order NW-48213-77 on March 6.", known_words={"Zoë"}))
        ['$19.95', 'march 6', 'nw-48213-77', 'zoë']
    """
    facts = {m.group(0).lower().rstrip(".,") for m in _FACT.finditer(text)}
    vocabulary = known_words if isinstance(known_words, (set, frozenset)) else set(known_words)
    for word, start in _words(text):
        key = word.lower().strip("'’-")
        if not word[0].isupper() or key in _COMMON or len(key) < 2:
            continue
        if start and (word not in vocabulary or key in vocabulary):
            continue
        facts.add(key)
    return facts


def _words(text: str) -> Iterator[tuple[str, bool]]:
    """Each word of ``text``, and whether it opens a sentence (or a line)."""
    end = 0
    start = True
    for match in _WORD.finditer(text):
        gap = text[end : match.start()]
        marks = gap.strip()
        if "\n" in gap or (marks and marks[-1] in ".!?:"):
            start = True
        yield match.group(0), start
        start = False
        end = match.end()


def _fact_value(fact: str) -> float:
    """3 for an id, amount, date, email or URL; 2 for a number of two or more digits; 1 else."""
    digits = sum(ch.isdigit() for ch in fact)
    if "@" in fact or "/" in fact or (digits and any(ch.isalpha() or ch in "$€£¥%" for ch in fact)):
        return 3.0
    if digits >= 2:
        return 2.0
    return 1.0


def sentence_weight(sentence: str, known: set[str], *, known_words: Iterable[str] = ()) -> float:
    """How much a sentence adds to notes that already hold the facts ``known``.

    Each new fact: 3 for an id, amount, date, email or URL, 2 for a number of two or more digits,
    1 for a name or a short number; then 1 for a decision, promise or preference word and 0.5 for
    a first-person statement. A question earns only its new facts.

    Example:
        >>> sentence_weight("Thanks, that works!", set())
        0.0
        >>> sentence_weight("The refund RF-7731-0459 of $19.95 was issued.", set())
        7.0
    """
    return _weigh(sentence, known, known_words)[0]


def _weigh(sentence: str, known: set[str], known_words: Iterable[str]) -> tuple[float, set[str]]:
    """:func:`sentence_weight`, and the sentence's facts (so a caller need not find them twice)."""
    facts = fact_terms(sentence, known_words=known_words)
    weight = float(sum(_fact_value(f) for f in facts - known))
    if sentence.rstrip().endswith("?"):
        return weight, facts
    if _CUE.search(sentence):
        weight += 1.0
    if weight and _FIRST_PERSON.search(sentence):
        weight += 0.5
    return weight, facts


# -------------------------------------------------------------------------------- the notes


@dataclass(frozen=True, slots=True)
class _Line:
    """One line of notes: a stamp line, or a unit's speaker's sentences."""

    unit: int | None
    speaker: str
    sentences: tuple[str, ...]

    def render(self) -> str:
        if self.unit is None and not self.speaker:
            return " ".join(self.sentences)
        if self.unit is None:  # a stamp
            return f"[{self.speaker}]"
        return f"#{self.unit} {self.speaker}: {' '.join(self.sentences)}"


def _parse(text: str) -> list[_Line]:
    """Notes text back into lines; other text (another summariser's) becomes plain lines."""
    lines: list[_Line] = []
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw:
            continue
        stamp = _STAMP.match(raw)
        if stamp is not None:
            lines.append(_Line(None, stamp.group("stamp"), ()))
            continue
        note = _NOTE.match(raw)
        if note is not None:
            body = _sentences(note.group("body"))
            lines.append(_Line(int(note.group("unit")), note.group("speaker"), tuple(body)))
        else:
            lines.append(_Line(None, "", tuple(_sentences(raw))))
    return lines


def _render(lines: Iterable[_Line]) -> str:
    """Lines as text, consecutive notes of one unit and speaker on one line.

    A stamp line is shown only when a note follows it.
    """
    out: list[str] = []
    pending_stamp: _Line | None = None
    last: _Line | None = None
    for line in lines:
        if line.unit is None and line.speaker and not line.sentences:
            pending_stamp = line
            continue
        if not line.sentences:
            continue
        if pending_stamp is not None:
            out.append(pending_stamp.render())
            pending_stamp = None
            last = None
        if (
            last is not None
            and line.unit is not None
            and (line.unit, line.speaker) == (last.unit, last.speaker)
        ):
            last = _Line(last.unit, last.speaker, last.sentences + line.sentences)
            out[-1] = last.render()
            continue
        last = line
        out.append(line.render())
    return "\n".join(out)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def _plain(line: str) -> str:
    """A line without markdown emphasis, headings and list markers."""
    return " ".join(_MARKUP.sub("", line).split())


def _stamp(timestamp: str | None) -> str | None:
    """What a unit's timestamp shows in the notes: its day for ISO times, else as given."""
    if not timestamp:
        return None
    day = _ISO_DAY.match(timestamp)
    return day.group(0) if day else timestamp.strip()


def _last_stamp(lines: Sequence[_Line]) -> str | None:
    return next((ln.speaker for ln in reversed(lines) if ln.unit is None and ln.speaker), None)


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(item, str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _flatten(item, path)
    elif value is not None and value != "":
        yield path, value


class FactNotes:
    """A deterministic extractive summariser: notes of the facts, nothing invented, no model.

    A :data:`~windowkeeper.memory.Summarizer` (``notes(previous, units)``) with a ``condense``
    method, so :class:`~windowkeeper.memory.RollingSummary` and
    :class:`~windowkeeper.memory.LayeredMemory` use it for the whole hierarchy. It is their default
    summariser.

    For each unit it writes one line per kept sentence, ``#<turn> <speaker>: <sentence>``, keeping
    only sentences that carry a fact the notes do not hold yet: ids, amounts, numbers, dates, emails,
    URLs, names, decisions, promises, preferences (see :func:`sentence_weight`). A sentence longer
    than :data:`LONG_SENTENCE_WORDS` words keeps only its clauses that carry facts. A JSON tool
    result becomes ``#<turn> <tool>: key value, ...`` with its fact-bearing fields not already said
    in the turn. A ``[date]`` line opens each new day (or session timestamp). Every word of a note is
    copied from the turns: ids and amounts are kept verbatim and nothing is invented.

    :meth:`condense` keeps, by the same rule, the sentences with the most facts per token that fit
    ``max_tokens``, newest first among equals, in their original order.

    Args:
        counter: Counts tokens against the caps (the memory passes its own); default a GPT-4o
            (``o200k_base``) counter.
        max_note_tokens: Most tokens one note sentence may keep (a longer one is cut to its clauses,
            then to this many tokens at a word).

    Example:
        >>> from windowkeeper import Message
        >>> notes = FactNotes()
        >>> unit = Unit(index=3, messages=(
        ...     Message(role="user", content="Hi! Please refund order NW-48213-77. Thanks so much."),
        ...     Message(role="assistant", content="Done: refund RF-7731-0459 of $19.95 is on its way."),
        ... ))
        >>> print(notes("", [unit]))
        #3 user: Please refund order NW-48213-77.
        #3 assistant: Done: refund RF-7731-0459 of $19.95 is on its way.
    """

    max_levels = 1
    """The summary hierarchy this summariser wants: one level. Condensing ranks every sentence by
    its facts per token, the newer a little higher, which keeps more facts under the cap than a
    split into levels with fixed shares (measured in ``bench/bench_facts.py``)."""

    def __init__(self, *, counter: TokenCounter | None = None, max_note_tokens: int = 80) -> None:
        if counter is not None and not isinstance(counter, TokenCounter):
            raise InvalidConfigError(
                f"counter must be a TokenCounter or None; got {type(counter).__name__}"
            )
        self.max_note_tokens = check_int("max_note_tokens", max_note_tokens, 8, 4096)
        self._count: Callable[[str], int] = (counter or TokenCounter("gpt-4o")).count

    def __repr__(self) -> str:
        return f"FactNotes(max_note_tokens={self.max_note_tokens})"

    # ------------------------------------------------------------------------------ summarise

    def __call__(self, previous: str, units: Sequence[Unit]) -> str:
        """``previous`` followed by the notes of ``units`` (with no units: ``previous`` condensed)."""
        if not units:
            return self.condense(previous, self._count(previous)) if previous.strip() else ""
        lines = _parse(previous)
        known: set[str] = set()
        said = {s.lower() for ln in lines for s in ln.sentences}
        words = _lower_words(previous, *(_unit_text(u) for u in units))
        for line in lines:
            for sentence in line.sentences:
                known |= fact_terms(sentence, known_words=words)
        stamp = _last_stamp(lines)
        for unit in units:
            day = _stamp(unit.timestamp)
            if day is not None and day != stamp:
                lines.append(_Line(None, day, ()))
                stamp = day
            lines.extend(self._unit_notes(unit, known, said, words))
        return _render(lines)

    summarize = __call__

    def _unit_notes(
        self, unit: Unit, known: set[str], said: set[str], words: set[str]
    ) -> list[_Line]:
        out: list[_Line] = []
        names = {c.id: c.name for m in unit.messages for c in m.tool_calls}
        spoken = " ".join(m.text for m in unit.messages if m.role not in ("tool", "function"))
        spoken_facts = fact_terms(spoken, known_words=words)
        for message in unit.messages:
            if message.zone_hint == "rag" or not message.text.strip():
                continue
            if message.role in ("tool", "function"):
                # a tool result notes what the chat does not say; its facts stay out of
                # ``known``, so a later sentence of the chat that repeats one is still kept
                tool = names.get(message.tool_call_id) or message.name or "tool"
                out += self._tool_note(unit.index, tool, message.text, known | spoken_facts, words)
            else:
                speaker = message.name or message.role
                out += self._text_note(unit.index, speaker, message.text, known, said, words)
        return out

    def _text_note(
        self, unit: int, speaker: str, text: str, known: set[str], said: set[str], words: set[str]
    ) -> list[_Line]:
        kept: list[str] = []
        for raw in text.splitlines():
            line = _plain(raw)
            if line and line[-1] not in ".!?:;…":
                line += "."  # a list item or heading becomes a sentence of its own
            for sentence in _sentences(line):
                for piece in self._pieces(sentence, known, words):
                    if piece.lower() in said:
                        continue
                    weight, facts = _weigh(piece, known, words)
                    if weight < 1:
                        continue
                    kept.append(piece)
                    said.add(piece.lower())
                    known |= facts
        return [_Line(unit, speaker, (k,)) for k in kept]

    def _pieces(self, sentence: str, known: set[str], words: set[str]) -> list[str]:
        """The sentence, or its clauses that carry facts when it is long; each within the cap."""
        pieces = [sentence]
        if len(sentence.split()) > LONG_SENTENCE_WORDS:
            clauses = [c for c in _CLAUSE.split(sentence) if c and c.strip()]
            useful = [c for c in clauses if sentence_weight(c, known, known_words=words) > 0]
            if useful and len(useful) < len(clauses):
                pieces = ["; ".join(c.strip().rstrip(".;,") for c in useful) + "."]
        return [_cut_words(p, self.max_note_tokens, self._count) for p in pieces]

    def _tool_note(
        self, unit: int, tool: str, text: str, known: set[str], words: set[str]
    ) -> list[_Line]:
        try:
            data = json.loads(text)
        except ValueError:
            return self._text_note(unit, tool, text, set(known), set(), words)
        fields: list[str] = []
        seen = set(known)
        for key, value in _flatten(data):
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            if len(shown) > 80 or _TIME_OF_DAY.match(shown):
                continue  # prose and timestamps to the second: the chat says what matters
            facts = fact_terms(shown, known_words=words) - seen
            if not facts and key.lower() not in _STATUS_KEYS:
                continue
            if not facts and shown.lower() in seen:
                continue
            fields.append(f"{key} {shown}" if key else shown)
            seen |= facts | {shown.lower()}
            if len(fields) == TOOL_FIELDS:
                break
        if not fields:
            return []
        return [_Line(unit, tool + _TOOL_NOTE, (", ".join(fields) + ".",))]

    # -------------------------------------------------------------------------------- condense

    def condense(self, text: str, max_tokens: int) -> str:
        """The sentences of ``text`` with the most facts per token that fit ``max_tokens``.

        Repeated facts earn nothing (the first sentence that states a fact keeps the credit for
        it); among equal sentences the newer is kept. The result keeps the original order, the
        turn numbers and speakers, and the date lines of the notes kept.
        """
        limit = check_int("max_tokens", max_tokens, 0)
        lines = _parse(text)
        words = _lower_words(text)
        items = [(i, s) for i, line in enumerate(lines) for s in line.sentences]  # (line, sentence)
        known: set[str] = set()
        scored: list[tuple[float, int]] = []
        for k, (i, sentence) in enumerate(items):
            weight, facts = _weigh(sentence, known, words)
            if lines[i].speaker.endswith(_TOOL_NOTE):
                weight *= TOOL_SHARE
            known |= facts
            if weight > 0:
                density = weight / max(self._count(sentence), 1) ** DENSITY_POWER
                scored.append((density * (1 + RECENCY * k / max(len(items), 1)), k))
        ranked = [k for _, k in sorted(scored, key=lambda s: (-s[0], -s[1]))]
        chosen: set[int] = set()
        result = ""
        for k in ranked:  # best first; each kept only if the whole still fits
            chosen.add(k)
            attempt = self._laid_out(lines, items, chosen)
            if self._count(attempt) <= limit:
                result = attempt
            else:
                chosen.discard(k)
        if not result and ranked and limit > 0:  # no sentence fits whole: the best one, cut
            i, sentence = items[ranked[0]]
            line = _Line(lines[i].unit, lines[i].speaker, ("",))
            room = limit - self._count(line.render())
            if room > 1:
                cut = _cut_words(sentence, room, self._count)
                result = _render([_Line(line.unit, line.speaker, (cut,))])
        return result

    @staticmethod
    def _laid_out(lines: list[_Line], items: list[tuple[int, str]], chosen: set[int]) -> str:
        keep: dict[int, list[str]] = {}
        for k in sorted(chosen):
            i, sentence = items[k]
            keep.setdefault(i, []).append(sentence)
        return _render(
            _Line(ln.unit, ln.speaker, tuple(keep.get(i, ())))
            if ln.sentences
            else ln  # stamp lines stay; _render drops the ones no note follows
            for i, ln in enumerate(lines)
        )


def _unit_text(unit: Unit) -> str:
    return "\n".join(m.text for m in unit.messages if m.zone_hint != "rag")


def _lower_words(*texts: str) -> set[str]:
    """Words the texts use in lower case, and capitalised words they use mid-sentence.

    A capitalised word at a sentence start is a name only if it also appears capitalised
    mid-sentence, and is not a word the texts use in lower case.
    """
    out: set[str] = set()
    for text in texts:
        for word, start in _words(text):
            if word.islower() or (word[0].isupper() and not start):
                out.add(word)
    return out


def _cut_words(text: str, limit: int, count: Callable[[str], int]) -> str:
    """``text`` if it fits ``limit`` tokens, else its longest start of whole words that does, + "…"."""
    if count(text) <= limit:
        return text
    words = text.split()
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid]) + " …") <= limit:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo]) + " …"
