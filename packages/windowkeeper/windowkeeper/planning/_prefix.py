"""Prompt-cache check (stable prefix) and prompt-creep audit (system and tool growth over time)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from windowkeeper._messages import Message
from windowkeeper.exceptions import InvalidConfigError, PrefixCacheWarning
from windowkeeper.tokens._counter import TokenCounter

__all__ = [
    "PrefixCheck",
    "PrefixVerdict",
    "PromptCreepLog",
    "PromptCreepReport",
    "prefix_fingerprint",
]


def prefix_fingerprint(system: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None) -> str:
    """sha256 over the exact bytes of the system messages and tool schemas, as they are sent."""
    payload = {
        "system": [m.to_openai() for m in system],
        "tools": list(tools or ()),
    }
    data = json.dumps(payload, ensure_ascii=False, sort_keys=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class PrefixVerdict:
    """Whether a request's stable prefix can be served from the provider's prompt cache."""

    fingerprint: str
    """sha256 of the prefix bytes."""
    tokens: int
    """Tokens of the prefix (system messages + tool schemas)."""
    min_tokens: int
    """The provider's minimum cacheable prefix."""
    changed: bool
    """True when the prefix differs from the previous request's."""
    problems: tuple[str, ...]
    """Why the prefix will not be cached; empty when it will."""

    @property
    def cacheable(self) -> bool:
        """True when the prefix is long enough and stable."""
        return not self.problems


class PrefixCheck:
    """Checks each request's stable prefix (system + tools) for prompt caching.

    Warns with :class:`PrefixCacheWarning` when the prefix is shorter than the provider's minimum
    (1,024 tokens for OpenAI and Anthropic) or changed since the previous request.

    Example:
        >>> check = PrefixCheck(TokenCounter("gpt-4o"), warn=False)
        >>> check.check([Message(role="system", content="Be brief.")]).cacheable
        False
    """

    def __init__(self, counter: TokenCounter, *, warn: bool = True) -> None:
        self._counter = counter
        self._warn = warn
        self._last: str | None = None
        self._lock = threading.Lock()

    def check(
        self, system: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> PrefixVerdict:
        """Fingerprint and size the prefix; compare with the previous call."""
        fingerprint = prefix_fingerprint(system, tools)
        zones = self._counter.count_zones_of(list(system), tools=tools)
        tokens = zones["system"] + zones["tools"]
        minimum = self._counter.profile.prompt_cache_min_tokens
        with self._lock:
            changed = self._last is not None and self._last != fingerprint
            self._last = fingerprint
        problems = []
        if tokens < minimum:
            problems.append(
                f"prefix is {tokens} tokens; the provider caches prefixes of {minimum}+"
            )
        if changed:
            problems.append("prefix changed since the previous request: the cache starts over")
        if problems and self._warn:
            warnings.warn("; ".join(problems), PrefixCacheWarning, stacklevel=2)
        return PrefixVerdict(
            fingerprint=fingerprint,
            tokens=tokens,
            min_tokens=minimum,
            changed=changed,
            problems=tuple(problems),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class PromptCreepReport:
    """Growth of the system prompt and tool schemas over the log."""

    entries: int
    """Entries in the log."""
    first: Mapping[str, Any] | None
    """The first entry."""
    last: Mapping[str, Any] | None
    """The latest entry."""
    system_growth: int
    """Tokens the system prompt grew by, first to last."""
    tools_growth: int
    """Tokens the tool schemas grew by, first to last."""
    growth_ratio: float
    """Last prefix ÷ first prefix (1.0 = no growth)."""
    versions: int
    """Distinct prefix fingerprints seen."""


class PromptCreepLog:
    """An append-only JSON-lines log of system-prompt and tool-schema sizes over time.

    Each line: ``{"time", "label", "system_tokens", "tools_tokens", "tool_count", "fingerprint"}``.
    A line is written whole with one ``write`` call, so a crash never leaves a half entry that
    hides earlier ones (a torn last line is skipped when reading).

    Example:
        >>> import tempfile, os
        >>> log = PromptCreepLog(os.path.join(tempfile.mkdtemp(), "creep.jsonl"), TokenCounter("gpt-4o"))
        >>> _ = log.record([Message(role="system", content="Be brief.")], label="v1")
        >>> log.report().entries
        1
    """

    def __init__(self, path: str | Path, counter: TokenCounter) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise InvalidConfigError(f"path must be a file path; got a directory {str(path)!r}")
        self._counter = counter
        self._lock = threading.Lock()

    def record(
        self,
        system: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        label: str | None = None,
        timestamp: float | None = None,
    ) -> dict[str, Any]:
        """Append the current sizes; returns the entry written."""
        zones = self._counter.count_zones_of(list(system), tools=tools)
        entry = {
            "time": time.time() if timestamp is None else timestamp,
            "label": label,
            "system_tokens": zones["system"],
            "tools_tokens": zones["tools"],
            "tool_count": len(tools or ()),
            "fingerprint": prefix_fingerprint(system, tools),
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every complete entry, oldest first."""
        if not self.path.exists():
            return []
        out = []
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn last line from a crash
        return out

    def report(self) -> PromptCreepReport:
        """Growth from the first entry to the last."""
        rows = self.entries()
        if not rows:
            return PromptCreepReport(
                entries=0,
                first=None,
                last=None,
                system_growth=0,
                tools_growth=0,
                growth_ratio=1.0,
                versions=0,
            )
        first, last = rows[0], rows[-1]
        before = first["system_tokens"] + first["tools_tokens"]
        after = last["system_tokens"] + last["tools_tokens"]
        return PromptCreepReport(
            entries=len(rows),
            first=first,
            last=last,
            system_growth=last["system_tokens"] - first["system_tokens"],
            tools_growth=last["tools_tokens"] - first["tools_tokens"],
            growth_ratio=after / before if before else 1.0,
            versions=len({r["fingerprint"] for r in rows}),
        )
