"""The store protocol: append-only units per session."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError

__all__ = ["DEFAULT_SESSION", "ConversationStore", "StateStore", "SummaryRecord", "check_append"]

DEFAULT_SESSION = "default"
"""The session a unit without a session id is stored under."""


@runtime_checkable
class ConversationStore(Protocol):
    """Append-only storage of units, per session. Framework adapters implement this too."""

    def append(self, unit: Unit) -> None:
        """Store the next unit of its session; ``unit.index`` must equal the session's count."""
        ...

    def units(
        self, session_id: str = DEFAULT_SESSION, start: int = 0, stop: int | None = None
    ) -> list[Unit]:
        """The session's units with ``start <= index < stop``, in order."""
        ...

    def count(self, session_id: str = DEFAULT_SESSION) -> int:
        """Units stored for the session."""
        ...

    def sessions(self) -> list[str]:
        """Every session id with at least one unit, sorted."""
        ...


def check_append(unit: Unit, expected_index: int) -> str:
    """The session id to store ``unit`` under, after checking that it is the next one."""
    if unit.index != expected_index:
        raise InvalidConfigError(
            f"unit.index must be the next index of session {unit.session_id or DEFAULT_SESSION!r} "
            f"({expected_index}); got {unit.index!r}: stores are append-only"
        )
    return unit.session_id or DEFAULT_SESSION


@dataclass(frozen=True, kw_only=True, slots=True)
class SummaryRecord:
    """One committed version of a session's rolling summary.

    Versions are appended, never overwritten: an older summary stays readable.

    Example:
        >>> SummaryRecord(session_id="s", version=1, covers=12, levels=("recent facts",)).covers
        12
    """

    session_id: str
    """The session summarised."""
    version: int
    """1 for the first summary of the session, then +1 per commit."""
    covers: int
    """Units ``[0, covers)`` are summarised; later units are still only verbatim."""
    levels: tuple[str, ...]
    """Summary text per level: ``levels[0]`` is the rolling summary of the most recent summarised
    units, higher levels condense older ones."""
    created_at: float = 0.0
    """Unix time of the commit."""


@runtime_checkable
class StateStore(Protocol):
    """What a store keeps beside the units: summaries and recall vectors (optional for adapters).

    A store without it still works with every strategy; summaries and vectors then live in the
    process and are rebuilt from the units after a restart.
    """

    def save_summary(self, record: SummaryRecord) -> None:
        """Append a summary version; ``record.version`` must be the session's latest + 1."""
        ...

    def latest_summary(self, session_id: str = DEFAULT_SESSION) -> SummaryRecord | None:
        """The newest summary version of the session, if any."""
        ...

    def save_vectors(
        self, session_id: str, model_id: str, rows: Sequence[tuple[int, bytes]]
    ) -> None:
        """Store (unit index, vector bytes) rows for an embedding model; a row replaces the same index."""
        ...

    def load_vectors(self, session_id: str, model_id: str) -> list[tuple[int, bytes]]:
        """Every (unit index, vector bytes) row of the session for the model, by index."""
        ...


def check_summary(record: SummaryRecord, latest: SummaryRecord | None) -> None:
    """Summaries are versioned and append-only; coverage never shrinks."""
    expected = 1 if latest is None else latest.version + 1
    if record.version != expected:
        raise InvalidConfigError(
            f"record.version must be {expected} for session {record.session_id!r}; got {record.version!r}"
        )
    if latest is not None and record.covers < latest.covers:
        raise InvalidConfigError(
            f"record.covers must be >= {latest.covers} (coverage never shrinks); got {record.covers!r}"
        )


def summary_from_row(session_id: str, row: Sequence[Any] | None) -> SummaryRecord | None:
    """A stored summary row ``(version, covers, levels as JSON, created_at)`` as a record."""
    if row is None:
        return None
    version, covers, levels, created = row
    return SummaryRecord(
        session_id=session_id,
        version=int(version),
        covers=int(covers),
        levels=tuple(json.loads(str(levels))),
        created_at=float(created),
    )
