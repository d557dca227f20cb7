"""Hypothesis strategies shared by the property and conformance tests."""

from __future__ import annotations

from hypothesis import strategies as st
from windowkeeper import Message, ToolCall

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
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


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    messages = []
    if draw(st.booleans()):
        messages.append(Message(role="system", content=draw(TEXT)))
    for turn in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            messages.append(Message(role="system", content=draw(TEXT), metadata={"zone": "rag"}))
        messages.append(Message(role="user", content=draw(TEXT), metadata={"turn": turn}))
        for c in range(draw(st.integers(0, 2))):
            call = ToolCall(id=f"call_{turn}_{c}", name="lookup", arguments=draw(TEXT))
            messages.append(Message(role="assistant", tool_calls=(call,)))
            messages.append(Message(role="tool", tool_call_id=call.id, content=draw(TEXT)))
        messages.append(Message(role="assistant", content=draw(TEXT)))
    return messages[:-1] if draw(st.booleans()) else messages
