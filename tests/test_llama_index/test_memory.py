"""The LlamaIndex memory, blocks and budgeted LLM inside LlamaIndex's own chat engines and agents.

A recording LLM stands in for the model: it keeps every request it receives, and each test checks
all of them: within budget by the core's exact count, every tool call with its result, the user's
message unchanged; after the run every turn is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.chat_engine import (
    CondensePlusContextChatEngine,
    ContextChatEngine,
    SimpleChatEngine,
)
from llama_index.core.chat_engine.condense_plus_context import DEFAULT_CONDENSE_PROMPT_TEMPLATE
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.memory import Memory
from llama_index.core.storage.chat_store import SimpleChatStore
from llama_index.core.storage.chat_store.sql import MessageStatus
from llama_index.core.tools import BaseTool, FunctionTool
from llama_index.core.workflow import Context, JsonSerializer
from llama_index.memory.windowkeeper import (
    BudgetedLLM,
    RecallBlock,
    SummaryBlock,
    WindowkeeperMemory,
    to_core_messages,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from windowkeeper import (
    Budget,
    BudgetExceededError,
    InvalidConfigError,
    InvalidMessageError,
    TokenCounter,
    validate_tool_pairs,
)

# LlamaIndex's workflows list a FunctionAgent's steps with inspect.getmembers, which touches
# every deprecated pydantic attribute (``__fields__``, ...): third-party, raised from inspect
pytestmark = pytest.mark.filterwarnings(
    "ignore::pydantic.warnings.PydanticDeprecationWarning:inspect"
)

COUNTER = TokenCounter("gpt-4o")
USER, ASSISTANT, TOOL = MessageRole.USER, MessageRole.ASSISTANT, MessageRole.TOOL
CLEARED = "[tool result cleared:"

WORDS = re.findall(
    r"\w+",
    "parcel depot invoice refund courier warehouse ticket label address customs pallet voucher "
    "carrier tracking route driver bundle return exchange dispatch quote freight insurance "
    "signature delivery window locker postcode manifest batch scanner",
)


def prose(seed: int, n_words: int) -> str:
    """Deterministic filler: ``n_words`` words picked by ``seed`` (no braces: templates format it)."""
    digest = hashlib.sha256(str(seed).encode()).digest()
    words = [WORDS[(digest[i % 32] + i * 7 + seed) % len(WORDS)] for i in range(n_words)]
    return " ".join(words) + "."


def tokens(messages: Sequence[ChatMessage], tools: Sequence[BaseTool] = ()) -> int:
    """The core's exact prompt count of a request (tool schemas included)."""
    schemas = [t.metadata.to_openai_tool() for t in tools] or None
    return COUNTER.count_messages(to_core_messages(messages), tools=schemas)


def assert_whole(messages: Sequence[ChatMessage]) -> None:
    """Every tool call in the request has its result and every result its call."""
    validate_tool_pairs(to_core_messages(messages), finished=True)


def last_user(messages: Sequence[ChatMessage]) -> ChatMessage:
    return next(m for m in reversed(messages) if m.role == USER)


# ---------------------------------------------------------------------------- the recording LLM

Responder = Callable[[list[ChatMessage]], ChatMessage]


def plain_replies() -> Responder:
    """Replies that quote the question's turn number, about 40 words each."""
    counter = itertools.count()

    def reply(messages: list[ChatMessage]) -> ChatMessage:
        n = next(counter)
        return ChatMessage(role=ASSISTANT, content=f"Reply {n}: {prose(10_000 + n, 40)}")

    return reply


class RecordingLLM(FunctionCallingLLM):
    """A function-calling LLM that records every request and answers from a script.

    ``requests`` holds each chat request's messages (as received) and ``tools`` the tools sent
    with it; ``prompts`` each completion prompt. ``usage`` makes replies report
    ``prompt_tokens`` in ``raw["usage"]`` (the exact count times ``usage_factor``).
    """

    window: int = 16_000
    usage: bool = False
    usage_factor: float = 1.0

    _responder: Responder = PrivateAttr()
    _requests: list[list[ChatMessage]] = PrivateAttr(default_factory=list)
    _tools: list[list[BaseTool]] = PrivateAttr(default_factory=list)
    _prompts: list[str] = PrivateAttr(default_factory=list)

    def __init__(self, responder: Responder | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._responder = responder or plain_replies()

    @property
    def requests(self) -> list[list[ChatMessage]]:
        return self._requests

    @property
    def tools(self) -> list[list[BaseTool]]:
        return self._tools

    @property
    def prompts(self) -> list[str]:
        return self._prompts

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.window,
            num_output=256,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name="recording",
        )

    def _respond(self, messages: Sequence[ChatMessage], tools: Any) -> ChatResponse:
        received = list(messages)
        self._requests.append(received)
        self._tools.append(list(tools or []))
        raw = None
        if self.usage:
            reported = round(tokens(received, self._tools[-1]) * self.usage_factor)
            raw = {"usage": {"prompt_tokens": reported, "completion_tokens": 5}}
        message = self._responder(received)
        return ChatResponse(message=message, raw=raw, delta=message.content)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._respond(messages, kwargs.get("tools"))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._respond(messages, kwargs.get("tools"))

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        response = self._respond(messages, kwargs.get("tools"))

        def gen() -> Generator[ChatResponse, None, None]:
            yield response

        return gen()

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        response = self._respond(messages, kwargs.get("tools"))

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            yield response

        return gen()

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._prompts.append(prompt)
        # a condensed question: the follow-up question as is
        follow_up = prompt.partition("Follow Up Input:")[2].strip().splitlines()
        return CompletionResponse(text=follow_up[0] if follow_up else prompt)

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return self.complete(prompt, formatted=formatted)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        response = self.complete(prompt, formatted=formatted)

        def gen() -> Generator[CompletionResponse, None, None]:
            yield response

        return gen()

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        response = self.complete(prompt, formatted=formatted)

        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            yield response

        return gen()

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        return {"messages": messages, "tools": list(tools)}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        calls = [
            ToolSelection(
                tool_id=b.tool_call_id or "", tool_name=b.tool_name, tool_kwargs=b.tool_kwargs
            )
            for b in response.message.blocks
            if isinstance(b, ToolCallBlock)
        ]
        if not calls and error_on_no_tool_call:
            raise ValueError("expected a tool call")
        return calls


# ---------------------------------------------------------------------------- agent script

RESULT_WORDS = 390  # about 400 tokens of tool result


def lookup_order(order_id: str) -> str:
    """Look up an order and return its full record."""
    return f"Order {order_id} record: {prose(hash_int(order_id), RESULT_WORDS)}"


def lookup_customer(name: str) -> str:
    """Look up a customer and return their full profile."""
    return f"Customer {name} profile: {prose(hash_int(name), RESULT_WORDS)}"


def hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def agent_script(loop_calls: int = 10) -> Responder:
    """Per user turn: two parallel tool calls, then a final answer.

    A user message containing ``dig`` instead calls ``lookup_order`` ``loop_calls`` times, one
    call per step, before answering.
    """
    ids = itertools.count()
    steps: dict[str, int] = {}

    def call(tool: str, **kwargs: str) -> ToolCallBlock:
        return ToolCallBlock(tool_call_id=f"call_{next(ids)}", tool_name=tool, tool_kwargs=kwargs)

    def reply(messages: list[ChatMessage]) -> ChatMessage:
        question = last_user(messages).content or ""
        step = steps[question] = steps.get(question, -1) + 1
        if "dig" in question:
            if step < loop_calls:
                return ChatMessage(
                    role=ASSISTANT, blocks=[call("lookup_order", order_id=f"D-{step}")]
                )
        elif step == 0:
            turn = question.split()[1]
            return ChatMessage(
                role=ASSISTANT,
                blocks=[
                    call("lookup_order", order_id=f"A-{turn}"),
                    call("lookup_customer", name=f"customer {turn}"),
                ],
            )
        return ChatMessage(role=ASSISTANT, content=f"Answer to '{question[:30]}': all checked.")

    return reply


def agent_tools() -> list[BaseTool]:
    return [FunctionTool.from_defaults(lookup_order), FunctionTool.from_defaults(lookup_customer)]


# ---------------------------------------------------------------------------- 1. SimpleChatEngine

MAX = 600


async def test_simple_chat_engine_200_turns_every_request_within_budget(tmp_path: Path) -> None:
    rec = RecordingLLM()
    memory = WindowkeeperMemory(
        session_id="simple", path=str(tmp_path / "m.db"), max_tokens=MAX, use_embeddings=False
    )
    engine = SimpleChatEngine.from_defaults(llm=rec, memory=memory)
    sent: list[str] = []
    replies: list[str] = []
    for i in range(200):
        question = f"Turn {i}: {prose(i, 25)}"
        sent.append(question)
        # sync and async turns alike (the sync ones inside this running event loop)
        response = engine.chat(question) if i % 2 == 0 else await engine.achat(question)
        replies.append(response.response)

    assert len(rec.requests) == 200
    longest = 0
    for question, request in zip(sent, rec.requests, strict=True):
        n = tokens(request)
        longest = max(longest, n)
        assert n <= MAX
        assert request[-1].role == USER
        assert request[-1].content == question
        assert_whole(request)
    assert longest > MAX * 0.8  # the budget was actually used, not an empty history

    stored = memory.get_all()
    assert [m.content for m in stored if m.role == USER] == sent
    assert [m.content for m in stored if m.role == ASSISTANT] == replies
    assert len(memory.core.units) == 200


# ---------------------------------------------------------------------------- 2. CondensePlusContext


class HashEmbedding(BaseEmbedding):
    """A deterministic bag-of-words embedding: each word hashed into one of 64 dimensions."""

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * 64
        for word in re.findall(r"\w+", text.lower()):
            vec[hash_int(word) % 64] += 1.0
        norm = sum(v * v for v in vec) ** 0.5 or 1.0
        return [v / norm for v in vec]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


async def test_condense_plus_context_chat_engine_history_within_budget(tmp_path: Path) -> None:
    documents = [
        Document(text=f"Product {i} (SKU-{i}) costs {10 + i} euros. {prose(500 + i, 30)}")
        for i in range(12)
    ]
    embed = HashEmbedding()
    index = VectorStoreIndex.from_documents(documents, embed_model=embed)
    rec = RecordingLLM()
    memory = WindowkeeperMemory(  # the index's LlamaIndex embedding serves recall too
        session_id="rag", path=str(tmp_path / "m.db"), max_tokens=MAX, embed_model=embed
    )
    engine = CondensePlusContextChatEngine.from_defaults(
        retriever=index.as_retriever(similarity_top_k=2), llm=rec, memory=memory
    )
    sent: list[str] = []
    replies: list[str] = []
    sources: list[list[str]] = []
    for i in range(36):
        question = f"Question {i}: what does product {i % 12} cost, and {prose(i, 20)}"
        sent.append(question)
        response = engine.chat(question) if i % 2 == 0 else await engine.achat(question)
        replies.append(response.response)
        sources.append([n.node.get_content() for n in response.source_nodes])

    assert len(rec.requests) == 36  # one synthesis call per turn (the context fits)
    for question, request, nodes in zip(sent, rec.requests, sources, strict=True):
        system, history, asked = request[0], request[1:-1], request[-1]
        assert system.role == MessageRole.SYSTEM
        assert nodes
        assert all(text in (system.content or "") for text in nodes)  # the retrieved context
        assert asked.role == USER
        assert asked.content == question
        assert tokens(history) <= MAX  # what the memory gave, as a request of its own
        assert tokens(request) <= MAX + tokens([system, asked])
        assert_whole(request)
    # the condense prompts carry that same bounded history as text
    assert len(rec.prompts) == 35  # from the second turn on
    for question, prompt in zip(sent[1:], rec.prompts, strict=True):
        bare = DEFAULT_CONDENSE_PROMPT_TEMPLATE.format(chat_history="", question=question)
        assert question in prompt
        assert COUNTER.count(prompt) <= COUNTER.count(bare) + MAX

    stored = memory.get_all()
    assert [m.content for m in stored if m.role == USER] == sent
    assert [m.content for m in stored if m.role == ASSISTANT] == replies
    assert len(memory.core.units) == 36


async def test_context_chat_engine_history_within_budget(tmp_path: Path) -> None:
    documents = [
        Document(text=f"Product {i} costs {10 + i} euros. {prose(i, 20)}") for i in range(8)
    ]
    embed = HashEmbedding()
    index = VectorStoreIndex.from_documents(documents, embed_model=embed)
    rec = RecordingLLM()
    memory = WindowkeeperMemory(
        session_id="ctx", path=str(tmp_path / "m.db"), max_tokens=MAX, use_embeddings=False
    )
    engine = ContextChatEngine.from_defaults(
        retriever=index.as_retriever(similarity_top_k=2), llm=rec, memory=memory
    )
    sent = [f"Question {i}: what does product {i % 8} cost, and {prose(i, 20)}" for i in range(30)]
    for i, question in enumerate(sent):
        _ = engine.chat(question) if i % 2 == 0 else await engine.achat(question)
    assert len(rec.requests) == 30
    for question, request in zip(sent, rec.requests, strict=True):
        assert request[-1].content == question  # the user's message verbatim, last
        history = [m for m in request[:-1] if m.role != MessageRole.SYSTEM]
        assert tokens(history) <= MAX
        assert_whole(request)
    assert [m.content for m in memory.get_all() if m.role == USER] == sent
    assert len(memory.core.units) == 30


# ---------------------------------------------------------------------------- 3. FunctionAgent

AGENT_BUDGET = Budget(context_window=4000, generation_reserve=500)
SYSTEM_PROMPT = "You are a support agent. Look orders and customers up before answering."


async def test_function_agent_every_request_within_budget_tool_loop_included(
    tmp_path: Path,
) -> None:
    rec = RecordingLLM(agent_script(loop_calls=10))
    llm = BudgetedLLM(llm=rec, budget=AGENT_BUDGET)
    tools = agent_tools()
    agent = FunctionAgent(tools=tools, llm=llm, system_prompt=SYSTEM_PROMPT)
    memory = WindowkeeperMemory(
        session_id="agent", path=str(tmp_path / "m.db"), max_tokens=1500, use_embeddings=False
    )
    limit = AGENT_BUDGET.context_window - AGENT_BUDGET.generation_reserve
    sent: list[str] = []
    per_turn: list[list[list[ChatMessage]]] = []
    for i in range(200):
        question = f"Turn {i}: " + ("dig through every order" if i == 50 else prose(i, 15))
        sent.append(question)
        before = len(rec.requests)
        result = await agent.run(question, memory=memory)
        per_turn.append(rec.requests[before:])
        assert "all checked" in str(result)

    assert sum(len(r) for r in per_turn) == len(rec.requests) == 199 * 2 + 11
    for question, requests in zip(sent, per_turn, strict=True):
        for request in requests:
            assert tokens(request, tools) <= limit
            assert request[0].role == MessageRole.SYSTEM
            assert request[0].content == SYSTEM_PROMPT
            assert last_user(request).content == question  # the user's message verbatim
            assert_whole(request)
    assert all(tools_sent == tools for tools_sent in rec.tools)

    # the long loop of turn 50 outgrew the window: its older results were cleared, pair-safely
    loop = per_turn[50]
    assert len(loop) == 11
    cleared = [m for m in loop[-1] if m.role == TOOL and (m.content or "").startswith(CLEARED)]
    assert cleared
    assert all(m.additional_kwargs.get("tool_call_id") for m in cleared)
    newest = loop[-1][-1]
    assert newest.role == TOOL
    assert (newest.content or "").startswith("Order D-9 record:")

    # every turn stored, whole and uncleared
    stored = memory.get_all()
    assert [m.content for m in stored if m.role == USER] == sent
    assert len(memory.core.units) == 200
    assert_whole(stored)
    results = [m for m in stored if m.role == TOOL]
    assert len(results) == 199 * 2 + 10
    assert not any(CLEARED in (m.content or "") for m in results)


# ---------------------------------------------------------------------------- 4. sync in a loop


def user(text: str) -> ChatMessage:
    return ChatMessage(role=USER, content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role=ASSISTANT, content=text)


def texts(messages: Sequence[ChatMessage]) -> list[str | None]:
    return [m.content for m in messages]


async def test_sync_methods_work_inside_a_running_event_loop(tmp_path: Path) -> None:
    memory = WindowkeeperMemory(session_id="loop", path=str(tmp_path / "m.db"), strategy="window")
    memory.put(user("Order A-17?"))
    assert texts(memory.get()) == ["Order A-17?"]  # the turn in progress
    memory.put(assistant("It ships today."))
    assert texts(memory.get()) == ["Order A-17?", "It ships today."]
    memory.put_messages([user("And B-2?"), assistant("Tomorrow.")])
    await memory.aput_messages([user("Thanks!"), assistant("You're welcome.")])
    expected = ["Order A-17?", "It ships today.", "And B-2?", "Tomorrow.", "Thanks!"]
    expected.append("You're welcome.")
    assert texts(memory.get()) == texts(await memory.aget()) == expected
    assert texts(memory.get_all()) == texts(await memory.aget_all()) == expected
    assert len(memory.core.units) == 3

    memory.set([user("Fresh start?"), assistant("Yes.")])
    assert texts(memory.get()) == ["Fresh start?", "Yes."]
    memory.reset()
    assert memory.get() == []
    assert memory.get_all() == []
    await memory.aset([user("Async set?"), assistant("Also fine.")])
    assert texts(memory.get()) == ["Async set?", "Also fine."]
    await memory.areset()
    assert await memory.aget() == []


# ---------------------------------------------------------------------------- 5. persistence


def ann_turns(start: int, stop: int) -> list[ChatMessage]:
    return [
        m
        for i in range(start, stop)
        for m in (user(f"Ann {i}: {prose(i, 12)}"), assistant(f"Ann reply {i}."))
    ]


def test_a_restart_continues_the_conversation_and_sessions_never_mix(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")

    def open_memory(session_id: str, **kwargs: Any) -> WindowkeeperMemory:
        return WindowkeeperMemory(
            session_id=session_id, path=db, max_tokens=3000, use_embeddings=False, **kwargs
        )

    ann = open_memory("ann")
    ann.put_messages(ann_turns(0, 6))
    bob = open_memory("bob")
    assert bob.get() == []
    assert bob.get_all() == []
    bob.put_messages([user("Bob here: my locker code is 9902."), assistant("Noted, Bob.")])
    del ann, bob

    # a new process: the same file, the same sessions
    ann = open_memory("ann")
    assert texts(ann.get_all()) == texts(ann_turns(0, 6))
    assert texts(ann.get()) == texts(ann_turns(0, 6))
    assert len(ann.core.units) == 6
    for question in ("What is my locker code?", "Bob here"):
        assert not any("9902" in (m.content or "") for m in ann.get(question))
    bob = open_memory("bob")
    assert texts(bob.get_all()) == ["Bob here: my locker code is 9902.", "Noted, Bob."]
    assert not any("Ann" in (m.content or "") for m in bob.get("Ann 3"))

    # it continues where it stopped, and a window memory on the file sees the same turns
    ann.put_messages(ann_turns(6, 8))
    assert texts(open_memory("ann", strategy="window").get()) == texts(ann_turns(0, 8))

    # reset() continues in a fresh session, which a restart finds once a turn is stored in it
    ann.reset()
    ann.put_messages([user("New topic?"), assistant("Sure.")])
    again = open_memory("ann")
    assert texts(again.get_all()) == ["New topic?", "Sure."]
    assert texts(open_memory("bob").get_all()) == texts(bob.get_all())


# ---------------------------------------------------------------------------- 6. a LlamaIndex chat store


def tool_turn(call_id: str) -> list[ChatMessage]:
    return [
        user("Where is order A-17?"),
        ChatMessage(
            role=ASSISTANT,
            blocks=[
                ToolCallBlock(
                    tool_call_id=call_id, tool_name="lookup_order", tool_kwargs={"order_id": "A-17"}
                )
            ],
        ),
        ChatMessage(
            role=TOOL, content="A-17: shipped Monday.", additional_kwargs={"tool_call_id": call_id}
        ),
        assistant("A-17 shipped on Monday."),
    ]


def test_a_chat_store_gets_every_message_and_a_new_memory_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the default SQLite file would land
    store = SimpleChatStore()
    memory = WindowkeeperMemory(
        session_id="ann", chat_store=store, max_tokens=3000, use_embeddings=False
    )
    written: list[ChatMessage] = []
    for message in [*ann_turns(0, 3), *tool_turn("call_1")]:
        memory.put(message)
        written.append(message)
        assert store.get_messages("ann") == written  # at once, a turn in progress too
    memory.put(user("One more thing:"))  # a turn in progress when the process stops
    written.append(user("One more thing:"))
    assert store.get_messages("ann") == written
    assert not (tmp_path / "windowkeeper_memory.db").exists()

    # the store written to a file and read back: a new memory continues, the tool turn whole
    # (by hand: SimpleChatStore.persist fails under this pydantic, "'index_key' is expected to
    # be an integer or a string", in LlamaIndex's own chat_message_serialization)
    path = tmp_path / "chat_store.json"
    dumped = {k: [m.model_dump(mode="json") for m in v] for k, v in store.store.items()}
    path.write_text(json.dumps(dumped), encoding="utf-8")
    restored = SimpleChatStore()
    for key, items in json.loads(path.read_text(encoding="utf-8")).items():
        restored.set_messages(key, [ChatMessage.model_validate(d) for d in items])
    again = WindowkeeperMemory(
        session_id="ann", chat_store=restored, max_tokens=3000, use_embeddings=False
    )
    assert texts(again.get_all()) == texts(written)
    got = again.get()
    assert texts(got) == texts(written)
    assert_whole(got)
    assert got[-1].content == "One more thing:"
    again.put(assistant("Go ahead."))
    assert texts(restored.get_messages("ann")) == [*texts(written), "Go ahead."]
    assert len(again.core.units) == 5

    # its own key in a shared store
    other = WindowkeeperMemory(
        session_id="bob", chat_store=store, chat_store_key="bob-key", strategy="window"
    )
    other.put_messages([user("Bob's question"), assistant("Bob's answer")])
    assert texts(store.get_messages("bob-key")) == ["Bob's question", "Bob's answer"]
    assert store.get_messages("ann") == written
    assert not any("Bob" in (m.content or "") for m in memory.get_all())


# ---------------------------------------------------------------------------- 7. Context round trip


async def test_the_memory_survives_workflow_context_serialisation(tmp_path: Path) -> None:
    rec = RecordingLLM(agent_script())
    tools = agent_tools()
    agent = FunctionAgent(
        tools=tools,
        llm=BudgetedLLM(llm=rec, budget=AGENT_BUDGET),
        system_prompt=SYSTEM_PROMPT,
        streaming=False,  # the achat_with_tools path (the other test streams)
    )
    db = str(tmp_path / "m.db")
    memory = WindowkeeperMemory(session_id="ctx", path=db, max_tokens=1500, use_embeddings=False)
    ctx = Context(agent)
    await agent.run(user_msg="Turn 0: where is my parcel", ctx=ctx, memory=memory)

    data = json.loads(json.dumps(ctx.to_dict(serializer=JsonSerializer())))
    restored = Context.from_dict(agent, data, serializer=JsonSerializer())
    again = await restored.store.get("memory")
    assert isinstance(again, WindowkeeperMemory)
    assert again is not memory
    assert (again.session_id, again.path, again.max_tokens) == ("ctx", db, 1500)
    assert [m.content for m in again.get_all() if m.role == USER] == ["Turn 0: where is my parcel"]

    await agent.run(user_msg="Turn 1: and my refund", ctx=restored)
    assert len(rec.requests) == 4
    limit = AGENT_BUDGET.context_window - AGENT_BUDGET.generation_reserve
    for request in rec.requests:
        assert tokens(request, tools) <= limit
        assert_whole(request)
    assert "Turn 0: where is my parcel" in texts(rec.requests[-1])  # the history came along
    reopened = WindowkeeperMemory(session_id="ctx", path=db, use_embeddings=False)
    assert [m.content for m in reopened.get_all() if m.role == USER] == [
        "Turn 0: where is my parcel",
        "Turn 1: and my refund",
    ]


# ---------------------------------------------------------------------------- 8. memory blocks

FACT = "My locker code is 4471 and my cat is called Miso."


async def fill(memory: Memory, fact: str, turns: int = 30) -> None:
    """An old fact, then enough turns that LlamaIndex's Memory flushes it to the blocks."""
    await memory.aput_messages([user(fact), assistant("Noted.")])
    for i in range(turns):
        await memory.aput_messages(
            [user(f"Turn {i}: {prose(i, 20)}"), assistant(f"Reply {i}: {prose(100 + i, 20)}")]
        )


def memory_text(messages: Sequence[ChatMessage]) -> str:
    """The text LlamaIndex's Memory put in front of the history (its first system message)."""
    assert messages[0].role == MessageRole.SYSTEM
    return messages[0].content or ""


LiMemory = Callable[..., Memory]


@pytest.fixture
async def li_memory() -> AsyncGenerator[LiMemory, None]:
    """LlamaIndex ``Memory`` objects on in-memory SQLite engines closed after the test."""
    engines: list[AsyncEngine] = []

    def make(session_id: str, *blocks: Any) -> Memory:
        engines.append(create_async_engine("sqlite+aiosqlite:///:memory:"))
        return Memory.from_defaults(
            session_id=session_id,
            token_limit=800,
            chat_history_token_ratio=0.5,
            token_flush_size=100,
            memory_blocks=list(blocks),
            async_engine=engines[-1],
        )

    yield make
    for engine in engines:
        await engine.dispose()


async def test_summary_block_text_is_in_aget_at_once_and_never_waited_for(
    li_memory: LiMemory,
) -> None:
    gate = threading.Event()
    asked: list[list[ChatMessage]] = []

    def notes(messages: list[ChatMessage]) -> ChatMessage:
        asked.append(messages)
        gate.wait(10)  # the summariser is busy until the test lets it go
        return assistant("NOTES: the locker code is 4471; the cat is Miso.")

    # the block also has a session_id of its own (used when Memory passes none)
    summary = SummaryBlock(
        name="summary", max_tokens=200, session_id="ann", llm=RecordingLLM(notes)
    )
    memory = li_memory("ann", summary)
    try:
        await fill(memory, FACT)
        got = await memory.aget()  # returns while the summariser is still busy
        assert asked
        text = await summary.aget(got, session_id="ann")
        assert text
        assert text in memory_text(got)
        assert "<summary>" in memory_text(got)
        assert "NOTES" not in memory_text(got)
    finally:
        gate.set()
    for _ in range(100):  # the notes land in the background
        got = await memory.aget()
        if "NOTES: the locker code is 4471" in memory_text(got):
            break
        await asyncio.sleep(0.05)
    assert "NOTES: the locker code is 4471" in memory_text(got)
    assert COUNTER.count(await summary.aget(got, session_id="ann")) <= 200


async def test_recall_block_recalls_an_old_turn_for_a_question_about_it(
    li_memory: LiMemory,
) -> None:
    # the block also has a session_id of its own (used when Memory passes none)
    recall = RecallBlock(name="recall", use_embeddings=False, max_tokens=300, session_id="ann")
    memory = li_memory("ann", recall)
    await fill(memory, FACT)
    active = await memory.aget_all(status=MessageStatus.ACTIVE)
    assert all(FACT not in (m.content or "") for m in active)  # flushed to the block
    got = await memory.aget(input="What was my locker code again?")
    text = memory_text(got)
    assert "<recall>" in text
    assert FACT in text  # the whole turn
    assert COUNTER.count(await recall.aget(got, session_id="ann")) <= 300
    # atruncate shortens by at least what is asked, or drops the block
    block = await recall.aget(got, session_id="ann")
    shorter = await recall.atruncate(block, 100)
    assert shorter is not None
    assert COUNTER.count(shorter) <= COUNTER.count(block) - 100
    assert await recall.atruncate(block, COUNTER.count(block)) is None


async def test_blocks_shared_by_two_sessions_never_see_each_others_turns(
    li_memory: LiMemory,
) -> None:
    recall = RecallBlock(name="recall", use_embeddings=False, max_tokens=300)
    ann, bob = li_memory("ann", recall), li_memory("bob", recall)
    await fill(ann, "My locker code is 4471.")
    await fill(bob, "My locker code is 9902.")
    ann_text = memory_text(await ann.aget(input="What is my locker code?"))
    bob_text = memory_text(await bob.aget(input="What is my locker code?"))
    assert "4471" in ann_text
    assert "9902" not in ann_text
    assert "9902" in bob_text
    assert "4471" not in bob_text


# ---------------------------------------------------------------------------- 9. bad input


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"max_tokens": 0}, ["max_tokens", "0"]),
        ({"max_tokens": "600"}, ["max_tokens", "'600'"]),
        ({"strategy": "nope"}, ["strategy", "'nope'", "window"]),
        ({"chat_store": "x"}, ["chat_store", "str"]),
        ({"llm": "x"}, ["llm", "str"]),
        ({"embed_model": "x"}, ["embed_model", "str"]),
        ({"session_id": ""}, ["session_id", "''"]),
    ],
)
def test_bad_settings_get_a_typed_error_naming_them(
    tmp_path: Path, kwargs: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(InvalidConfigError) as info:
        WindowkeeperMemory(path=str(tmp_path / "m.db"), **kwargs)
    assert all(name in str(info.value) for name in names)
    with pytest.raises(InvalidConfigError):
        WindowkeeperMemory.from_defaults(path=str(tmp_path / "m.db"), **kwargs)


def test_bad_llm_and_blocks_get_a_typed_error_naming_them() -> None:
    with pytest.raises(InvalidConfigError, match=r"llm .*str"):
        BudgetedLLM(llm="x")
    with pytest.raises(InvalidConfigError, match=r"budget .*int"):
        BudgetedLLM(llm=RecordingLLM(), budget=4000)
    for block in (SummaryBlock, RecallBlock):
        with pytest.raises(InvalidConfigError, match=r"max_tokens .*0"):
            block(name="b", max_tokens=0)


def test_putting_what_is_not_a_chat_message_gets_a_typed_error_and_writes_nothing(
    tmp_path: Path,
) -> None:
    store = SimpleChatStore()
    memory = WindowkeeperMemory(session_id="ann", chat_store=store, strategy="window")
    memory.put_messages([user("Hi"), assistant("Hello")])
    with pytest.raises(InvalidMessageError, match="str"):
        memory.put("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="dict") as info:
        memory.put_messages([user("ok"), {"role": "user", "content": "no"}])  # type: ignore[list-item]
    assert "1" in str(info.value)  # the position
    with pytest.raises(InvalidMessageError, match="str"):
        memory.set([user("ok"), "no"])  # type: ignore[list-item]
    assert texts(store.get_messages("ann")) == ["Hi", "Hello"]
    assert texts(memory.get_all()) == ["Hi", "Hello"]


# ---------------------------------------------------------------------------- 10. calibration


async def test_budgeted_llm_feeds_provider_usage_to_calibration() -> None:
    rec = RecordingLLM(usage=True, usage_factor=1.1)
    llm = BudgetedLLM(llm=rec, budget=Budget(context_window=4000, generation_reserve=500))
    assert llm.counter.calibration.stats().observations == 0
    for i in range(3):
        llm.chat([user(f"Question {i}: {prose(i, 40)}")])
    await llm.achat([user("One more question, asked asynchronously.")])
    stats = llm.counter.calibration.stats()
    assert stats.observations == 4
    assert stats.factor == pytest.approx(1.1, rel=0.02)
    assert llm.last_report is not None
    assert llm.last_report.prompt_tokens == tokens(rec.requests[-1])
    assert COUNTER.calibration.stats().observations == 0  # nothing shared with other counters


def test_budgeted_llm_compresses_an_oversized_system_prompt_when_allowed() -> None:
    """``compress_zones=("system",)``: the request fits instead of failing; the user's text stays."""
    from tests.test_windowkeeper.test_assembler_compressor import RateCompressor

    long_system = SYSTEM_PROMPT + " Always be polite, precise and brief in every answer." * 150
    request = [
        ChatMessage(role=MessageRole.SYSTEM, content=long_system),
        ChatMessage(role=MessageRole.USER, content="Where is order A-12345?"),
    ]
    small = Budget(context_window=1200, generation_reserve=200)
    with pytest.raises(BudgetExceededError):
        BudgetedLLM(llm=RecordingLLM(), budget=small).chat(request)
    fake = RateCompressor()
    rec = RecordingLLM()
    llm = BudgetedLLM(llm=rec, budget=small, compressor=fake, compress_zones=("system",))
    for _ in range(2):
        llm.chat(request)
    sent = rec.requests[-1]
    assert sent[0].role == MessageRole.SYSTEM
    assert sent[0].content != long_system
    assert sent[1] is request[1]  # the user's message: the very object passed in
    assert tokens(sent, []) <= 1000
    assert rec.requests[0][0].content == sent[0].content  # cached: a byte-stable prefix
    assert len(fake.calls) == 1
    with pytest.raises(InvalidConfigError, match="compress_zones must be a collection of"):
        BudgetedLLM(llm=rec, compressor=fake, compress_zones=("user",))
    with pytest.raises(InvalidConfigError, match="compressor must have compress"):
        BudgetedLLM(llm=rec, compressor=object())


def test_budgeted_llm_sends_only_the_tools_it_budgeted_with() -> None:
    """A tools zone too small for every tool: the request carries the tools that were counted."""
    tools = agent_tools()
    one = tokens([ChatMessage(role=MessageRole.USER, content="hi")], tools[:1])
    bare = tokens([ChatMessage(role=MessageRole.USER, content="hi")])
    budget = Budget(
        context_window=4000, generation_reserve=500, zone_limits={"tools": one - bare + 2}
    )
    rec = RecordingLLM()
    llm = BudgetedLLM(llm=rec, budget=budget)
    llm.chat_with_tools(tools, user_msg="Where is order D-1?")
    assert len(rec.tools[-1]) == 1  # the other tool did not fit its zone: not sent
    assert llm.last_report.zones["tools"] <= one - bare + 2
    with pytest.raises(InvalidConfigError, match="must not include 'tools' for BudgetedLLM"):
        BudgetedLLM(llm=rec, compress_zones=("rag", "tools"))
