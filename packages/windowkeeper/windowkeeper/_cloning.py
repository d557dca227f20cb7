"""Instance cloning: compress a long conversation into a versioned artifact that seeds a new one."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast

from windowkeeper._messages import Message, as_messages
from windowkeeper._units import Unit, group_units, split_system
from windowkeeper.exceptions import BudgetExceededError, InvalidConfigError
from windowkeeper.memory._base import Summarizer, render_unit
from windowkeeper.memory._facts import FactNotes
from windowkeeper.tokens._counter import TokenCounter

__all__ = ["CLONE_FORMAT", "CloneArtifact", "Decision", "Snippet", "clone_conversation"]

CLONE_FORMAT = "windowkeeper.clone/1"
"""The artifact format this version writes and reads."""

SnippetKind = Literal["code", "number", "id"]

_URL = re.compile(r"https?://[^\s<>\"')\]]+")
_PATH = re.compile(
    r"(?<![\w/])(?:~?/|\./|\.\./)?(?:[\w.-]+/)+[\w.-]+\.\w{1,8}\b|\b[\w-]+\.(?:py|ts|js|json|md|yaml|yml|toml|csv|txt|sql|sh|ipynb|go|rs|java|html|css)\b"
)
_CODE = re.compile(r"```[\w+-]*\n.*?```|`[^`\n]{2,120}`", re.S)
_ID = re.compile(
    r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z][A-Za-z0-9]*[-_][A-Za-z0-9_-]+\b|#\d{3,}\b"
)
_NUMBER = re.compile(
    r"(?:[$€£]\s?)?\b\d[\d,]*(?:\.\d+)?\s?(?:%|ms|s|GB|MB|KB|GiB|MiB|tokens|USD|EUR|days?|hours?|minutes?|kg|km)?(?![\w.])"
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_PREFERENCE = re.compile(
    r"\b(i (?:prefer|like|want|need|always|never|don't|do not|hate)|please (?:always|never|don't|use|keep)|"
    r"(?:always|never) (?:use|write|answer|reply)|call me|my name is)\b",
    re.I,
)
_DECISION = re.compile(
    r"\b(decided|decision|we(?:'ll| will) (?:go|use)|let's (?:use|go)|agreed|chose|chosen|settled on|going with)\b",
    re.I,
)
_TASK = re.compile(
    r"\b(todo|to do|next step|still need|need to|remaining|follow up|i(?:'ll| will)|we(?:'ll| will)|"
    r"remind me|pending|open question)\b",
    re.I,
)
_REASON = re.compile(r"\b(?:because|since|so that)\b", re.I)
_STOP_NAMES = frozenset(
    {
        "I",
        "The",
        "A",
        "An",
        "And",
        "But",
        "Or",
        "If",
        "When",
        "What",
        "Why",
        "How",
        "Who",
        "Where",
        "Which",
        "This",
        "That",
        "These",
        "Those",
        "It",
        "Yes",
        "No",
        "Ok",
        "Okay",
        "Thanks",
        "Thank",
        "Please",
        "Hi",
        "Hello",
        "Sure",
        "Great",
        "Sorry",
        "Also",
        "Then",
        "So",
        "We",
        "You",
        "He",
        "She",
        "They",
        "My",
        "Our",
        "Your",
        "Their",
        "Let",
        "Can",
        "Could",
        "Would",
        "Should",
        "Will",
        "Do",
        "Does",
        "Did",
        "Is",
        "Are",
        "Was",
        "Were",
    }
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """A decision taken in the conversation and the reason given for it."""

    what: str
    """The decision, in the words used."""
    why: str = ""
    """The reason, when one was given."""
    turn: int = 0
    """The unit it was taken in."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Snippet:
    """A verbatim must-keep piece: code, a number or an identifier."""

    text: str
    """The exact text (checked present in the rendered prompt)."""
    kind: SnippetKind
    """``code``, ``number`` or ``id``."""
    turn: int = 0
    """The unit it comes from."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CloneArtifact:
    """A dense, versioned, JSON-serialisable handoff of a conversation.

    Render it with :meth:`render` as the system prompt of a new conversation; :meth:`to_json` and
    :meth:`from_json` round-trip it exactly.

    Example:
        >>> a = CloneArtifact(intent="Migrate the billing service to Postgres 16.",
        ...                   snippets=(Snippet(text="max_connections = 200", kind="code"),))
        >>> CloneArtifact.from_json(a.to_json()) == a
        True
        >>> "max_connections = 200" in a.render()
        True
    """

    intent: str
    """What the user is trying to get done."""
    preferences: tuple[str, ...] = ()
    """User preferences and style, in the user's words."""
    decisions: tuple[Decision, ...] = ()
    """Decisions taken, with reasons."""
    facts: tuple[str, ...] = ()
    """Facts established (from the summariser)."""
    entities: tuple[str, ...] = ()
    """Names that recur: people, products, places."""
    artifacts: tuple[str, ...] = ()
    """Files, paths and URLs mentioned."""
    open_tasks: tuple[str, ...] = ()
    """What is still to be done."""
    snippets: tuple[Snippet, ...] = ()
    """Verbatim must-keep pieces: code, numbers, identifiers."""
    source: Mapping[str, Any] = field(default_factory=dict)
    """Where it came from: session, units, tokens of the original, when it was built."""
    format: str = CLONE_FORMAT
    """The artifact format (``windowkeeper.clone/1``)."""

    def __post_init__(self) -> None:
        if self.format != CLONE_FORMAT:
            raise InvalidConfigError(
                f"format must be {CLONE_FORMAT!r} (this windowkeeper reads only that); got {self.format!r}"
            )
        if not isinstance(self.intent, str):
            raise InvalidConfigError(f"intent must be a str; got {type(self.intent).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        data = asdict(self)
        data["source"] = dict(self.source)
        return data

    def to_json(self) -> str:
        """The artifact as JSON text."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CloneArtifact:
        """Read an artifact written by :meth:`to_dict`.

        Raises:
            InvalidConfigError: Another format version, or a malformed field.
        """
        if not isinstance(data, Mapping):
            raise InvalidConfigError(f"data must be a JSON object; got {type(data).__name__}")
        try:
            return cls(
                format=data.get("format", ""),
                intent=data["intent"],
                preferences=tuple(data.get("preferences", ())),
                decisions=tuple(Decision(**d) for d in data.get("decisions", ())),
                facts=tuple(data.get("facts", ())),
                entities=tuple(data.get("entities", ())),
                artifacts=tuple(data.get("artifacts", ())),
                open_tasks=tuple(data.get("open_tasks", ())),
                snippets=tuple(Snippet(**s) for s in data.get("snippets", ())),
                source=dict(data.get("source", {})),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidConfigError(f"data is not a {CLONE_FORMAT} artifact: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> CloneArtifact:
        """Read an artifact from JSON text."""
        return cls.from_dict(json.loads(text))

    def render(self) -> str:
        """The artifact as a system prompt for a new conversation."""
        out = [
            "You are continuing an earlier conversation with this user. What it established:",
            f"\n## Intent\n{self.intent}",
        ]

        def section(title: str, items: Sequence[str]) -> None:
            if items:
                out.append(f"\n## {title}\n" + "\n".join(f"- {i}" for i in items))

        section("User preferences", self.preferences)
        section(
            "Decisions",
            [f"{d.what}" + (f" (because {d.why})" if d.why else "") for d in self.decisions],
        )
        section("Facts", self.facts)
        section("Open tasks", self.open_tasks)
        section("Files and links", self.artifacts)
        section("Names", self.entities)
        if self.snippets:
            body = "\n".join(
                s.text if s.kind == "code" and s.text.startswith("```") else f"- {s.text}"
                for s in self.snippets
            )
            out.append(f"\n## Keep verbatim\n{body}")
        return "\n".join(out)

    def message(self) -> Message:
        """The rendered artifact as a system message."""
        return Message(role="system", content=self.render(), metadata={"windowkeeper": "clone"})

    def missing_snippets(self) -> list[Snippet]:
        """Snippets not present verbatim in :meth:`render` (empty for a sound artifact)."""
        text = self.render()
        return [s for s in self.snippets if s.text not in text]


def clone_conversation(
    conversation: Sequence[Message | Mapping[str, Any]] | Sequence[Unit],
    *,
    counter: TokenCounter,
    max_tokens: int = 1_500,
    summarizer: Summarizer | None = None,
    summary: str | None = None,
    session_id: str | None = None,
) -> CloneArtifact:
    """Build a :class:`CloneArtifact` of at most ``max_tokens`` (rendered) from a conversation.

    Artifacts, snippets, preferences, decisions and open tasks are extracted verbatim by rules (no
    model can paraphrase a number away); facts come from the summariser (previous summary ``""``,
    all units), fact notes when none is given. When everything does not fit,
    the least important items go first: entities, then sentences kept for their numbers (oldest
    first), facts, artifacts, open tasks, preferences, decisions, identifier snippets and last
    code; intent is always kept.

    Args:
        conversation: Messages or OpenAI chat dicts (a leading system prompt is ignored), or
            units. It may open with assistant messages.
        counter: Counts the rendered artifact exactly.
        max_tokens: Budget for the rendered artifact.
        summarizer: ``(previous, units) -> text``; ``None`` uses
            :class:`~windowkeeper.memory.FactNotes` (extractive, milliseconds).
        summary: An existing summary of the conversation (e.g. a memory's committed rolling
            summary) to take the facts from instead of calling the summariser.
        session_id: Recorded in ``source``.

    Raises:
        BudgetExceededError: The intent alone does not fit ``max_tokens``.
        InvalidConfigError: ``max_tokens`` is not a positive int; the conversation has no turn.
    """
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        raise InvalidConfigError(f"max_tokens must be a positive int; got {max_tokens!r}")
    units = _as_units(conversation)
    if not units:
        raise InvalidConfigError(
            "conversation must hold at least one message after its system prompt; got none"
        )
    if summary is None and summarizer is None:
        summarizer = FactNotes(counter=counter)
    user_texts = [
        (u.index, m.text) for u in units for m in u.messages if m.role == "user" and m.text
    ]
    all_texts = [
        (u.index, m.text)
        for u in units
        for m in u.messages
        if m.role in ("user", "assistant") and m.text
    ]
    intent = _first_sentences(user_texts[0][1] if user_texts else render_unit(units[0]), 400)
    if summary is None:
        assert summarizer is not None
        summary = _run(summarizer("", units))
    facts = tuple(
        dict.fromkeys(s.strip(" -*•") for s in _SENTENCE.split(summary) if len(s.strip(" -*•")) > 3)
    )
    artifact = CloneArtifact(
        intent=intent,
        preferences=_sentences(user_texts, _PREFERENCE),
        decisions=_decisions(all_texts),
        facts=facts,
        entities=_entities(all_texts),
        artifacts=tuple(
            dict.fromkeys(
                a.rstrip(".,;:")
                for _, t in all_texts
                for a in [*_URL.findall(t), *_PATH.findall(t)]
            )
        ),
        open_tasks=_sentences(all_texts[-8:], _TASK),
        snippets=_snippets(all_texts),
        source={
            "session_id": session_id,
            "units": len(units),
            "tokens": sum(counter.count_message(m) for u in units for m in u.messages),
            "created_at": time.time(),
        },
    )
    return _fit(artifact, counter, max_tokens)


def _fit(artifact: CloneArtifact, counter: TokenCounter, max_tokens: int) -> CloneArtifact:
    def cost(a: CloneArtifact) -> int:
        return counter.count(a.render())

    minimal = CloneArtifact(intent=artifact.intent, source=artifact.source)
    if cost(minimal) > max_tokens:
        raise BudgetExceededError(
            required=cost(minimal),
            limit=max_tokens,
            zone="system",
            detail="the clone's intent alone",
        )
    steps: list[tuple[str, SnippetKind | None]] = [
        ("entities", None),
        ("snippets", "number"),
        ("facts", None),
        ("artifacts", None),
        ("open_tasks", None),
        ("preferences", None),
        ("decisions", None),
        ("snippets", "id"),
        ("snippets", "code"),
    ]
    for name, kind in steps:
        while cost(artifact) > max_tokens:
            items = list(getattr(artifact, name))
            if kind is None:
                if not items:
                    break
                items.pop()  # lists are in order of appearance: the last is the least central
            else:
                # snippets of this kind go oldest first
                at = next((i for i, sn in enumerate(items) if sn.kind == kind), None)
                if at is None:
                    break
                items.pop(at)
            artifact = replace(artifact, **{name: tuple(items)})  # type: ignore[arg-type]
        if cost(artifact) <= max_tokens:
            break
    missing = artifact.missing_snippets()
    if missing:  # pragma: no cover - render() writes every snippet verbatim
        raise InvalidConfigError(f"snippets missing from the rendered clone: {missing!r}")
    return artifact


def _as_units(conversation: Sequence[Message | Mapping[str, Any]] | Sequence[Unit]) -> list[Unit]:
    items = list(conversation)
    if items and all(isinstance(i, Unit) for i in items):
        return [i for i in items if isinstance(i, Unit)]
    if any(isinstance(i, Unit) for i in items):
        raise InvalidConfigError(
            "conversation must be a list of messages (Message or OpenAI chat dicts) or a list "
            "of Unit, not both"
        )
    messages = as_messages(cast("list[Message | Mapping[str, Any]]", items), param="conversation")
    _, rest = split_system(messages)
    return group_units(rest)


def _run(result: str | Any) -> str:
    if inspect.isawaitable(result):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            result = asyncio.run(_await(result))
        else:
            raise InvalidConfigError(
                "summarizer returned an awaitable inside a running event loop; clone_conversation is "
                "synchronous: call it from a worker thread (asyncio.to_thread) or pass a sync summarizer"
            )
    if not isinstance(result, str):
        raise InvalidConfigError(f"summarizer must return a str; got {type(result).__name__}")
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _first_sentences(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[: end + 1] if end > limit // 3 else cut.rstrip() + "…"


def _sentences(texts: Sequence[tuple[int, str]], pattern: re.Pattern[str]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for _, text in texts:
        for s in _SENTENCE.split(text):
            s = s.strip()
            if 3 < len(s) <= 300 and pattern.search(s) and not s.startswith("```"):
                found[s] = None
    return tuple(found)


def _decisions(texts: Sequence[tuple[int, str]]) -> tuple[Decision, ...]:
    out: dict[str, Decision] = {}
    for turn, text in texts:
        for s in _SENTENCE.split(text):
            s = s.strip()
            if 3 < len(s) <= 300 and _DECISION.search(s):
                parts = _REASON.split(s, maxsplit=1)
                what, why = (
                    (parts[0].strip(" ,"), parts[1].strip(" .")) if len(parts) == 2 else (s, "")
                )
                out.setdefault(what, Decision(what=what, why=why, turn=turn))
    return tuple(out.values())


def _entities(texts: Sequence[tuple[int, str]]) -> tuple[str, ...]:
    counts: Counter[str] = Counter()
    for _, text in texts:
        for word in re.findall(r"\b[A-Z][a-zA-Z]{2,}(?:\s[A-Z][a-zA-Z]{2,})*\b", text):
            if word.split()[0] not in _STOP_NAMES:
                counts[word] += 1
    return tuple(w for w, n in counts.most_common(20) if n >= 2)


def _snippets(texts: Sequence[tuple[int, str]]) -> tuple[Snippet, ...]:
    """Code spans verbatim; each sentence holding an identifier or a number, verbatim (with context)."""
    out: dict[str, Snippet] = {}
    for turn, text in texts:
        for code in _CODE.findall(text):
            out.setdefault(code, Snippet(text=code, kind="code", turn=turn))
        for sentence in _SENTENCE.split(_CODE.sub("\n", text)):
            sentence = sentence.strip()
            if not sentence:
                continue
            kind: SnippetKind | None = None
            if _ID.search(sentence):
                kind = "id"
            elif any(sum(ch.isdigit() for ch in n) >= 2 for n in _NUMBER.findall(sentence)):
                kind = "number"
            if kind is not None:
                piece = sentence if len(sentence) <= 240 else _around_digits(sentence)
                out.setdefault(piece, Snippet(text=piece, kind=kind, turn=turn))
    return tuple(out.values())


def _around_digits(sentence: str) -> str:
    """A verbatim window of about 200 characters around the first digit of a long sentence."""
    first = next(i for i, ch in enumerate(sentence) if ch.isdigit())
    start = sentence.rfind(" ", 0, max(first - 80, 0)) + 1
    end = sentence.find(" ", min(first + 120, len(sentence)))
    return sentence[start : end if end != -1 else len(sentence)].strip()
