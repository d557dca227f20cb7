"""The context assembler: lay the zones out in order and enforce the budget."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

from windowkeeper._budget import Budget, BudgetReport, Dropped
from windowkeeper._messages import (
    SYSTEM_ROLES,
    Message,
    Role,
    TextPart,
    as_message,
    as_messages,
    messages_to_openai,
)
from windowkeeper._toolselect import ToolSelector, tool_name
from windowkeeper._units import Unit, group_units

if TYPE_CHECKING:
    from windowkeeper._compression import Compressor
from windowkeeper.exceptions import BudgetExceededError, InvalidConfigError, InvalidMessageError
from windowkeeper.memory._base import Memory, MemoryView, fit_newest, older_dropped, render_unit
from windowkeeper.memory._editing import ContextEditor
from windowkeeper.planning._prefix import prefix_fingerprint
from windowkeeper.tokens._counter import TokenCounter

__all__ = ["Assembled", "Chunk", "ChunkOrder", "ContextAssembler", "chunks_from", "place_chunks"]

_T = TypeVar("_T")

ChunkOrder = Literal["ascending", "edges"]

COMPRESSIBLE_ZONES = ("rag", "system", "history", "tools")
"""The zones a compressor may work in (``ContextAssembler(compress_zones=...)``); never the user's
message. In the tools zone only the descriptions are compressed: names, parameters, types and
the JSON around them stay as they are."""
"""``ascending``: weakest chunk first, the best right before the user message. ``edges``: the best
next to the user message and the second best first, the weakest in the middle."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Chunk:
    """A retrieved chunk with its relevance score (higher is more relevant).

    Example:
        >>> Chunk(text="Returns are accepted for 30 days.", score=0.82, id="kb/returns.md").id
        'kb/returns.md'
    """

    text: str
    """The chunk text, sent verbatim."""
    score: float
    """Relevance to the current query; only the order matters."""
    id: str | None = None
    """Where it came from (shown to the model and in reports)."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Kept on the message's metadata (never sent)."""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InvalidConfigError(f"Chunk.text must be a str; got {type(self.text).__name__}")
        if (
            isinstance(self.score, bool)
            or not isinstance(self.score, (int, float))
            or not math.isfinite(self.score)
        ):
            raise InvalidConfigError(f"Chunk.score must be a finite number; got {self.score!r}")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


@dataclass(frozen=True, kw_only=True, slots=True)
class Assembled:
    """The request to send: messages, tools, and the report of where every token went."""

    messages: tuple[Message, ...]
    """System prompt, memory blocks, recent history, chunks, then the current turn."""
    tools: tuple[Mapping[str, Any], ...]
    """Tool schemas to send (in their original order)."""
    report: BudgetReport
    """Exact tokens per zone, level, and everything dropped with the reason."""
    chunks: tuple[Chunk, ...]
    """The chunks kept, in the order they were placed."""
    view: MemoryView
    """What the memory contributed."""
    prefix_fingerprint: str
    """sha256 of system prompt + tools: equal across calls means the provider can cache the prefix."""

    def to_openai(self) -> list[dict[str, Any]]:
        """The messages as OpenAI chat dicts."""
        return messages_to_openai(self.messages)


class ContextAssembler:
    """Build each request within a budget: system → tools → summary → recalled → recent → chunks → user.

    The order follows "lost in the middle": instructions first, memory as labelled data blocks,
    the recent conversation, then the retrieved chunks in ascending relevance so the best chunk sits
    right next to the user message. Per-zone limits from the budget are enforced: chunks drop
    lowest score first, history drops oldest units first (the memory decides how), tools shrink by
    dynamic tool selection. The system prompt and the current turn are never changed; if they and the
    generation reserve alone do not fit, :class:`BudgetExceededError` says by how much.

    Args:
        counter: Counts tokens for the target model (every figure in the report is exact).
        budget: The window, generation reserve and optional zone limits.
        chunk_order: ``ascending`` (default) or ``edges``.
        chunk_role: Role of chunk messages: ``user`` (default; retrieved text is data, not
            instructions) or ``system``.
        tool_selector: How tools are chosen when the tools zone is over its limit.
        use_effective_window: Keep the prompt inside the model's effective window when the budget
            knows it (quality drops beyond it).
        max_utilization: Keep the prompt strictly below this share of the window, e.g. the
            budget's ``act_threshold`` (0.8) so requests never reach the act level while the
            fixed zones allow it. ``None`` (default): the whole window minus the reserve.
        editor: Clears older tool results and earlier reasoning in the history the memory shows
            (a :class:`ContextEditor`; its newest shown unit is left alone); ``None`` (default)
            shows the history as the memory gives it.
        clear_turn_results: When system prompt and current turn alone are over the limit (an
            agent's long tool loop), clear the turn's older tool results, oldest first, with
            :meth:`ContextEditor.fit_turn` (default ``True``). The user's message and the
            results the model is about to read are never cleared.
        compressor: Shortens text for a question (``windowkeeper-llmlingua``'s
            ``ChunkCompressor``, or any :class:`~windowkeeper.Compressor`); used in the zones
            ``compress_zones`` allows. ``None`` (default): nothing is compressed.
        compress_zones: Where the compressor may work (default ``("rag",)``):
            ``"rag"``: retrieved chunks that do not fit the rag zone are compressed to fit it;
            ``"system"``: a system prompt over its zone limit, or one that keeps the request
            from fitting at all, is compressed to fit (question-blind and cached, so the prefix
            stays byte-stable); ``"history"``: the tool results of the shown history, except
            the newest turn's, are compressed at the compressor's own rate for the question
            (their calls and ids untouched); ``"tools"``: when the tool schemas are over their
            zone, their descriptions are compressed (question-blind, cached) before any tool is
            dropped; names, parameters and types stay. The user's message is never compressed.

    Example:
        >>> asm = ContextAssembler(TokenCounter("gpt-4o"), Budget(context_window=400, generation_reserve=100))
        >>> out = asm.assemble("How long do refunds take?", system="You are a support agent.",
        ...                    chunks=[Chunk(text="Refunds take 5 days.", score=0.9),
        ...                            Chunk(text="Shipping is free.", score=0.2)])
        >>> [m.metadata.get("zone", m.role) for m in out.messages]
        ['system', 'rag', 'rag', 'user']
        >>> [c.score for c in out.chunks]  # the best chunk sits next to the user message
        [0.2, 0.9]
        >>> out.report.prompt_tokens <= 300
        True
    """

    def __init__(
        self,
        counter: TokenCounter,
        budget: Budget,
        *,
        chunk_order: ChunkOrder = "ascending",
        chunk_role: Literal["user", "system"] = "user",
        tool_selector: ToolSelector | None = None,
        use_effective_window: bool = False,
        max_utilization: float | None = None,
        clear_turn_results: bool = True,
        editor: ContextEditor | None = None,
        compressor: Compressor | None = None,
        compress_zones: Sequence[str] = ("rag",),
    ) -> None:
        from windowkeeper._compression import check_compressor

        if not isinstance(counter, TokenCounter):
            raise InvalidConfigError(
                f"counter must be a TokenCounter; got {type(counter).__name__}"
            )
        if not isinstance(budget, Budget):
            raise InvalidConfigError(f"budget must be a Budget; got {type(budget).__name__}")
        if chunk_order not in ("ascending", "edges"):
            raise InvalidConfigError(
                f"chunk_order must be 'ascending' or 'edges'; got {chunk_order!r}"
            )
        if chunk_role not in ("user", "system"):
            raise InvalidConfigError(f"chunk_role must be 'user' or 'system'; got {chunk_role!r}")
        if max_utilization is not None and (
            isinstance(max_utilization, bool)
            or not isinstance(max_utilization, (int, float))
            or not 0 < max_utilization <= 1
        ):
            raise InvalidConfigError(
                f"max_utilization must be in (0, 1] or None; got {max_utilization!r}"
            )
        self.max_utilization = max_utilization
        self.counter = counter
        self.budget = budget
        self.chunk_order = chunk_order
        self.chunk_role = chunk_role
        self.tool_selector = tool_selector or ToolSelector()
        self.use_effective_window = use_effective_window
        self.clear_turn_results = bool(clear_turn_results)
        if editor is not None and not isinstance(editor, ContextEditor):
            raise InvalidConfigError(
                f"editor must be a ContextEditor or None; got {type(editor).__name__}"
            )
        self.editor = editor
        self.compressor = check_compressor(compressor)
        self.compress_zones = check_compress_zones(compress_zones)
        self._blind_cache: dict[tuple[tuple[str, ...], int], tuple[str, ...]] = {}

    @property
    def prompt_limit(self) -> int:
        """Tokens a prompt may use: window minus reserve (and the effective window, if asked)."""
        limit = self.budget.prompt_limit
        if self.use_effective_window and self.budget.effective_window is not None:
            limit = min(limit, self.budget.effective_window)
        if self.max_utilization is not None:
            limit = min(limit, math.ceil(self.max_utilization * self.budget.context_window) - 1)
        return limit

    def chunk_message(self, chunk: Chunk) -> Message:
        """How a chunk is sent: a ``<document>`` block in its own message, marked as the rag zone."""
        head = f'<document id="{chunk.id}">' if chunk.id else "<document>"
        return Message(
            role=self.chunk_role,
            content=f"{head}\n{chunk.text}\n</document>",
            metadata={**chunk.metadata, "zone": "rag", "chunk_id": chunk.id, "score": chunk.score},
        )

    def assemble(
        self,
        user: str | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any]],
        *,
        system: str
        | Message
        | Mapping[str, Any]
        | Sequence[Message | Mapping[str, Any]]
        | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        memory: Memory | None = None,
        history: Sequence[Message | Mapping[str, Any]] | None = None,
        chunks: Sequence[Chunk | tuple[str, float]] = (),
        query: str | None = None,
    ) -> Assembled:
        """Build one request.

        Messages may be :class:`Message` objects or OpenAI chat dicts, mixed freely.

        Args:
            user: The current user message, or the current turn (the user message followed by
                the assistant tool calls and results of an agent loop still in progress).
            system: The system prompt (text, a message, or system/developer messages).
            tools: Tool schemas offered this turn.
            memory: Where the conversation comes from (summary, recalled and recent units).
            history: Instead of a memory: earlier messages, kept as the newest whole units that
                fit. It may open with assistant messages; every tool call in it has its result.
            chunks: Retrieved chunks with scores.
            query: What the memory and tool selection match against (default: the user text).

        Raises:
            BudgetExceededError: System prompt, current turn and reserve alone do not fit, or a
                zone that cannot shrink (system, user, always-included tools) is over its limit.
            InvalidMessageError: The current turn or the history is malformed.
            InvalidConfigError: Both ``memory`` and ``history`` are given.
        """
        if memory is not None and history is not None:
            raise InvalidConfigError("pass memory or history, not both; got both")
        system_msgs = _system_messages(system)
        current = _current_turn(user)
        history_units = (
            group_units(as_messages(history, param="history"), finished=True) if history else []
        )
        query_text = query if query is not None else current[0].text
        tool_list = list(tools or ())
        for t in tool_list:
            tool_name(t)  # every tool must be named
        counter = self.counter
        limit = self.prompt_limit
        limits = self.budget.zone_limits
        reserve = self.budget.generation_reserve

        base_msgs = [*system_msgs, *current]
        base = counter.count_messages(base_msgs)

        # tools: exact cost in this request (the tool block interacts with the system message)
        def tools_cost(ts: Sequence[Mapping[str, Any]]) -> int:
            return counter.count_messages(base_msgs, tools=ts) - base if ts else 0

        # the tool block's cost depends on the request's opening (the system prompt), not on the
        # turn: counted once, it stays right when older tool results of the turn are cleared
        all_tools = tools_cost(tool_list)
        dropped: list[Dropped] = []
        if self.clear_turn_results:
            # an agent's tool loop makes room for its tools (within their zone) before any is
            # dropped: a turn without tools would end the loop
            room_for_tools = min(all_tools, limits.get("tools", limit))
            if base + room_for_tools > limit:
                current, cleared = ContextEditor(counter).fit_turn(
                    system_msgs, current, limit - room_for_tools
                )
                if cleared:
                    dropped.extend(cleared)
                    base_msgs = [*system_msgs, *current]
                    base = counter.count_messages(base_msgs)
        if self.compressor is not None and "system" in self.compress_zones and system_msgs:
            ours = counter.count_zones_of(base_msgs, system=len(system_msgs))["system"]
            target = min(limits.get("system", ours), ours - max(base - limit, 0))
            if target < ours:
                system_msgs, squeezed = self._compress_system(system_msgs, ours, target)
                if squeezed:
                    dropped.extend(squeezed)
                    base_msgs = [*system_msgs, *current]
                    base = counter.count_messages(base_msgs)
        if base > limit:
            raise BudgetExceededError(
                required=base + reserve,
                limit=limit + reserve,
                zone="total",
                detail=(
                    f"system prompt, current turn and generation reserve ({reserve}) alone"
                    + (
                        f", after clearing {len(dropped)} older tool results of the turn"
                        if dropped
                        else ""
                    )
                    + f"; short by {base - limit}"
                ),
            )
        fixed = counter.count_zones_of(base_msgs, system=len(system_msgs))
        for zone in ("system", "user"):
            if zone in limits and fixed[zone] > limits[zone]:
                raise BudgetExceededError(
                    required=fixed[zone],
                    limit=limits[zone],
                    zone=zone,
                    detail="even compressed"
                    if zone == "system"
                    and self.compressor is not None
                    and "system" in self.compress_zones
                    else "this zone is never shortened"
                    + (
                        " (a compressor with compress_zones including 'system' may compress it)"
                        if zone == "system"
                        else ""
                    ),
                )

        space = limit - base
        if (
            tool_list
            and self.compressor is not None
            and "tools" in self.compress_zones
            and all_tools > min(limits.get("tools", space), space)
        ):
            room = min(limits.get("tools", space), space)
            need = all_tools - room
            for _ in range(3):  # descriptions do not count quite alone in the tool block
                shorter, described = self._compress_tools(tool_list, need)
                cost = tools_cost(shorter)
                if cost <= room or not described:
                    break
                need += cost - room
            if cost < all_tools:  # before any tool is dropped, their descriptions get shorter
                tool_list, all_tools = shorter, cost
                dropped.extend(described)
        kept_tools = tool_list
        if tool_list:
            tools_limit = min(limits.get("tools", space), space)
            if all_tools > tools_limit:
                selection = self.tool_selector.select(
                    tool_list,
                    _tool_query(query_text, memory, history_units),
                    limit=tools_limit,
                    counter=counter,
                    cost=tools_cost,
                )
                kept_tools = list(selection.tools)
                dropped.extend(selection.dropped)
                kept_names = {tool_name(t) for t in kept_tools}
                missing = [n for n in self.tool_selector.always_include if n not in kept_names]
                if missing:
                    raise BudgetExceededError(
                        required=tools_cost([t for t in tool_list if tool_name(t) in missing]),
                        limit=tools_limit,
                        zone="tools",
                        detail=f"always-included tools {missing!r} alone",
                    )
        space -= all_tools if kept_tools is tool_list else tools_cost(kept_tools)

        # chunks: best first until the rag zone is full; placed in ascending / edges order
        rag_limit = min(limits.get("rag", space), space)
        if self.compressor is not None and chunks:
            chunks, compressed = self.compress_chunks(chunks, query_text, rag_limit)
            dropped.extend(compressed)
        kept_chunks, chunk_msgs, rag_used, rag_dropped = self.fit_chunks(chunks, rag_limit)
        dropped.extend(rag_dropped)
        space -= rag_used

        # history: the memory's view within what is left
        history_limit = max(min(limits.get("history", space), space), 0)
        for _ in range(3):
            view = self._view(memory, history_units, query_text, history_limit)
            shown, edits = self._edited(view)
            if self.compressor is not None and "history" in self.compress_zones:
                shown, compressed_results = self._compress_history(shown, view, query_text)
                edits = (*edits, *compressed_results)
            messages = (
                *system_msgs,
                *shown,
                *chunk_msgs,
                *current,
            )
            zones = counter.count_zones_of(messages, tools=kept_tools, system=len(system_msgs))
            over = sum(zones.values()) - limit
            if over <= 0:
                break
            history_limit = max(history_limit - over, 0)  # a memory misjudged its own view
        else:
            raise BudgetExceededError(
                required=sum(zones.values()) + reserve,
                limit=limit + reserve,
                zone="history",
                detail="the memory's view did not fit the history budget it was given",
            )
        report = self.budget.report(zones, dropped=(*dropped, *edits, *view.dropped))
        return Assembled(
            messages=messages,
            tools=tuple(kept_tools),
            report=report,
            chunks=tuple(kept_chunks),
            view=view,
            prefix_fingerprint=prefix_fingerprint(system_msgs, kept_tools),
        )

    def compress_chunks(
        self, chunks: Sequence[Chunk | tuple[str, float]], question: str, limit: int
    ) -> tuple[list[Chunk], list[Dropped]]:
        """The chunks shortened by the ``compressor`` when their messages exceed ``limit`` tokens.

        The compressor gets the chunk texts and a target of ``limit`` minus the message frames
        (so the compressed chunks' messages fit), and ``question`` (only read). What it cut or
        dropped is reported per chunk; the chunks come back unchanged when they fit already or
        no compressor is set.
        """
        listed = _chunks(chunks)
        if self.compressor is None or not listed:
            return listed, []
        costs = [self.counter.count_message(self.chunk_message(c)) for c in listed]
        if sum(costs) <= limit:
            return listed, []
        frames = sum(
            cost - self.counter.count(c.text) for cost, c in zip(costs, listed, strict=True)
        )
        outcome = self.compressor.compress(listed, question, target_tokens=max(limit - frames, 0))
        kept: list[Chunk] = []
        report: list[Dropped] = []
        for i, entry in enumerate(outcome.chunks):
            name = f"chunk {entry.original.id or i}"
            if entry.dropped:
                report.append(
                    Dropped(
                        zone="rag", what=name, tokens=costs[i], reason=entry.reason or "compressor"
                    )
                )
                continue
            kept.append(entry.chunk)
            saved = entry.tokens_before - entry.tokens_after
            if saved > 0:
                report.append(
                    Dropped(
                        zone="rag",
                        what=f"{name} (compressed)",
                        tokens=saved,
                        reason=f"compressed from {entry.tokens_before} to {entry.tokens_after} tokens",
                    )
                )
        return kept, report

    def _compress_system(
        self, system: list[Message], zone: int, target: int
    ) -> tuple[list[Message], list[Dropped]]:
        """The system messages compressed so the system zone (``zone`` tokens) counts ``target``.

        Only text-only messages are compressed, for no question (the prefix must not change from
        one request to the next), and the result is cached per text and target. A message the
        compressor would drop whole is kept as it is.
        """
        assert self.compressor is not None
        counter = self.counter
        texts = [m.text if all(isinstance(p, TextPart) for p in m.parts) else None for m in system]
        listed = [t for t in texts if t]
        if not listed:
            return system, []
        text_tokens = [counter.count(t) for t in listed]
        goal = target - (zone - sum(text_tokens))
        if goal <= 0:
            return system, []
        out = self._blind(listed, goal, "system")
        report: list[Dropped] = []
        messages: list[Message] = []
        at = 0
        for m, text in zip(system, texts, strict=True):
            if not text:
                messages.append(m)
                continue
            new, before = out[at], text_tokens[at]
            at += 1
            after = counter.count(new)
            if after >= before:
                messages.append(m)
                continue
            messages.append(replace(m, content=(TextPart(text=new),)))
            report.append(
                Dropped(
                    zone="system",
                    what=f"system message {at - 1} (compressed)",
                    tokens=before - after,
                    reason=f"compressed from {before} to {after} tokens",
                )
            )
        return messages, report

    def _blind(self, texts: list[str], goal: int, label: str) -> tuple[str, ...]:
        """``texts`` compressed to ``goal`` tokens for no question, cached (a stable prefix).

        A text the compressor would drop whole is kept as it is.
        """
        assert self.compressor is not None
        key = ((label, *texts), goal)
        out = self._blind_cache.get(key)
        if out is None:
            outcome = self.compressor.compress(
                [Chunk(text=t, score=1.0, id=f"{label} {n}") for n, t in enumerate(texts)],
                "",
                target_tokens=goal,
            )
            out = tuple(e.original.text if e.dropped else e.chunk.text for e in outcome.chunks)
            if len(self._blind_cache) >= 16:
                self._blind_cache.pop(next(iter(self._blind_cache)))
            self._blind_cache[key] = out
        return out

    def _compress_tools(
        self, tools: list[Mapping[str, Any]], over: int
    ) -> tuple[list[Mapping[str, Any]], list[Dropped]]:
        """The tools with their descriptions compressed to save about ``over`` tokens.

        Only description strings change (the function's and its parameters'), for no question
        and cached, so the schemas stay valid JSON and the prefix stays byte-stable. Copies are
        returned; the caller's schemas are untouched.
        """
        assert self.compressor is not None
        counter = self.counter
        spots: list[tuple[int, tuple[str | int, ...], str]] = []  # (tool, path, text)
        for i, tool in enumerate(tools):
            for path, text in _descriptions(tool):
                spots.append((i, path, text))
        if not spots:
            return tools, []
        texts = tuple(text for _, _, text in spots)
        before = [counter.count(t) for t in texts]
        goal = max(sum(before) - over, sum(before) // 5)
        out = self._blind(list(texts), goal, "description")
        copies = [copy.deepcopy(dict(t)) for t in tools]
        saved: dict[int, int] = {}
        for (i, path, _), new, cost in zip(spots, out, before, strict=True):
            after = counter.count(new)
            if after >= cost:
                continue
            target: Any = copies[i]
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = new
            saved[i] = saved.get(i, 0) + cost - after
        report = [
            Dropped(
                zone="tools",
                what=f"tool {tool_name(tools[i])} descriptions (compressed)",
                tokens=tokens,
                reason="descriptions compressed (names, parameters and types unchanged)",
            )
            for i, tokens in sorted(saved.items())
        ]
        return [copies[i] if i in saved else tools[i] for i in range(len(tools))], report

    def _compress_history(
        self, shown: list[Message], view: MemoryView, question: str
    ) -> tuple[list[Message], tuple[Dropped, ...]]:
        """The shown history with its tool results (not the newest turn's) compressed.

        The compressor works at its own rate, for ``question``. A result it drops whole becomes
        the same placeholder a :class:`ContextEditor` leaves, so every call keeps its result.
        """
        assert self.compressor is not None
        newest = {id(m) for m in view.recent[-1].messages} if view.recent else set()
        at = [
            i
            for i, m in enumerate(shown)
            if m.role == "tool"
            and id(m) not in newest
            and m.parts
            and all(isinstance(p, TextPart) for p in m.parts)
            and not m.text.startswith("[tool result cleared")
        ]
        if not at:
            return shown, ()
        outcome = self.compressor.compress(
            [Chunk(text=shown[i].text, score=1.0, id=shown[i].tool_call_id) for i in at],
            question,
        )
        names = {c.id: c.name for m in shown for c in m.tool_calls if c.id}
        editor = ContextEditor(self.counter)
        out = list(shown)
        report: list[Dropped] = []
        for i, entry in zip(at, outcome.chunks, strict=True):
            m = shown[i]
            if entry.dropped:
                note = editor._placeholder(m, names, None)
                if note is None:
                    continue
                text, saved = note[0], note[1] - self.counter.count(note[0])
            else:
                text = entry.chunk.text
                saved = entry.tokens_before - entry.tokens_after
            if saved <= 0:
                continue
            out[i] = replace(m, content=(TextPart(text=text),))
            report.append(
                Dropped(
                    zone="history",
                    what=f"tool result {m.tool_call_id} (compressed)",
                    tokens=saved,
                    reason="dropped by the compressor"
                    if entry.dropped
                    else f"compressed from {entry.tokens_before} to {entry.tokens_after} tokens",
                )
            )
        return out, tuple(report)

    def fit_chunks(
        self, chunks: Sequence[Chunk | tuple[str, float]], limit: int
    ) -> tuple[list[Chunk], list[Message], int, list[Dropped]]:
        """Chunks best first while their messages fit ``limit`` tokens, placed in ``chunk_order``.

        Returns the kept chunks and their messages in placement order (the last one goes next to
        the user message), the tokens they cost, and what was dropped. Retrieval adapters (a
        document compressor) call it to fit documents the way a request would.
        """
        chunks = _chunks(chunks)
        dropped: list[Dropped] = []
        ranked = _ranked(chunks)
        kept: list[tuple[Chunk, Message]] = []
        used = 0
        for i in ranked:
            message = self.chunk_message(chunks[i])
            cost = self.counter.count_message(message)
            if used + cost <= limit:
                kept.append((chunks[i], message))
                used += cost
            else:
                dropped.append(
                    Dropped(
                        zone="rag",
                        what=f"chunk {chunks[i].id or i}",
                        tokens=cost,
                        reason="lower score than the chunks that filled the rag zone",
                    )
                )
        placed = _place(kept, self.chunk_order)
        return [c for c, _ in placed], [m for _, m in placed], used, dropped

    def _edited(self, view: MemoryView) -> tuple[list[Message], tuple[Dropped, ...]]:
        """The view's messages, older tool results cleared by the ``editor`` (if any)."""
        shown = view.messages()
        if self.editor is None or not view.recent:
            return shown, ()
        edited = self.editor.edit(shown)
        return list(edited.messages), edited.dropped

    def _view(
        self,
        memory: Memory | None,
        history: Sequence[Unit],
        query: str,
        budget: int,
    ) -> MemoryView:
        if memory is not None:
            return memory.view(query, budget=budget)
        if not history:
            return MemoryView()
        costs = [sum(self.counter.count_message(m) for m in u.messages) for u in history]
        cut = fit_newest(costs, budget)
        return MemoryView(
            recent=tuple(history[cut:]),
            dropped=tuple(older_dropped(history, costs, cut)),
            tokens=sum(costs[cut:]),
        )


def _descriptions(tool: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Every description string of a tool schema, with its path (function and parameters)."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    root: tuple[str | int, ...] = ("function",) if isinstance(tool.get("function"), Mapping) else ()
    fn = tool.get("function", tool)
    if not isinstance(fn, Mapping):
        return found
    if isinstance(fn.get("description"), str) and fn["description"].strip():
        found.append(((*root, "description"), fn["description"]))

    def walk(node: object, path: tuple[str | int, ...]) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if k == "description" and isinstance(v, str) and v.strip():
                    found.append(((*path, k), v))
                elif isinstance(v, Mapping | list):
                    walk(v, (*path, k))
        elif isinstance(node, list):
            for n, v in enumerate(node):
                walk(v, (*path, n))

    key = "parameters" if "parameters" in fn else "input_schema"
    walk(fn.get(key), (*root, key))
    return found


def check_compress_zones(zones: object) -> frozenset[str]:
    """``zones`` as a set when each is one of :data:`COMPRESSIBLE_ZONES`, else a typed error."""
    if (
        isinstance(zones, str)
        or not isinstance(zones, Sequence | set | frozenset)
        or not all(z in COMPRESSIBLE_ZONES for z in zones)
    ):
        raise InvalidConfigError(
            f"compress_zones must be a collection of {list(COMPRESSIBLE_ZONES)}; got {zones!r}"
        )
    return frozenset(zones)


def chunks_from(
    texts: Sequence[str],
    scores: Sequence[object],
    *,
    ids: Sequence[str | None] | None = None,
) -> list[Chunk]:
    """Retrieved texts as chunks: their scores when every one is a finite number, else their rank.

    A list mixing scored and unscored items ranks by the given order alone (first best), so a
    retriever's ranking is never second-guessed. ``metadata["position"]`` is each text's index.
    Framework adapters build their chunks with it (documents, nodes).

    Example:
        >>> [(c.text, c.score) for c in chunks_from(["a", "b"], [None, 0.3])]
        [('a', 2.0), ('b', 1.0)]
        >>> [c.score for c in chunks_from(["a", "b"], [0.1, 0.9])]
        [0.1, 0.9]
    """
    n = len(texts)
    if len(scores) != n or (ids is not None and len(ids) != n):
        raise InvalidConfigError(
            f"texts, scores and ids must be as long as each other; got {n}, {len(scores)}"
            + (f", {len(ids)}" if ids is not None else "")
        )
    numbers: list[float] = []
    for value in scores:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            break
        if not math.isfinite(value):
            break
        numbers.append(float(value))
    if len(numbers) != n:
        numbers = [float(n - i) for i in range(n)]
    return [
        Chunk(
            text=text,
            score=score,
            id=ids[i] if ids is not None else None,
            metadata={"position": i},
        )
        for i, (text, score) in enumerate(zip(texts, numbers, strict=True))
    ]


def place_chunks(
    chunks: Sequence[Chunk | tuple[str, float]], order: ChunkOrder = "ascending"
) -> list[Chunk]:
    """All chunks in the order a request places them, the best last (next to the user message).

    The ranking and placement of :meth:`ContextAssembler.fit_chunks` without a budget: nothing is
    counted or dropped, equal scores keep their given order. For adapters that reorder retrieved
    text without fitting it.

    Args:
        chunks: Chunks (or ``(text, score)`` tuples), higher score more relevant.
        order: ``ascending`` (best last) or ``edges`` (best last, second best first).

    Example:
        >>> chunks = [Chunk(text="a", score=0.2), Chunk(text="b", score=0.9), Chunk(text="c", score=0.5)]
        >>> [c.text for c in place_chunks(chunks)]
        ['a', 'c', 'b']
        >>> [c.text for c in place_chunks(chunks, "edges")]
        ['c', 'a', 'b']
    """
    if order not in ("ascending", "edges"):
        raise InvalidConfigError(f"order must be 'ascending' or 'edges'; got {order!r}")
    listed = _chunks(chunks)
    return _place([listed[i] for i in _ranked(listed)], order)


def _ranked(chunks: Sequence[Chunk]) -> list[int]:
    """Indices best first; equal scores keep their given order."""
    return sorted(range(len(chunks)), key=lambda i: (-chunks[i].score, i))


def _place(best_first: list[_T], order: ChunkOrder) -> list[_T]:
    """Order kept chunks for placement before the user message (the last one is adjacent to it)."""
    if order == "ascending":
        return best_first[::-1]
    # edges: 2nd, 4th, 6th, ... then ..., 5th, 3rd, 1st: relevance falls toward the middle
    return best_first[1::2] + best_first[0::2][::-1]


def _chunks(chunks: Sequence[Chunk | tuple[str, float]]) -> list[Chunk]:
    out = []
    for i, c in enumerate(chunks):
        if isinstance(c, Chunk):
            out.append(c)
        elif isinstance(c, tuple) and len(c) == 2:
            out.append(Chunk(text=c[0], score=c[1]))
        else:
            raise InvalidConfigError(
                f"chunks[{i}] must be a Chunk or a (text, score) tuple; got {type(c).__name__}"
            )
    return out


MessagesArg: TypeAlias = str | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any]]
"""Text, one message (object or OpenAI dict), or a list of them."""


def _message_list(value: MessagesArg, *, role: Role, param: str) -> list[Message]:
    """``value`` as messages: text becomes one ``role`` message ('' none), one message a list."""
    if isinstance(value, str):
        return [Message(role=role, content=value)] if value or role == "user" else []
    if isinstance(value, (Message, Mapping)):
        return [as_message(value, index=0)]
    return as_messages(value, param=param)


def _system_messages(system: MessagesArg | None) -> list[Message]:
    msgs = [] if system is None else _message_list(system, role="system", param="system")
    for i, m in enumerate(msgs):
        if m.role not in SYSTEM_ROLES:
            raise InvalidMessageError(
                f"system must hold system or developer messages; got role {m.role!r}", index=i
            )
    return msgs


def _current_turn(user: MessagesArg) -> list[Message]:
    msgs = _message_list(user, role="user", param="user")
    if not msgs or msgs[0].role != "user":
        raise InvalidMessageError(
            "user must be the current user message, or the current turn starting with it; "
            f"got {msgs[0].role if msgs else 'nothing'!r} first",
            index=0,
        )
    units = group_units(msgs)
    if len(units) != 1:
        raise InvalidMessageError(
            f"user must be one turn (a single user message and what answers it); got {len(units)}"
        )
    return msgs


def _tool_query(query: str, memory: Memory | None, history: Sequence[Unit]) -> str:
    """The current turn plus the last finished one: what the tools are matched on."""
    last: Unit | None = history[-1] if history else None
    if last is None and memory is not None:
        newest = getattr(memory, "last_unit", None)
        last = newest if isinstance(newest, Unit) else None
    return f"{query}\n{render_unit(last)}" if last is not None else query
