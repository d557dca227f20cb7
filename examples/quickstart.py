"""windowkeeper quickstart: count a conversation, split it into zones, budget it, monitor it.

Runs offline:  uv run python examples/quickstart.py
"""

from __future__ import annotations

import logging
import sys

from windowkeeper import Budget, Message, Record, TokenCounter, ToolCall, UtilizationMonitor

SYSTEM = Message(
    role="system",
    content=(
        "You are the support agent of an electronics shop. Answer from the policy excerpts you are "
        "given, cite them, and keep answers under 120 words."
    ),
)
POLICY = Message(
    role="system",
    content=(
        "Returns policy: unopened items can be returned within 30 days of delivery. Opened items "
        "can be returned within 14 days if all accessories and the original packaging are included."
    ),
    metadata={"zone": "rag"},
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Retrieve an order by its id",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "e.g. A-1001"}},
                "required": ["order_id"],
            },
        },
    }
]

# (user message, order the assistant looks up first or None, assistant reply) for each turn
TURNS = [
    ("I opened a keyboard last week. Can I still return it?", None, "Which order is it?"),
    ("It is order A-1001.", "A-1001", "Yes: it was delivered 9 days ago, inside 14 days."),
    ("Do I need the original box?", None, "Yes, opened items need the original packaging."),
    ("And the USB cable that came with it?", None, "Include it: all accessories go back."),
    ("Can I get store credit instead?", None, "Yes, a refund or store credit, your choice."),
]


def on_level(record: Record) -> None:
    report = record.report
    print(
        f"  -> callback: {report.level} at {report.prompt_tokens:,} tokens "
        f"({report.utilization:.1%} of {report.context_window:,})"
    )


def main() -> None:
    # the monitor logs every request on "windowkeeper.monitor" (INFO alert, WARNING act, ERROR overflow)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="  log: %(levelname)s %(message)s"
    )

    counter = TokenCounter("gpt-4o")  # exact for gpt-4o: o200k_base, offline
    print(counter)
    print("plain text:", counter.count("Can I still return it?"), "tokens")

    # A deliberately small window, so that every threshold is reached within five turns.
    budget = Budget(context_window=300, generation_reserve=40, model="gpt-4o")
    monitor = UtilizationMonitor(
        on_alert=on_level, on_act=on_level, on_overflow=on_level, edge_triggered=True, metrics="off"
    )

    history: list[Message] = [SYSTEM, POLICY]
    for turn, (question, order_id, answer) in enumerate(TURNS, 1):
        history.append(Message(role="user", content=question, metadata={"turn": turn}))
        zones = counter.count_zones_of(history, tools=TOOLS)
        assert sum(zones.values()) == counter.count_messages(history, tools=TOOLS)
        report = budget.report(zones)
        print(
            f"turn {turn}: {report.prompt_tokens} tokens, {report.level}; "
            + ", ".join(f"{zone}={n}" for zone, n in zones.items())
        )
        monitor.record(report, label=f"turn {turn}")

        if order_id is not None:  # the assistant calls the tool, then answers
            call = ToolCall(
                id=f"call_{turn}", name="lookup_order", arguments=f'{{"order_id": "{order_id}"}}'
            )
            history.append(Message(role="assistant", tool_calls=(call,)))
            history.append(
                Message(role="tool", tool_call_id=call.id, content='{"delivered_days_ago": 9}')
            )
        history.append(Message(role="assistant", content=answer))

    summary = monitor.summary()
    print(
        f"{summary.requests} requests, max utilization {summary.max_utilization:.1%}, "
        f"levels {summary.levels}"
    )
    print("cache:", counter.cache_info())


if __name__ == "__main__":
    main()
