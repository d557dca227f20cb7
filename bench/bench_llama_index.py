"""LlamaIndex memory: what `WindowkeeperMemory` costs a chat turn, against LlamaIndex's own memories.

Run: `uv run --frozen python bench/bench_llama_index.py [--sizes 100 1000 10000] [--turns 50]
[--delay 1.0] [--gc] [--quick]`.

One synthetic support chat per size (100, 1,000 and 10,000 messages of history), the same as
`bench_langchain.py`'s but as LlamaIndex `ChatMessage`s: user and assistant turns, every fourth
turn a tool loop (an assistant message holding a `ToolCallBlock`, a `role="tool"` result with
`additional_kwargs={"tool_call_id": ...}`, the answer). Every memory keeps 8,000 tokens of history
and counts with gpt-4o's tokenizer (tiktoken o200k_base, the same `Encoding` object for all).

(a) Per-turn cost: what a chat engine does with its memory each turn, `put(user)`, `get()`,
`put(answer)`, timed together, the history pre-filled to the size first (untimed, reported apart).
All sizes and methods are live at once and take turns in a rotating order.

- ours: `WindowkeeperMemory(max_tokens=8_000, path=<temp SQLite file>)` with `strategy="window"`,
  and `strategy="layered", use_embeddings=False` (BM25 recall, the core's fact notes). Between
  turns its background work (indexing, a due summary) is allowed to finish, untimed: in a chat
  engine that happens while the LLM answers.
- `ChatMemoryBuffer.from_defaults(token_limit=8_000, tokenizer_fn=<o200k encode>)` (its default
  `SimpleChatStore`). Its `get` re-tokenises the remaining history once per dropped message, so a
  turn is quadratic in the history: it runs `--buffer-turns` turns at 1,000 messages and none at
  10,000 (one turn there is estimated from its tokenising cost, `--buffer-big` times it).
- `Memory.from_defaults(token_limit=8_000, tokenizer_fn=<o200k encode>,
  chat_history_token_ratio=1.0)`: no memory blocks, so all 8,000 tokens are chat history (the
  default ratio 0.7 would give it 5,600); its default SQLAlchemy store, in-memory SQLite.

Overruns: every returned history of every timed turn is counted with the core's exact counter,
`TokenCounter("gpt-4o").count_messages(to_core_messages(history))` (tool calls, ids and the
per-message overhead included), untimed, and compared with the 8,000-token budget.

(b) A turn when a summary is due, with an LLM that takes `--delay` seconds per call. Theirs:
`ChatSummaryMemoryBuffer` (deprecated in llama-index-core, still shipped) with that LLM, whose
`get` summarises inline when the history is over its limit (pre-filled with the whole history,
`--due-reps` fresh buffers per size). Ours: `strategy="layered", use_embeddings=False,
llm=<that LLM>`; storing the pre-fill requests a summary of everything older than the recent
tier, which then runs on a background thread, `--delay` seconds per ~2,000 tokens of turns, while
the timed turns follow each other `--pace` seconds apart. The anchor, same loop, same turns: the
same memory with a summariser that does nothing, its background work finished before each turn.

Timing: each timed call runs with the cyclic garbage collector paused, as `timeit` does; `--gc`
keeps it running.

Goals (issue #11): ours ≥ 10× faster per turn than `Memory` at every size, flat, never over budget
(0 overruns); with a summary due, theirs pays ≥ 1 s, ours adds ≤ 5 ms at p99.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _chat import SupportChat  # noqa: E402
from _common import load, machine, ms, pct, rotated  # noqa: E402
from llama_index.core.base.llms.types import (  # noqa: E402
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.llms import CustomLLM  # noqa: E402
from llama_index.core.memory import ChatMemoryBuffer, Memory  # noqa: E402
from llama_index.memory.windowkeeper import WindowkeeperMemory  # noqa: E402
from llama_index.memory.windowkeeper._convert import to_core_messages  # noqa: E402
from windowkeeper import TokenCounter  # noqa: E402
from windowkeeper.tokens._encodings import load_encoding  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from llama_index.core.memory import ChatSummaryMemoryBuffer

HISTORY_TOKENS = 8_000
MODEL = "gpt-4o"
ENCODING = load_encoding("o200k_base")._encoding  # the bare tiktoken.Encoding, offline copy
TOKENIZER = ENCODING.encode_ordinary  # every LlamaIndex memory's tokenizer_fn
EXACT = TokenCounter(MODEL)  # the overrun check's counter (not any memory's)

# ------------------------------------------------------------------------------ synthetic chat


class Chat(SupportChat[ChatMessage]):
    """The shared synthetic support chat as LlamaIndex chat messages (no ids: LlamaIndex has none)."""

    def user(self) -> ChatMessage:
        return ChatMessage(role="user", content=self.user_text())

    def answer(self) -> ChatMessage:
        return ChatMessage(role="assistant", content=self.answer_text())

    def tool_loop(self) -> list[ChatMessage]:
        call_id, order, record = self.lookup()
        call = ToolCallBlock(
            tool_call_id=call_id, tool_name="lookup_order", tool_kwargs={"order_id": order}
        )
        return [
            ChatMessage(role="assistant", blocks=[call]),
            ChatMessage(
                role="tool",
                blocks=[TextBlock(text=json.dumps(record))],
                additional_kwargs={"tool_call_id": call_id, "name": "lookup_order"},
            ),
            self.answer(),
        ]


class SlowLLM(CustomLLM):
    """An LLM that takes ``delay`` seconds per call and returns a short summary."""

    delay: float = 1.0
    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=128_000, num_output=512, model_name="slow-bench")

    def _text(self) -> str:
        self.calls += 1
        return "The customer asked about orders and refunds; the assistant checked the orders."

    def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
        time.sleep(self.delay)
        return CompletionResponse(text=self._text())

    def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> Any:
        yield self.complete(prompt)

    def chat(self, messages: Sequence[ChatMessage], **kw: Any) -> ChatResponse:
        time.sleep(self.delay)
        return ChatResponse(message=ChatMessage(role="assistant", content=self._text()))

    async def achat(self, messages: Sequence[ChatMessage], **kw: Any) -> ChatResponse:
        import asyncio

        await asyncio.sleep(self.delay)
        return ChatResponse(message=ChatMessage(role="assistant", content=self._text()))


def instant(previous: str, units: Sequence[Any]) -> str:
    """A summariser that costs nothing: the anchor of (b) (no summary work in flight)."""
    return (
        f"Covered {units[-1].index + 1} turns: orders, refunds, deliveries." if units else previous
    )


# ------------------------------------------------------------------------------ the methods

TMP = tempfile.TemporaryDirectory(prefix="bench-llama-index-")


def ours(name: str, strategy: str, **kw: Any) -> WindowkeeperMemory:
    return WindowkeeperMemory(
        session_id=name,
        max_tokens=HISTORY_TOKENS,
        model=MODEL,
        strategy=strategy,
        path=str(Path(TMP.name) / f"{name}.db"),
        use_embeddings=False,
        **kw,
    )


def settle(memory: Any) -> None:
    """Wait for the background work ours started itself (indexing, a due summary); forces nothing."""
    core = getattr(memory, "core", None)
    for part in ("index", "keeper"):
        obj = getattr(core, part, None)
        if obj is not None:
            obj.flush()


def keeper(memory: Any) -> Any:
    return getattr(getattr(memory, "core", None), "keeper", None)


METHODS = {
    "window": 'ours, `strategy="window"`',
    "layered": 'ours, `strategy="layered"`, BM25 (`use_embeddings=False`), fact notes',
    "memory": "`Memory` (ratio 1.0, in-memory SQLite)",
    "buffer": "`ChatMemoryBuffer`",
}
OURS = ("window", "layered")


def build(name: str, size: int) -> Any:
    if name in OURS:
        return ours(f"{name}-{size}", name)
    if name == "memory":
        return Memory.from_defaults(
            session_id=f"memory-{size}",
            token_limit=HISTORY_TOKENS,
            tokenizer_fn=TOKENIZER,
            chat_history_token_ratio=1.0,
        )
    return ChatMemoryBuffer.from_defaults(token_limit=HISTORY_TOKENS, tokenizer_fn=TOKENIZER)


def prefill(memory: Any, history: list[ChatMessage]) -> None:
    if isinstance(memory, ChatMemoryBuffer):
        memory.set(list(history))
    else:
        memory.put_messages(list(history))


def turn(memory: Any, user: ChatMessage, answer: ChatMessage) -> list[ChatMessage]:
    """What a chat engine does with its memory in one turn."""
    memory.put(user)
    history = memory.get()
    memory.put(answer)
    return history


# ------------------------------------------------------------------------------ timing

PAUSE_GC = True


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Seconds ``fn(*args)`` takes (cyclic collector paused, as ``timeit`` does) and its result."""
    paused = PAUSE_GC and gc.isenabled()
    if paused:
        gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn(*args)
        return time.perf_counter() - t0, out
    finally:
        if paused:
            gc.enable()


def exact(history: Sequence[ChatMessage]) -> int:
    return EXACT.count_messages(to_core_messages(list(history)))


# ------------------------------------------------------------------------------ (a) per turn


def per_turn(args: argparse.Namespace) -> list[str]:
    sizes = args.sizes
    chats = {s: Chat(s) for s in sizes}
    histories = {s: chats[s].history(s) for s in sizes}
    print(
        "history: "
        + ", ".join(f"{s:,} messages = {exact(histories[s]):,} tokens" for s in sizes)
        + f" (gpt-4o, exact); budget {HISTORY_TOKENS:,} tokens of history\n"
    )
    # which method runs how many turns at which size (ChatMemoryBuffer is quadratic)
    runs = {
        (name, s): args.turns
        if name != "buffer" or s <= 100
        else (args.buffer_turns if s <= 1_000 or args.buffer_big else 0)
        for name in METHODS
        for s in sizes
    }
    # imports and lazy set-up (SQLAlchemy engine, BM25 tokeniser, fact notes) paid here
    for name in METHODS:
        m = build(name, -1)
        prefill(m, Chat(0).history(40))
        turn(m, ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="ok"))
        settle(m)
    memories: dict[tuple[str, int], Any] = {}
    fill: dict[tuple[str, int], tuple[float, float]] = {}
    for s in sizes:
        for name in METHODS:
            if not runs[name, s]:
                continue
            memories[name, s] = m = build(name, s)
            t0 = time.perf_counter()
            prefill(m, histories[s])
            t1 = time.perf_counter()
            settle(m)
            fill[name, s] = (t1 - t0, time.perf_counter() - t1)
    print("### Pre-fill: the whole history stored once (one-off, untimed in the turns)\n")
    print("| memory | " + " | ".join(f"{s:,} messages" for s in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name, label in METHODS.items():
        cells = [
            (
                f"{ms(fill[name, s][0])} ms"
                + (f" (+ {ms(fill[name, s][1])} ms background)" if name in OURS else "")
            )
            if (name, s) in fill
            else "-"
            for s in sizes
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(flush=True)

    times: dict[tuple[str, int], list[float]] = {case: [] for case in memories}
    over: dict[tuple[str, int], list[int]] = {case: [] for case in memories}
    shown: dict[tuple[str, int], list[int]] = {case: [] for case in memories}
    for i in range(args.warmup + args.turns):
        user = {s: chats[s].user() for s in sizes}
        answer = {s: chats[s].answer() for s in sizes}
        cases = [c for c in memories if i < args.warmup + runs[c]]
        for case in rotated(cases, i):
            name, s = case
            dt, history = timed(turn, memories[case], user[s], answer[s])
            if i >= args.warmup:
                times[case].append(dt)
                tokens = exact(history)
                shown[case].append(tokens)
                if tokens > HISTORY_TOKENS:
                    over[case].append(tokens)
            settle(memories[case])  # the LLM answers, the user types: background settles
        for s in sizes:  # a method that stopped early continues from the same history
            histories[s].extend([user[s], answer[s]])

    # ChatMemoryBuffer at a size it skipped: one get() re-tokenises the remaining history once
    # per dropped message; estimated as (tokenising the whole history once) × messages / 2
    estimate: dict[int, float] = {}
    for s in sizes:
        if ("buffer", s) not in times:
            text = " ".join(str(m.content) for m in histories[s])
            t0 = time.perf_counter()
            TOKENIZER(text)
            estimate[s] = (time.perf_counter() - t0) * len(histories[s]) / 2

    def cell(case: tuple[str, int]) -> str:
        if times.get(case):
            t = times[case]
            return f"{ms(statistics.median(t))} / {ms(pct(t, 0.99))}"
        return f"≈ {estimate[case[1]]:,.0f} s (est.)" if case[1] in estimate else "-"

    lo, hi = sizes[0], sizes[-1]
    print(
        f"### (a) Per turn: put(user) + get() + put(answer), median / p99 ms "
        f"({args.turns} timed turns after {args.warmup}; budget {HISTORY_TOKENS:,} tokens)\n"
    )
    print("| memory | " + " | ".join(f"{s:,} messages" for s in sizes) + f" | {hi:,} / {lo:,} |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    for name, label in METHODS.items():
        flat = (
            f"{statistics.median(times[name, hi]) / statistics.median(times[name, lo]):.2f}×"
            if times.get((name, hi)) and times.get((name, lo))
            else "-"
        )
        turns = (
            "" if name != "buffer" else f" (turns: {', '.join(str(runs[name, s]) for s in sizes)})"
        )
        print(f"| {label}{turns} | " + " | ".join(cell((name, s)) for s in sizes) + f" | {flat} |")
    print("\nSpeed-up of ours (anchor median ÷ our median, same run):\n")
    print("| anchor ÷ ours | " + " | ".join(f"{s:,} messages" for s in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for anchor in ("memory", "buffer"):
        for name in OURS:
            cells = []
            for s in sizes:
                if times.get((anchor, s)):
                    theirs = statistics.median(times[anchor, s])
                elif s in estimate and anchor == "buffer":
                    theirs = estimate[s]
                else:
                    cells.append("-")
                    continue
                est = "" if times.get((anchor, s)) else " (est.)"
                cells.append(f"{theirs / statistics.median(times[name, s]):,.0f}×{est}")
            print(f"| {anchor} ÷ {name} | " + " | ".join(cells) + " |")
    print("\nOverruns: returned histories over the budget, exact count (`count_messages`):\n")
    print(
        "| memory | "
        + " | ".join(f"{s:,}: over / turns (max tokens; median shown)" for s in sizes)
        + " |"
    )
    print("|---|" + "---:|" * len(sizes))
    for name, label in METHODS.items():
        cells = []
        for s in sizes:
            case = (name, s)
            if not shown.get(case):
                cells.append("-")
                continue
            cells.append(
                f"{len(over[case])} / {len(shown[case])} (max {max(shown[case]):,}; "
                f"{statistics.median(shown[case]):,.0f})"
            )
        print(f"| {label} | " + " | ".join(cells) + " |")

    verdicts = []
    for name in OURS:
        ratios = [
            statistics.median(times["memory", s]) / statistics.median(times[name, s]) for s in sizes
        ]
        flat = statistics.median(times[name, hi]) / statistics.median(times[name, lo])
        overruns = sum(len(over[name, s]) for s in sizes)
        verdicts.append(
            f"{name}: ≥ 10× faster than Memory at every size: "
            f"{'holds' if min(ratios) >= 10 else 'FAILS'} "
            f"({', '.join(f'{r:,.1f}×' for r in ratios)}); flat ≤ 1.5× from {lo:,} to {hi:,}: "
            f"{'holds' if flat <= 1.5 else 'FAILS'} ({flat:.2f}×); never over budget: "
            f"{'holds' if overruns == 0 else 'FAILS'} ({overruns} overruns)"
        )
    for name in ("memory", "buffer"):
        n = sum(len(over.get((name, s), [])) for s in sizes)
        total = sum(len(shown.get((name, s), [])) for s in sizes)
        verdicts.append(f"{name}: {n} of {total} returned histories over budget")
    return verdicts


# ------------------------------------------------------------------------------ (b) summary due


def summary_due(args: argparse.Namespace) -> list[str]:
    sizes = args.sizes
    slow = SlowLLM(delay=args.delay)
    chats = {s: Chat(10_000_019 + s) for s in sizes}
    histories = {s: chats[s].history(s) for s in sizes}
    kinds = ("due", "idle")
    mems = {
        (kind, s): ours(
            f"{kind}-{s}",
            "layered",
            **({"llm": slow} if kind == "due" else {"memory_options": {"summarizer": instant}}),
        )
        for s in sizes
        for kind in kinds
    }
    for s in sizes:  # storing the history requests a summary of all but the recent tier
        for kind in kinds:
            prefill(mems[kind, s], histories[s])
        settle(mems["idle", s])
    cases = [(kind, s) for s in sizes for kind in kinds]
    times: dict[tuple[str, int], list[float]] = {c: [] for c in cases}
    busy = dict.fromkeys(sizes, 0)
    over = 0
    for i in range(args.due_turns):
        user = {s: chats[s].user() for s in sizes}
        answer = {s: chats[s].answer() for s in sizes}
        for case in rotated(cases, i):
            kind, s = case
            if kind == "due":
                busy[s] += keeper(mems[case]).busy
            dt, history = timed(turn, mems[case], user[s], answer[s])
            times[case].append(dt)
            over += exact(history) > HISTORY_TOKENS
            if kind == "idle":
                settle(mems[case])
        for s in sizes:
            histories[s].extend([user[s], answer[s]])
        time.sleep(args.pace)
    commits = {s: keeper(mems["due", s]).commits for s in sizes}

    # theirs gets its own LLM: ours' background summaries keep calling theirs meanwhile
    slow = SlowLLM(delay=args.delay)
    their: dict[int, list[float]] = {s: [] for s in sizes}
    due: set[int] = set()  # sizes whose history is over its limit: a summary call was made
    calls0 = slow.calls
    for i in range(args.due_reps):
        for s in rotated(sizes, i):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                buf = ChatSummaryMemoryBuffer.from_defaults(
                    llm=slow, token_limit=HISTORY_TOKENS, tokenizer_fn=TOKENIZER
                )
            buf.set(list(histories[s]))
            before = slow.calls
            dt, _ = timed(turn, buf, chats[s].user(), chats[s].answer())
            their[s].append(dt)
            if slow.calls > before:
                due.add(s)
    their_calls = slow.calls - calls0

    def row(label: str, cells: list[str]) -> None:
        print(f"| {label} | " + " | ".join(cells) + " |")

    print(f"\n### (b) A turn when a summary is due, LLM taking {args.delay:g} s per call\n")
    row("method", [f"{s:,} messages" for s in sizes])
    print("|---|" + "---:|" * len(sizes))
    row(
        f"`ChatSummaryMemoryBuffer` turn (summary inline in get), median of {args.due_reps}",
        [
            f"{statistics.median(their[s]):.3f} s"
            + ("" if s in due else " (history fits: not due)")
            for s in sizes
        ],
    )
    for kind, label in (
        ("due", "ours, layered, summary running in the background"),
        ("idle", "ours, layered, no summary work in flight (anchor)"),
    ):
        row(
            f"{label}: median / p99 / max ms",
            [
                f"{ms(statistics.median(times[kind, s]))} / {ms(pct(times[kind, s], 0.99))} "
                f"/ {ms(max(times[kind, s]))}"
                for s in sizes
            ],
        )
    added = {s: pct(times["due", s], 0.99) - pct(times["idle", s], 0.99) for s in sizes}
    row("ours, added at p99 (due − anchor)", [f"{added[s] * 1e3:+.2f} ms" for s in sizes])
    row(
        "turns that found a summary requested or running",
        [f"{busy[s]} of {args.due_turns}" for s in sizes],
    )
    row("summary versions committed during those turns", [str(commits[s]) for s in sizes])
    row(
        "their turn ÷ our median with a summary due",
        [
            f"{statistics.median(their[s]) / statistics.median(times['due', s]):,.0f}×"
            for s in sizes
        ],
    )
    print(
        f"\nLLM calls made by ChatSummaryMemoryBuffer: {their_calls}; our overruns in (b): {over}"
    )
    fastest = min((min(their[s]) for s in due), default=float("nan"))
    at = ", ".join(f"{s:,}" for s in sorted(due))
    worst = max(added.values())
    worst_p99 = max(pct(times["due", s], 0.99) for s in sizes)
    return [
        f"summary due: theirs ≥ {args.delay:g} s: "
        f"{'holds' if fastest >= args.delay else 'FAILS'} (fastest {fastest:.3f} s, at {at} messages); "
        f"ours adds ≤ 5 ms at p99: {'holds' if worst <= 5e-3 else 'FAILS'} "
        f"(at most {worst * 1e3:+.2f} ms; the whole turn's p99 ≤ {worst_p99 * 1e3:.2f} ms; "
        f"{over} overruns)"
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--turns", type=int, default=50, help="timed turns per method and size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed turns first")
    parser.add_argument(
        "--buffer-turns", type=int, default=3, help="ChatMemoryBuffer turns above 100 messages"
    )
    parser.add_argument(
        "--buffer-big", action="store_true", help="also time ChatMemoryBuffer above 1,000 (slow)"
    )
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per LLM call")
    parser.add_argument("--due-turns", type=int, default=60, help="turns timed in (b)")
    parser.add_argument("--due-reps", type=int, default=3, help="their summarised turns per size")
    parser.add_argument("--pace", type=float, default=0.05, help="seconds between turns in (b)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, few turns")
    parser.add_argument("--gc", action="store_true", help="keep the collector running when timed")
    args = parser.parse_args()
    global PAUSE_GC
    PAUSE_GC = not args.gc
    if args.quick:
        args.sizes, args.turns, args.warmup, args.buffer_turns = [100, 1_000], 5, 1, 1
        args.due_turns, args.due_reps = 5, 1
    if any(s % 2 for s in args.sizes):
        sys.exit("--sizes must be even (finished turns of 2 or 4 messages)")
    print(
        f"machine: {machine(('llama-index-core', 'sqlalchemy', 'tiktoken'))}; load average {load()}\n"
    )
    t0 = time.perf_counter()
    verdicts = per_turn(args)
    verdicts += summary_due(args)
    print("\n" + "\n".join(f"- {v}" for v in verdicts))
    print(
        f"\nwhole run {time.perf_counter() - t0:.0f} s; load average {load()}; command: "
        "uv run --frozen python bench/bench_llama_index.py " + " ".join(sys.argv[1:])
    )
    TMP.cleanup()


if __name__ == "__main__":
    main()
