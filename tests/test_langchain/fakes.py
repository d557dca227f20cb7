"""A scripted, recording tool-calling chat model for the LangChain adapter tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_windowkeeper import to_core_messages
from pydantic import PrivateAttr
from windowkeeper import TokenCounter

Script = Callable[["RecordingChatModel", list[BaseMessage]], AIMessage]
"""``(model, messages) -> reply``: what the model answers to one request."""

USAGE_OFFSET = 3
"""Tokens the fake provider reports above the exact count (a small, known calibration error)."""

_COUNTER = TokenCounter("gpt-4o")


def current_turn(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages from the newest user message on."""
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return list(messages[i:])
    return []


def parallel_then_answer(model: RecordingChatModel, messages: list[BaseMessage]) -> AIMessage:
    """First two parallel tool calls, then (after their results) a short final answer.

    Without tools in the request it answers at once.
    """
    turn = current_turn(messages)
    names = model.tool_names
    if names and not any(isinstance(m, ToolMessage) for m in turn):
        return AIMessage(
            "",
            tool_calls=[
                {"name": names[0], "args": {"query": "first"}, "id": model.next_call_id()},
                {"name": names[-1], "args": {"query": "second"}, "id": model.next_call_id()},
            ],
        )
    question = turn[0].text if turn else ""
    return AIMessage(f"Here is what I found about {question[:40]!r}.")


def sequential_calls(n: int) -> Script:
    """Call the first tool ``n`` times, one after another, then answer."""

    def script(model: RecordingChatModel, messages: list[BaseMessage]) -> AIMessage:
        done = sum(isinstance(m, ToolMessage) for m in current_turn(messages))
        if done < n and model.tool_names:  # without tools a model can only answer
            name = model.tool_names[0]
            return AIMessage(
                "",
                tool_calls=[{"name": name, "args": {"step": done}, "id": model.next_call_id()}],
            )
        return AIMessage(f"Done after {done} tool calls.")

    return script


def plain_answer(model: RecordingChatModel, messages: list[BaseMessage]) -> AIMessage:
    """A text reply naming the request size (no tool calls)."""
    return AIMessage(f"Noted ({len(messages)} messages seen).")


class RecordingChatModel(BaseChatModel):
    """Replies by a script; records every request and the tools bound for it.

    ``usage_metadata["input_tokens"]`` is the request's exact gpt-4o count (tools included)
    plus :data:`USAGE_OFFSET`, as a provider would report it.
    """

    model_name: str | None = "gpt-4o"
    script: Script = parallel_then_answer
    report_usage: bool = True

    _requests: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _request_tools: list[list[dict[str, Any]]] = PrivateAttr(default_factory=list)
    _bound: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _ids: Any = PrivateAttr(default_factory=itertools.count)

    @property
    def _llm_type(self) -> str:
        return "recording-fake"

    @property
    def requests(self) -> list[list[BaseMessage]]:
        """Every list of messages received, in order."""
        return self._requests

    @property
    def request_tools(self) -> list[list[dict[str, Any]]]:
        """The OpenAI schemas of the tools bound for each request."""
        return self._request_tools

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools sent with the request being answered."""
        return [t["function"]["name"] for t in self._bound]

    def next_call_id(self) -> str:
        return f"call_{next(self._ids)}"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:  # type: ignore[override]
        """Like a provider's: the schemas travel with each call (an unbound call has none)."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._bound = list(kwargs.get("tools") or [])
        self._requests.append(list(messages))
        self._request_tools.append(self._bound)
        reply = self.script(self, list(messages))
        if self.report_usage:
            exact = _COUNTER.count_messages(to_core_messages(messages), tools=self._bound or None)
            reply.usage_metadata = {
                "input_tokens": exact + USAGE_OFFSET,
                "output_tokens": 10,
                "total_tokens": exact + USAGE_OFFSET + 10,
            }
        return ChatResult(generations=[ChatGeneration(message=reply)])
