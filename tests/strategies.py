"""Hypothesis strategies shared by the property and conformance tests."""

from __future__ import annotations

from hypothesis import strategies as st
from windowkeeper import Message, ToolCall

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
SHORT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up a record",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
            },
        },
    }
]
CALL_IDS = st.one_of(
    st.from_regex(r"call_[A-Za-z0-9]{1,24}", fullmatch=True),
    st.from_regex(r"toolu_[A-Za-z0-9]{1,24}", fullmatch=True),
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30
    ),
)


@st.composite
def tool_exchange(draw: st.DrawFn, turn: int, step: int) -> list[Message]:
    """One assistant message with 1-3 (parallel) tool calls, then their results in any order."""
    ids = draw(st.lists(CALL_IDS, min_size=1, max_size=3, unique=True))
    calls = tuple(
        ToolCall(id=f"{i}-{turn}-{step}-{c}", name="lookup", arguments=draw(SHORT))
        for c, i in enumerate(ids)
    )
    content = draw(st.one_of(st.just(""), SHORT))
    results = [Message(role="tool", tool_call_id=c.id, content=draw(TEXT)) for c in calls]
    order = draw(st.permutations(range(len(results))))
    return [
        Message(role="assistant", content=content, tool_calls=calls),
        *(results[i] for i in order),
    ]


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """Valid chat as applications hand it over.

    An optional system prompt; the conversation may open with assistant messages (a greeting,
    several in a row, a tool exchange) before any user turn; each user turn has tool exchanges
    with parallel calls and one or more assistant replies; system or developer notes appear
    mid-way, and retrieved chunks before user messages.
    """
    messages: list[Message] = []
    if draw(st.booleans()):
        messages.append(Message(role="system", content=draw(TEXT)))
    for i in range(draw(st.integers(0, 2))):  # said before the first user turn
        if draw(st.integers(0, 3)) == 0:
            messages.extend(draw(tool_exchange(-1, i)))
        else:
            messages.append(Message(role="assistant", content=draw(TEXT)))
    for turn in range(draw(st.integers(1, 6))):
        if (turn or messages) and draw(st.integers(0, 4)) == 0:  # a note mid-way
            role = draw(st.sampled_from(["system", "developer"]))
            messages.append(Message(role=role, content=draw(SHORT)))
        if draw(st.booleans()):
            messages.append(Message(role="system", content=draw(TEXT), metadata={"zone": "rag"}))
        messages.append(Message(role="user", content=draw(TEXT), metadata={"turn": turn}))
        for step in range(draw(st.integers(0, 2))):
            messages.extend(draw(tool_exchange(turn, step)))
        for _ in range(draw(st.integers(1, 2))):  # several assistant messages in a row
            messages.append(Message(role="assistant", content=draw(TEXT)))
    return messages[:-1] if draw(st.booleans()) else messages
