"""The LangChain face: a real ``create_agent`` agent with ``WindowkeeperMiddleware``, offline.

The support transcript in ``examples/transcripts/support_agent.json`` is replayed through
LangChain's own agent loop: its tools run through LangGraph's tool node and its turns are kept by
an ``InMemorySaver`` checkpointer. The chat model is SCRIPTED: it stands in for your provider and
answers with the transcript's recorded assistant messages (tool calls included), so the run needs
no network and no API key. Everything else is real: the agent, the checkpointer, the middleware,
exact counts, layered memory with fact notes and the embedded MiniLM.

Run:  uv run python examples/langchain_agent.py [--budget 8000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import StructuredTool
from langchain_windowkeeper import WindowkeeperMiddleware, to_langchain
from langgraph.checkpoint.memory import InMemorySaver
from windowkeeper import Budget

TRANSCRIPT = Path(__file__).parent / "transcripts" / "support_agent.json"


class ScriptedModel(BaseChatModel):
    """Stands in for your provider: returns the transcript's assistant messages in order."""

    replies: list[AIMessage]
    position: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-transcript"

    @property
    def model_name(self) -> str:
        return "gpt-4o"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self.replies[self.position]
        self.position += 1
        return ChatResult(generations=[ChatGeneration(message=reply)])


def load() -> tuple[str, list[dict[str, Any]], list[list[dict[str, Any]]], dict[str, str]]:
    """System prompt, tool schemas, user turns (each: the user message and what answered it)."""
    data = json.loads(TRANSCRIPT.read_text(encoding="utf-8"))
    messages = [m for m in data["messages"] if (m.get("metadata") or {}).get("zone") != "rag"]
    system = messages[0]["content"]
    turns: list[list[dict[str, Any]]] = []
    for m in messages[1:]:
        if m["role"] == "user":
            turns.append([m])
        elif turns:
            turns[-1].append(m)
    results = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    return system, data["tools"], turns, results


def recorded_tools(
    schemas: list[dict[str, Any]], turns: list[list[dict[str, Any]]], results: dict[str, str]
) -> list[StructuredTool]:
    """Tools that answer with the transcript's recorded results for the same arguments."""
    answers: dict[tuple[str, str], str] = {}
    for turn in turns:
        for m in turn:
            for call in m.get("tool_calls") or []:
                f = call["function"]
                key = (f["name"], json.dumps(json.loads(f["arguments"]), sort_keys=True))
                answers[key] = results[call["id"]]

    def make(schema: dict[str, Any]) -> StructuredTool:
        name = schema["function"]["name"]

        def run(**kwargs: Any) -> str:
            return answers.get((name, json.dumps(kwargs, sort_keys=True)), '{"error": "not found"}')

        return StructuredTool.from_function(
            run,
            name=name,
            description=schema["function"]["description"],
            args_schema=schema["function"]["parameters"],
        )

    return [make(s) for s in schemas]


def replies(turns: list[list[dict[str, Any]]]) -> Iterator[AIMessage]:
    for turn in turns:
        for m in turn:
            if m["role"] == "assistant":
                message = to_langchain(m)
                assert isinstance(message, AIMessage)
                yield message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=8000, help="context window to budget for")
    args = parser.parse_args()
    system, schemas, turns, results = load()
    middleware = WindowkeeperMiddleware(
        "gpt-4o",
        budget=Budget(context_window=args.budget, generation_reserve=800),
        memory="layered",
        recent_units=3,
        min_batch=2,
    )
    agent = create_agent(
        ScriptedModel(replies=list(replies(turns))),
        tools=recorded_tools(schemas, turns, results),
        system_prompt=system,
        middleware=[middleware],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "support-1"}}
    print(f"create_agent + WindowkeeperMiddleware, window {args.budget:,} tokens (scripted model)")
    print(
        f"{'turn':>4} {'prompt':>7} {'util':>6} {'level':>6} {'history':>8} {'summary':>8} {'ms':>6}"
    )
    state: dict[str, Any] = {}
    for i, turn in enumerate(turns):
        start = time.perf_counter()
        state = agent.invoke({"messages": [("user", turn[0]["content"])]}, config)
        took = (time.perf_counter() - start) * 1000
        record = state["windowkeeper"]
        report = record["report"]
        print(
            f"{i:>4} {report['prompt_tokens']:>7,} {report['utilization']:>6.1%} "
            f"{report['level']:>6} {report['zones']['history']:>8,} "
            f"{record['summary_covers']:>8} {took:>6.0f}"
        )
    memory = middleware.engine.memory("support-1")
    print(
        f"\nstored turns: {len(memory)}; checkpointed messages: {len(state['messages'])} (never erased)"
    )
    flush = getattr(memory, "flush", None)
    if callable(flush):
        flush(timeout=30)
    view = memory.view("refund for the headphones", budget=1500)
    print(f"summary now covers turns 0-{view.summary_covers - 1}:")
    print("  " + view.summary.replace("\n", "\n  ")[:600])
    print("last request dropped:", [d["what"] for d in state["windowkeeper"]["report"]["dropped"]])
    close = getattr(memory, "close", None)
    if callable(close):
        close()


if __name__ == "__main__":
    main()
