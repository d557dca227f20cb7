"""The core conformance suite, run through the LlamaIndex memory.

Generated conversations (``tests/strategies.py``) are converted to LlamaIndex ``ChatMessage``s and
put into a :class:`WindowkeeperMemory`, as a chat engine or agent would. What ``get`` returns fits
``max_tokens`` by the core's exact count (when no turn is in progress), never splits a tool call
from its result, ends with the turn in progress as it was put; every finished turn is stored
once and unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.memory.windowkeeper import WindowkeeperMemory, to_core_messages, to_llama
from windowkeeper import Message, TokenCounter, group_units, validate_tool_pairs
from windowkeeper._units import split_system

from tests.strategies import conversations

COUNTER = TokenCounter("gpt-4o")
EXAMPLES = max(int(os.environ.get("WK_CONFORMANCE_EXAMPLES", "2000")) // 4, 25)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    messages=conversations(),
    max_tokens=st.integers(50, 3_000),
    strategy=st.sampled_from(["window", "layered"]),
)
def test_memory_conforms(
    messages: list[Message], max_tokens: int, strategy: str, tmp_path_factory: object
) -> None:
    messages = [m for m in messages if m.zone_hint != "rag"]
    _, rest = split_system(messages)
    if not any(m.role == "user" for m in rest):
        return
    items = [to_llama(m) for m in rest]
    path = Path(tmp_path_factory.mktemp("m")) / "m.db"  # type: ignore[attr-defined]
    memory = WindowkeeperMemory(
        session_id="c",
        path=str(path),
        max_tokens=max_tokens,
        strategy=strategy,
        use_embeddings=False,
    )
    memory.put_messages(items)
    shown = memory.get()
    core_shown = to_core_messages(shown)
    units = group_units(to_core_messages(items))
    stored = len(memory.core)
    pending = len(items) - sum(len(u.messages) for u in units[:stored])
    assert stored >= len(units) - 1  # at most the last turn is still in progress
    if pending == 0:
        assert COUNTER.count_messages(core_shown) <= max_tokens
    validate_tool_pairs(core_shown)
    assert shown[len(shown) - pending :] == items[len(items) - pending :]
    assert (
        [u.messages for u in memory.core.units]
        == [  # type: ignore[attr-defined]
            u.messages for u in units[:stored]
        ]
    )
    assert memory.get_all() == items  # nothing lost, nothing changed
    close = getattr(memory.core, "close", None)
    if callable(close):
        close()
