"""Replay a transcript turn by turn through a memory and the assembler (the ``replay`` command)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from windowkeeper._assembler import Chunk, ContextAssembler
from windowkeeper._budget import Budget, BudgetReport
from windowkeeper._messages import Message, validate_tool_pairs
from windowkeeper._transcript import Transcript
from windowkeeper._units import group_units, split_system
from windowkeeper.exceptions import InvalidConfigError, InvalidMessageError
from windowkeeper.memory._base import Memory
from windowkeeper.stores._base import DEFAULT_SESSION, ConversationStore
from windowkeeper.tokens._counter import TokenCounter

__all__ = ["STRATEGIES", "Replay", "ReplayTurn", "Strategy", "build_memory", "replay_transcript"]

Strategy = Literal["window", "summary", "recall", "layered"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayTurn:
    """One replayed request."""

    turn: int
    """1-based turn number."""
    report: BudgetReport
    """Exact tokens per zone of the request the assembler built."""
    naive_tokens: int
    """Prompt tokens had the whole history been re-sent (what the transcript's app sent)."""
    recent: int
    """Units shown verbatim."""
    recalled: int
    """Older units recalled."""
    summary_covers: int
    """Units covered by the summary shown (0: no summary yet)."""
    stored: int
    """Units in the store before this turn."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Replay:
    """A transcript replayed through a memory."""

    strategy: str
    """The memory strategy."""
    model: str
    """Model profile used for counting."""
    budget: Budget
    """The budget each request was assembled under."""
    turns: tuple[ReplayTurn, ...]
    """One row per user turn."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "strategy": self.strategy,
            "model": self.model,
            "context_window": self.budget.context_window,
            "generation_reserve": self.budget.generation_reserve,
            "turns": [
                {
                    "turn": t.turn,
                    "prompt_tokens": t.report.prompt_tokens,
                    "naive_tokens": t.naive_tokens,
                    "utilization": round(t.report.utilization, 6),
                    "level": t.report.level,
                    "zones": dict(t.report.zones),
                    "recent": t.recent,
                    "recalled": t.recalled,
                    "summary_covers": t.summary_covers,
                    "stored": t.stored,
                    "dropped": len(t.report.dropped),
                }
                for t in self.turns
            ],
        }


def build_memory(
    strategy: Strategy,
    counter: TokenCounter,
    *,
    store: ConversationStore | None = None,
    session_id: str = DEFAULT_SESSION,
    **options: Any,
) -> Memory:
    """A memory for a strategy name, with its embedded defaults (options go to its constructor).

    Raises:
        InvalidConfigError: Unknown strategy.
        ModelNotInstalledError: The strategy's embedded model is absent.
    """
    if strategy == "window":
        from windowkeeper.memory._recent import WindowMemory

        return WindowMemory(counter, store=store, session_id=session_id, **options)
    if strategy == "summary":
        from windowkeeper.memory._summary import RollingSummary

        return RollingSummary(counter, store=store, session_id=session_id, **options)
    if strategy == "recall":
        from windowkeeper.memory._recall import TurnRecall

        return TurnRecall(counter, store=store, session_id=session_id, **options)
    if strategy == "layered":
        from windowkeeper.memory._layered import LayeredMemory

        return LayeredMemory(counter, store=store, session_id=session_id, **options)
    raise InvalidConfigError(f"strategy must be one of {list(STRATEGIES)}; got {strategy!r}")


def replay_transcript(
    transcript: Transcript,
    memory: Memory,
    *,
    counter: TokenCounter,
    budget: Budget,
    settle: Callable[[Memory], None] | None = None,
    on_turn: Callable[[ReplayTurn], None] | None = None,
    max_utilization: float | None = None,
) -> Replay:
    """Replay a transcript: per turn, assemble the request, then store the finished turn.

    A unit without a user message (an assistant's greeting, say) makes no request: it is stored
    and shown in the requests that follow.

    Each turn's retrieved chunks (``{"zone": "rag"}`` messages) are passed as chunks with their
    ``score`` metadata (or their order); the memory sees only the conversation.

    Args:
        transcript: The conversation (its system prompt and tools are sent every turn).
        memory: An empty memory to replay into.
        counter: Counts for the target model.
        budget: Window and reserve each request is assembled under.
        settle: Called after each turn is stored (e.g. wait for a background summary, for a
            deterministic replay).
        on_turn: Called with each row as it is produced.
        max_utilization: Passed to the assembler (keep prompts below this share of the window).
    """
    system, rest = split_system(list(transcript.messages))
    assembler = ContextAssembler(counter, budget, max_utilization=max_utilization)
    naive_prefix: list[Message] = list(system)
    rows: list[ReplayTurn] = []
    tools = list(transcript.tools)
    units = group_units(rest)
    for unit in units:
        chunk_msgs = [m for m in unit.messages if m.zone_hint == "rag"]
        conversation = [m for m in unit.messages if m.zone_hint != "rag"]
        # every unit is stored but a last one whose tool call is still open
        keep = bool(conversation) and (unit is not units[-1] or _finished(conversation))
        user = unit.user
        if user is None:  # said before the next user turn (a greeting): no request, just stored
            if keep:
                memory.add(conversation)
                naive_prefix.extend(conversation)
            continue
        n = len(chunk_msgs)
        chunks = [
            Chunk(
                text=m.text,
                score=_score(m, default=1.0 - j / max(n, 1)),
                id=str(m.metadata.get("source") or f"chunk {j}"),
            )
            for j, m in enumerate(chunk_msgs)
        ]
        stored = len(memory)
        out = assembler.assemble(user, system=system, tools=tools, memory=memory, chunks=chunks)
        naive_prefix = [*naive_prefix, *chunk_msgs, user]
        naive = counter.count_messages(naive_prefix, tools=tools)
        row = ReplayTurn(
            turn=len(rows) + 1,
            report=out.report,
            naive_tokens=naive,
            recent=len(out.view.recent),
            recalled=len(out.view.recalled),
            summary_covers=out.view.summary_covers,
            stored=stored,
        )
        rows.append(row)
        if on_turn is not None:
            on_turn(row)
        if keep:
            memory.add(conversation)
        naive_prefix.extend(conversation[1:])
        if settle is not None:
            settle(memory)
    return Replay(
        strategy=type(memory).__name__,
        model=counter.profile.name,
        budget=budget,
        turns=tuple(rows),
    )


def _finished(messages: list[Message]) -> bool:
    """Whether every tool call of ``messages`` has its result."""
    try:
        validate_tool_pairs(messages, finished=True)
    except InvalidMessageError:
        return False
    return True


def _score(message: Message, *, default: float) -> float:
    score = message.metadata.get("score")
    return (
        float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else default
    )
