"""What every memory shares: the view it returns, its rendering, and the store-backed base class."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

from windowkeeper._budget import Dropped
from windowkeeper._messages import Message, validate_tool_pairs
from windowkeeper._spans import find_spans
from windowkeeper._units import Unit, group_units
from windowkeeper.exceptions import InvalidConfigError, InvalidMessageError
from windowkeeper.stores._base import DEFAULT_SESSION, ConversationStore, StateStore
from windowkeeper.stores._memory import MemoryStore
from windowkeeper.tokens._counter import TokenCounter

__all__ = [
    "Memory",
    "MemoryView",
    "StoredMemory",
    "Summarizer",
    "recalled_body",
    "recalled_line",
    "recalled_message",
    "render_unit",
    "stamp_line",
    "summary_message",
]

Summarizer: TypeAlias = Callable[[str, Sequence[Unit]], "str | Awaitable[str]"]
"""``(previous summary, new units) -> new summary``, sync or async."""

TOOL_RESULT_CHARS = 200
"""Characters of a tool result kept when a unit is rendered as text (recall, summaries)."""

INDEX_TOOL_RESULT_CHARS = 4_000
"""Characters of a tool result a recall index reads (its words are findable far past the shown
abbreviation)."""

MAX_KEPT_FACTS = 12
"""Identifiers, numbers, dates, emails and URLs an abbreviated tool result still shows."""

FACT_KINDS = frozenset({"url", "email", "uuid", "path", "date or time", "number", "id"})
"""The protected-span kinds an abbreviated tool result keeps (no code or JSON: they are long)."""

COST_BATCH = 256
"""Units a worker counts between two takes of the memory's lock (``StoredMemory.prepare_costs``)."""


def render_unit(unit: Unit, *, tool_result_chars: int = TOOL_RESULT_CHARS) -> str:
    """A unit as plain text: one ``speaker: text`` line per message, tool results abbreviated.

    User and assistant text is verbatim; a tool call is ``called name(arguments)``; a tool result
    longer than ``tool_result_chars`` is cut and says how much was left out. Retrieved chunks are
    not part of the conversation and are left out.

    Example:
        >>> u = Unit(index=0, messages=(Message(role="user", content="hi", name="Ann"),
        ...                             Message(role="assistant", content="hello")))
        >>> print(render_unit(u))
        Ann: hi
        assistant: hello
    """
    lines: list[str] = []
    for m in unit.messages:
        if m.zone_hint == "rag":
            continue
        speaker = m.name or m.role
        if m.role == "tool" or m.role == "function":
            text = m.text
            if len(text) > tool_result_chars:
                facts = kept_facts(text[tool_result_chars:], exclude=text[:tool_result_chars])
                more = f"{len(text) - tool_result_chars} more chars"
                if facts:
                    more += f"; facts in them: {', '.join(facts)}"
                text = f"{text[:tool_result_chars]}… [{more}]"
            lines.append(f"tool result: {text}")
            continue
        if m.text:
            lines.append(f"{speaker}: {m.text}")
        for call in m.tool_calls:
            lines.append(f"{speaker} called {call.name}({call.arguments})")
    return "\n".join(lines)


def kept_facts(text: str, *, exclude: str = "", limit: int = MAX_KEPT_FACTS) -> list[str]:
    """The identifiers, numbers, dates, emails, URLs and paths in ``text``, verbatim, in order.

    What an abbreviated tool result keeps from the part it leaves out, so a booking code or a
    tracking number recalled with its turn is still there to read. They are the protected spans
    a compressor keeps (:func:`windowkeeper._spans.find_spans`; not code or JSON, which would
    bring the cut text back and hide the facts inside them). Facts already in ``exclude`` (the
    part shown) are not repeated.

    Example:
        >>> kept_facts("Booked. Code BK-77312, pick-up 2025-03-17 at 09:30, see https://x.io/b/7.")
        ['BK-77312', '2025-03-17', '09:30', 'https://x.io/b/7']
    """
    out: list[str] = []
    for span in find_spans(text, kinds=FACT_KINDS):
        fact = span.text.strip()
        if len(fact) < 2 or fact in out or fact in exclude:
            continue
        out.append(fact)
        if len(out) >= limit:
            break
    return out


def summary_message(text: str, *, covers: int) -> Message:
    """The summary as a labelled data block (a system-role message counted in the history zone)."""
    return Message(
        role="system",
        content=(
            f'<conversation_summary turns="0-{covers - 1}">\n{text}\n</conversation_summary>'
            if covers
            else f"<conversation_summary>\n{text}\n</conversation_summary>"
        ),
        metadata={"zone": "history", "windowkeeper": "summary"},
    )


RECALLED_OPEN = "<recalled_turns>\n"
RECALLED_CLOSE = "</recalled_turns>"


def recalled_line(unit: Unit) -> str:
    """A unit's line in the recalled block: ``#index`` and its rendering, newline included."""
    return f"#{unit.index} {render_unit(unit)}\n"


def stamp_line(stamp: str | None) -> str:
    """The line that opens a run of recalled units with the same timestamp."""
    return f"[{stamp}]\n" if stamp else "[time unknown]\n"


def recalled_body(units: Sequence[Unit], lines: Sequence[str] | None = None) -> str:
    """The recalled block's text for ``units`` (``lines``: their :func:`recalled_line`, if known)."""
    parts = [RECALLED_OPEN]
    stamp: str | None = None
    for i, u in enumerate(units):
        if u.timestamp != stamp:
            parts.append(stamp_line(u.timestamp))
            stamp = u.timestamp
        parts.append(lines[i] if lines is not None else recalled_line(u))
    parts.append(RECALLED_CLOSE)
    return "".join(parts)


def recalled_message(units: Sequence[Unit] | str) -> Message:
    """Recalled older units as one labelled data block, in the order given.

    Compact: each unit opens with its turn number (``#12 Ann: ...``), and a ``[timestamp]`` line
    comes only where the timestamp changes from the unit before (``[time unknown]`` where a unit
    without one follows one with one), so a session's date is paid once, not per turn. Every line
    ends with a newline and starts with ``#`` or ``[``, so with OpenAI's encodings a line's tokens
    never merge with the next line's: the block costs its frame plus the sum of its lines.
    ``units`` may also be the block's text as :func:`recalled_body` built it.

    Example:
        >>> units = [Unit(index=i, timestamp="8 May 2023", messages=(Message(role="user", content=t, name="Ann"),))
        ...          for i, t in [(3, "I adopted a cat"), (4, "Her name is Pixel")]]
        >>> print(recalled_message(units).text)
        <recalled_turns>
        [8 May 2023]
        #3 Ann: I adopted a cat
        #4 Ann: Her name is Pixel
        </recalled_turns>
    """
    text = units if isinstance(units, str) else recalled_body(units)
    return Message(
        role="system",
        content=text,
        metadata={"zone": "history", "windowkeeper": "recalled"},
    )


def fit_newest(costs: Sequence[int], budget: int) -> int:
    """Where the newest contiguous run of items whose costs fit ``budget`` starts.

    Example:
        >>> fit_newest([5, 3, 4], 7)  # the last two (3 + 4) fit, the first does not
        1
    """
    cut = len(costs)
    used = 0
    while cut > 0 and used + costs[cut - 1] <= budget:
        cut -= 1
        used += costs[cut]
    return cut


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryView:
    """What a memory shows the model this turn (before the retrieved chunks and the user message).

    Example:
        >>> u = Unit(index=0, messages=(Message(role="user", content="hi"),))
        >>> [m.role for m in MemoryView(recent=(u,), summary="Ann likes tea.").messages()]
        ['system', 'user']
    """

    recent: tuple[Unit, ...] = ()
    """Newest units, verbatim, oldest first."""
    summary: str = ""
    """The rendered rolling summary ('' when there is none)."""
    summary_covers: int = 0
    """Units ``[0, summary_covers)`` are in the summary."""
    recalled: tuple[Unit, ...] = ()
    """Older units recalled for this query, rendered as one data block."""
    recalled_text: str = ""
    """The recalled block's text as the memory rendered and counted it ('' renders it from
    ``recalled``)."""
    dropped: tuple[Dropped, ...] = ()
    """Units neither shown verbatim, recalled nor yet covered by a committed summary."""
    tokens: int = 0
    """Exact tokens :meth:`messages` add to a request (the memory's counter)."""

    def messages(self) -> list[Message]:
        """Summary block, recalled block, then the recent units' messages."""
        out: list[Message] = []
        if self.summary:
            out.append(summary_message(self.summary, covers=self.summary_covers))
        if self.recalled:
            out.append(recalled_message(self.recalled_text or self.recalled))
        out.extend(m for u in self.recent for m in u.messages)
        return out


@runtime_checkable
class Memory(Protocol):
    """A conversation memory: stores finished turns and shows a budgeted view of them."""

    session_id: str

    def __len__(self) -> int:
        """Units stored for the session."""
        ...

    def add(self, messages: Sequence[Message | Mapping[str, Any]] | Unit) -> Unit:
        """Store one finished turn (the user message and everything that answered it)."""
        ...

    def view(self, query: str = "", *, budget: int) -> MemoryView:
        """The history to show for ``query`` in at most ``budget`` tokens."""
        ...


class StoredMemory:
    """Base class: a session in a store, with an in-process mirror of its units and their costs.

    Units are read from the store once, then kept in the process, so a turn costs the same at 100
    or 10,000 units of history. Subclasses override :meth:`_on_add` to index or schedule work.
    """

    def __init__(
        self,
        counter: TokenCounter,
        *,
        store: ConversationStore | None = None,
        session_id: str = DEFAULT_SESSION,
    ) -> None:
        if not isinstance(counter, TokenCounter):
            raise InvalidConfigError(
                f"counter must be a TokenCounter; got {type(counter).__name__}"
            )
        if store is not None and not isinstance(store, ConversationStore):
            raise InvalidConfigError(
                f"store must implement ConversationStore (append, units, count, sessions); "
                f"got {type(store).__name__}"
            )
        if not isinstance(session_id, str) or not session_id:
            raise InvalidConfigError(f"session_id must be a non-empty str; got {session_id!r}")
        self.counter = counter
        self.store: ConversationStore = store if store is not None else MemoryStore()
        self.session_id = session_id
        self._lock = threading.RLock()
        self._units: list[Unit] = self.store.units(session_id)
        # a store other processes append to (PostgreSQL): re-read before each view, append at the
        # index the store assigns
        self._shared = getattr(self.store, "shared", False) is True
        append_next = getattr(self.store, "append_next", None) if self._shared else None
        self._append_next: Callable[[Unit], Unit] | None = (
            append_next if callable(append_next) else None
        )
        self._costs: list[int] = []
        self._cumulative: list[int] = [0]  # tokens of units [0, i)

    @property
    def state_store(self) -> StateStore | None:
        """The store, when it also keeps summaries and vectors."""
        return self.store if isinstance(self.store, StateStore) else None

    def __len__(self) -> int:
        return len(self._units)

    @property
    def units(self) -> list[Unit]:
        """Every stored unit of the session, oldest first (a copy)."""
        with self._lock:
            return list(self._units)

    @property
    def last_unit(self) -> Unit | None:
        """The newest stored unit, if any."""
        with self._lock:
            return self._units[-1] if self._units else None

    def unit_tokens(self, index: int) -> int:
        """Exact tokens unit ``index`` adds to a request when shown verbatim (cached)."""
        with self._lock:
            while len(self._costs) <= index:
                unit = self._units[len(self._costs)]
                self._costs.append(sum(self.counter.count_message(m) for m in unit.messages))
            return self._costs[index]

    def prepare_costs(self, n: int) -> None:
        """Count units ``[.., n)`` not counted yet, a batch at a time, outside the memory's lock.

        For a worker thread: a view needs every unit's count (its gap and dropped runs read
        prefix sums), and the first view after storing or loading a long history would otherwise
        count all of it. A view that comes first counts what it needs itself, with the same
        numbers.
        """
        while True:
            with self._lock:
                done = len(self._costs)
                units = self._units[done : min(n, done + COST_BATCH)]
            if not units:
                return
            counts = [sum(self.counter.count_message(m) for m in u.messages) for u in units]
            with self._lock:
                if len(self._costs) == done:  # else a view counted them meanwhile
                    self._costs.extend(counts)
                self.tokens_between(0, len(self._costs))  # the prefix sums, while here

    def tokens_between(self, start: int, stop: int) -> int:
        """Exact verbatim tokens of units ``[start, stop)`` (prefix sums, extended as needed)."""
        with self._lock:
            cumulative = self._cumulative
            while len(cumulative) <= stop:
                cumulative.append(cumulative[-1] + self.unit_tokens(len(cumulative) - 1))
            return cumulative[stop] - cumulative[start]

    def dropped_runs(self, shown: Iterable[int], *, reason: str) -> tuple[Dropped, ...]:
        """What a view leaves out: one entry per run of consecutive units not in ``shown``.

        Costs O(shown) per call (prefix sums, one pass), so a view stays cheap at any history
        length.
        """
        with self._lock:
            n = len(self._units)
            self.tokens_between(0, n)  # extends the prefix sums to every unit
            cumulative = self._cumulative
            out: list[Dropped] = []
            start = 0
            for stop in [*sorted(i for i in set(shown) if 0 <= i < n), n]:
                if stop > start:
                    tokens = cumulative[stop] - cumulative[start]
                    out.append(_dropped(start, stop, tokens, reason))
                start = stop + 1
            return tuple(out)

    def dropped_run(self, start: int, stop: int, *, reason: str) -> Dropped:
        """One entry for units ``[start, stop)`` left out of a view, with their exact tokens."""
        return _dropped(start, stop, self.tokens_between(start, stop), reason)

    def add(self, messages: Sequence[Message | Mapping[str, Any]] | Unit) -> Unit:
        """Store one finished turn as the session's next unit and return it.

        A turn is a user message and everything that answered it; what is said before the next
        user message (an assistant's greeting, a notice, a system note) is a unit too, without a
        user message. Messages may be :class:`Message` objects or OpenAI chat dicts.

        Raises:
            InvalidMessageError: ``messages`` is not one unit (several user turns: use
                :meth:`extend`), or a tool call has no result, or a result no call; the error
                names the position.
        """
        if isinstance(messages, Unit):
            validate_tool_pairs(messages.messages, finished=True)
            return self._append(messages)
        units = group_units(messages, session_id=self.session_id, finished=True)
        if len(units) != 1:
            raise InvalidMessageError(
                f"messages must be one turn (a user message and its replies, or what was said "
                f"before the next user message); got {len(units)} units: store a whole "
                "conversation with extend()"
            )
        return self._append(units[0])

    def extend(self, messages: Sequence[Message | Mapping[str, Any]]) -> list[Unit]:
        """Store a whole conversation (without its system prompt), unit by unit.

        The conversation is checked whole before anything is stored: a broken tool pair stores
        nothing. It may open with assistant messages and carry system messages anywhere.
        """
        units = group_units(messages, session_id=self.session_id, finished=True)
        return [self._append(u) for u in units]

    def _append(self, source: Unit) -> Unit:
        """Store ``source``'s messages, checked, as the session's next unit."""
        missed: list[Unit] = []
        with self._lock:
            unit = Unit(
                index=len(self._units),
                messages=source.messages,
                session_id=self.session_id,
                timestamp=source.timestamp,
            )
            if self._append_next is None:
                self.store.append(unit)
            else:  # the store gives the index: other processes may have appended meanwhile
                stored = self._append_next(unit)
                missed = self._read_from(len(self._units), stop=stored.index)
                unit = Unit(
                    index=stored.index,
                    messages=source.messages,
                    session_id=self.session_id,
                    timestamp=source.timestamp,
                )
            self._units.extend(missed)
            self._units.append(unit)
        for other in missed:
            self._on_add(other, elsewhere=True)
        self._on_add(unit)
        return unit

    def sync(self) -> list[Unit]:
        """Read the units other processes appended to this session; returns them.

        Only a store marked ``shared`` (:class:`~windowkeeper.stores.PostgresStore`) is re-read:
        for the others nothing else writes the session, and this costs nothing. Views call it
        first, so a request served by any app server sees the whole conversation.
        """
        if not self._shared:
            return []
        with self._lock:
            fresh = self._read_from(len(self._units))
            self._units.extend(fresh)
        for unit in fresh:
            self._on_add(unit, elsewhere=True)
        return fresh

    def _read_from(self, start: int, *, stop: int | None = None) -> list[Unit]:
        """Stored units ``[start, stop)`` of the session, checked to continue ours (no gap)."""
        if stop is not None and stop <= start:
            return []
        units = self.store.units(self.session_id, start, stop)
        for offset, unit in enumerate(units):
            if unit.index != start + offset:
                raise InvalidConfigError(
                    f"store returned unit {unit.index} of session {self.session_id!r} where "
                    f"{start + offset} was expected: units must be gap-free"
                )
        if stop is not None and len(units) != stop - start:
            raise InvalidConfigError(
                f"store returned {len(units)} units of session {self.session_id!r} for indexes "
                f"{start}-{stop - 1}: units must be gap-free"
            )
        return units

    def _on_add(self, unit: Unit, *, elsewhere: bool = False) -> None:
        """Called after a unit is stored (outside the lock).

        ``elsewhere``: another process stored it (read from a shared store).
        """

    def newest_fitting(
        self, budget: int, *, start: int = 0, stop: int | None = None
    ) -> tuple[list[Unit], int]:
        """The newest contiguous units of ``[start, stop)`` whose tokens fit ``budget``, and their cost."""
        with self._lock:
            end = len(self._units) if stop is None else stop
            cut = end
            used = 0
            while cut > start:
                cost = self.unit_tokens(cut - 1)
                if used + cost > budget:
                    break
                used += cost
                cut -= 1
            return self._units[cut:end], used


def older_dropped(units: Sequence[Unit], costs: Sequence[int], cut: int) -> list[Dropped]:
    """Units before ``cut`` as history drops (one entry each), for strategies over plain lists."""
    return [
        Dropped(
            zone="history",
            what=f"unit {u.index}",
            tokens=cost,
            reason="older than the newest units that fit the history budget",
        )
        for u, cost in zip(units[:cut], costs[:cut], strict=True)
    ]


def _dropped(start: int, stop: int, tokens: int, reason: str) -> Dropped:
    """The entry for units ``[start, stop)`` of ``tokens`` exact tokens left out of a view."""
    what = f"unit {start}" if stop - start == 1 else f"units {start}-{stop - 1}"
    return Dropped(zone="history", what=what, tokens=tokens, reason=reason)
