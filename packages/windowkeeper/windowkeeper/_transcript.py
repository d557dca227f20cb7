"""Transcripts: a conversation as the app sends it, and the per-turn audit of its context."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from windowkeeper._budget import Budget, BudgetReport
from windowkeeper._messages import Message, messages_from_openai, validate_tool_pairs
from windowkeeper._units import split_system
from windowkeeper.exceptions import InvalidMessageError
from windowkeeper.planning._creep import CreepProjection, fit_creep
from windowkeeper.planning._prefix import PrefixCheck, PrefixVerdict
from windowkeeper.tokens._chat import function_of
from windowkeeper.tokens._counter import TokenCounter

__all__ = [
    "Transcript",
    "TranscriptAudit",
    "TurnRow",
    "audit_transcript",
    "decode_utf8",
    "load_transcript",
    "parse_transcript",
]

FORMAT = "windowkeeper.transcript/1"


@dataclass(frozen=True, kw_only=True, slots=True)
class Transcript:
    """A conversation: OpenAI chat messages, the tool schemas sent with them and the model.

    Retrieved chunks are messages with ``"metadata": {"zone": "rag"}``.
    """

    messages: tuple[Message, ...]
    """Every message in order, as sent on the last request."""
    tools: tuple[Mapping[str, Any], ...] = ()
    """Tool schemas sent with every request."""
    model: str | None = None
    """The model the transcript was recorded with, if stated."""
    description: str = ""
    """Free text."""

    @classmethod
    def from_dict(cls, data: Any) -> Transcript:
        """Accept ``{"messages": [...], "tools": [...], "model": ...}`` or a bare list of messages.

        Raises:
            InvalidMessageError: Unknown roles, malformed messages, tool results without a call,
                calls without results; the error names the offending index.
        """
        if isinstance(data, list):
            data = {"messages": data}
        if not isinstance(data, Mapping):
            raise InvalidMessageError(
                f"a transcript is an object with 'messages' or a list of messages; got {type(data).__name__}"
            )
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise InvalidMessageError(f"format must be {FORMAT!r}; got {fmt!r}")
        raw = data.get("messages")
        if not isinstance(raw, list) or not raw:
            raise InvalidMessageError("'messages' must be a non-empty list of chat messages")
        messages = messages_from_openai(raw)
        validate_tool_pairs(messages)
        if not any(m.role == "user" for m in messages):
            raise InvalidMessageError("a transcript needs at least one user message")
        tools = data.get("tools") or []
        if not isinstance(tools, list):
            raise InvalidMessageError(f"'tools' must be a list; got {type(tools).__name__}")
        for i, tool in enumerate(tools):
            function_of(tool, i)
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise InvalidMessageError(f"'model' must be a string; got {model!r}")
        return cls(
            messages=tuple(messages),
            tools=tuple(tools),
            model=model,
            description=str(data.get("description", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (round-trips through :meth:`from_dict`)."""
        out: dict[str, Any] = {"format": FORMAT}
        if self.model:
            out["model"] = self.model
        if self.description:
            out["description"] = self.description
        out["tools"] = [dict(t) for t in self.tools]
        out["messages"] = [m.to_openai(include_metadata=True) for m in self.messages]
        return out

    def user_indices(self) -> list[int]:
        """Index of every user message that is not a retrieved chunk: one per turn."""
        return [i for i, m in enumerate(self.messages) if m.role == "user" and m.zone_hint != "rag"]


def load_transcript(source: str | Path | Sequence[Any] | Mapping[str, Any]) -> Transcript:
    """Load a transcript from a JSON file path, ``-`` is not accepted here; or from parsed JSON.

    Raises:
        InvalidMessageError: The file is not UTF-8 text, not JSON or not a valid transcript; the
            message names the file.
        FileNotFoundError: The path does not exist.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = repr(str(path))
        return parse_transcript(decode_utf8(path.read_bytes(), name), name)
    return Transcript.from_dict(source)


def decode_utf8(data: bytes, source: str) -> str:
    r"""The UTF-8 text of ``data``; ``source`` names where it came from in the error.

    Args:
        data: The bytes read.
        source: How the messages name them, e.g. ``"'chat.json'"`` or ``"standard input"``.

    Raises:
        InvalidMessageError: ``data`` is not UTF-8; the message names ``source`` and the offset and
            value of the first bad byte.

    Example:
        >>> decode_utf8(b"caf\xe9", "'menu.txt'")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        windowkeeper.exceptions.InvalidMessageError: 'menu.txt' is not UTF-8 text (byte 0xe9 at offset 3); ...
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessageError(
            f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "windowkeeper reads UTF-8 text and JSON files only"
        ) from exc


def parse_transcript(text: str, source: str) -> Transcript:
    """A transcript from the JSON ``text`` read from ``source`` (named in the errors).

    Raises:
        InvalidMessageError: ``text`` is not JSON or not a valid transcript.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessageError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    return Transcript.from_dict(data)


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnRow:
    """The request sent at one turn."""

    turn: int
    """1-based turn number."""
    report: BudgetReport
    """Where its tokens went."""
    reply_tokens: int
    """Tokens of everything that answered the turn (assistant messages, tool calls and results)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TranscriptAudit:
    """Per-turn accounting of a transcript, and what it says about the future."""

    model: str
    """Model profile used."""
    turns: tuple[TurnRow, ...]
    """One row per user turn."""
    projection: CreepProjection | None
    """Creep line fitted to the observed prompt sizes (``None`` with fewer than 2 turns)."""
    turns_until_alert: int | None
    """Projected turn at which utilization reaches the alert threshold."""
    turns_until_act: int | None
    """... the act threshold."""
    turns_until_full: int | None
    """... the prompt limit (window minus reserve)."""
    cost_per_call: float | None
    """USD of the last request plus an average reply, if the profile has prices."""
    cost_total: float | None
    """USD of all the requests of the transcript."""
    prefix: PrefixVerdict
    """Prompt-cache verdict for the system + tools prefix."""
    exact: bool
    """Whether the counts are exact for this model."""
    error_band: float = field(default=0.0)
    """Relative error band of the counts."""

    @property
    def last(self) -> BudgetReport:
        """The report of the last request."""
        return self.turns[-1].report

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (``--json`` output)."""
        p = self.projection
        return {
            "model": self.model,
            "exact": self.exact,
            "error_band": self.error_band,
            "last": self.last.to_dict(),
            "turns": [
                {"turn": r.turn, "reply_tokens": r.reply_tokens, **r.report.to_dict()}
                for r in self.turns
            ],
            "projection": None
            if p is None
            else {
                "fixed": round(p.fixed, 1),
                "per_turn": round(p.per_turn, 1),
                "turns_until_alert": self.turns_until_alert,
                "turns_until_act": self.turns_until_act,
                "turns_until_full": self.turns_until_full,
            },
            "cost_per_call_usd": _round(self.cost_per_call),
            "cost_total_usd": _round(self.cost_total),
            "prefix_cache": {
                "cacheable": self.prefix.cacheable,
                "tokens": self.prefix.tokens,
                "min_tokens": self.prefix.min_tokens,
                "fingerprint": self.prefix.fingerprint,
                "problems": list(self.prefix.problems),
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def audit_transcript(
    transcript: Transcript, counter: TokenCounter, budget: Budget
) -> TranscriptAudit:
    """Replay a transcript turn by turn: each turn's request is every message up to its user message.

    Example:
        >>> t = Transcript.from_dict([{"role": "system", "content": "Be brief."},
        ...                           {"role": "user", "content": "hi"}])
        >>> audit_transcript(t, TokenCounter("gpt-4o"), Budget.for_model("gpt-4o")).last.level
        'ok'
    """
    messages = transcript.messages
    tools = list(transcript.tools) or None
    starts = transcript.user_indices()
    rows = []
    for turn, start in enumerate(starts, 1):
        request = list(messages[: start + 1])
        zones = counter.count_zones_of(request, tools=tools)
        end = starts[turn] if turn < len(starts) else len(messages)
        answer = [m for m in messages[start + 1 : end] if m.zone_hint != "rag"]
        reply = sum(counter.count_message(m) for m in answer)
        rows.append(TurnRow(turn=turn, report=budget.report(zones), reply_tokens=reply))
    prompts = [r.report.prompt_tokens for r in rows]
    projection = (
        fit_creep(prompts, context_window=budget.context_window) if len(prompts) >= 2 else None
    )

    def until(threshold: float) -> int | None:
        return projection.turns_until(threshold) if projection else None

    profile = counter.profile
    replies = [r.reply_tokens for r in rows if r.reply_tokens]
    avg_reply = round(statistics.fmean(replies)) if replies else 0
    cost_last = profile.cost(prompts[-1], avg_reply)
    costs = [profile.cost(p, r.reply_tokens) for p, r in zip(prompts, rows, strict=True)]
    leading, _ = split_system(messages)
    prefix = PrefixCheck(counter, warn=False).check(leading, tools)
    return TranscriptAudit(
        model=profile.name,
        turns=tuple(rows),
        projection=projection,
        turns_until_alert=until(budget.alert_threshold),
        turns_until_act=until(budget.act_threshold),
        turns_until_full=until(budget.prompt_limit / budget.context_window),
        cost_per_call=cost_last,
        cost_total=None
        if any(c is None for c in costs)
        else sum(c for c in costs if c is not None),
        prefix=prefix,
        exact=counter.exact,
        error_band=counter.error_band,
    )
