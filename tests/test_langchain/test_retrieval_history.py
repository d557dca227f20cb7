"""Retrieval, chat history and embeddings, each inside the LangChain object that uses it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_classic.retrievers.document_compressors import DocumentCompressorPipeline
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import (
    AIMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_tests.integration_tests import RetrieversIntegrationTests
from langchain_windowkeeper import (
    BudgetedPrompt,
    LangChainEmbedder,
    TurnRecallRetriever,
    WindowkeeperChatMessageHistory,
    WindowkeeperDocumentCompressor,
    WindowkeeperEmbeddings,
    to_core_messages,
)
from windowkeeper import (
    Budget,
    InvalidConfigError,
    InvalidMessageError,
    LayeredMemory,
    MemoryStore,
    TokenCounter,
    TurnRecall,
    WindowMemory,
)

COUNTER = TokenCounter("gpt-4o")
FACTS = [
    ("My dog is called Biscuit.", "Lovely name."),
    ("I live in Oslo, near the harbour.", "Noted."),
    ("Order A-17 is a blue kettle.", "I see order A-17."),
    ("Please ship to my office on Monday.", "Monday it is."),
    ("My sister Ann visits in May.", "How nice."),
    ("The kettle arrived dented.", "Sorry, a refund is on its way."),
]


def recall_memory(session_id: str) -> TurnRecall:
    memory = TurnRecall(COUNTER, session_id=session_id, recent_units=0)  # embedded MiniLM + BM25
    for q, a in FACTS:
        memory.add(
            [HumanMessage(q), AIMessage(a)] and to_core_messages([HumanMessage(q), AIMessage(a)])
        )
    memory.flush()
    return memory


MEMORY = recall_memory("ann")


class TestTurnRecallRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return TurnRecallRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"memory": MEMORY, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "what is my dog called?"


class TestTurnRecallRetriever:
    def test_finds_the_turn_and_names_it(self) -> None:
        docs = TurnRecallRetriever(memory=MEMORY, k=1).invoke("what is my dog called?")
        assert docs[0].id == "ann:0"
        assert "Biscuit" in docs[0].page_content
        assert docs[0].metadata["session_id"] == "ann"

    def test_sessions_never_mix(self) -> None:
        other = TurnRecall(COUNTER, embedder=None, session_id="bob", store=MemoryStore())
        other.add(to_core_messages([HumanMessage("My cat is Pixel."), AIMessage("Cute.")]))
        docs = TurnRecallRetriever(memory=other, k=4).invoke("what is my dog called?")
        assert all(d.metadata["session_id"] == "bob" for d in docs)
        assert all("Biscuit" not in d.page_content for d in docs)

    def test_skip_recent_and_bad_input(self) -> None:
        docs = TurnRecallRetriever(memory=MEMORY, k=6, skip_recent=2).invoke("kettle")
        assert {d.metadata["unit"] for d in docs} <= {0, 1, 2, 3}
        with pytest.raises(InvalidConfigError, match="recall index"):
            TurnRecallRetriever(memory=WindowMemory(COUNTER))
        with pytest.raises(InvalidConfigError, match="k must be"):
            TurnRecallRetriever(memory=MEMORY, k=0)


class ListRetriever(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.docs)


DOCS = [
    Document("Refunds are paid within 5 working days.", id="refunds"),
    Document("Shipping is free for orders over 50 EUR.", id="shipping"),
    Document("Our office dog is called Biscuit. " * 30, id="dog"),
    Document("Returns need the order id, e.g. A-17.", id="returns"),
]


class TestDocumentCompressor:
    def test_inside_contextual_compression_retriever(self) -> None:
        compressor = WindowkeeperDocumentCompressor(max_tokens=80)
        retriever = ContextualCompressionRetriever(
            base_compressor=compressor, base_retriever=ListRetriever(docs=DOCS)
        )
        out = retriever.invoke("how long do refunds take?")
        assert [d.id for d in out] == ["returns", "shipping", "refunds"]  # best (rank 1) last
        total = sum(COUNTER.count(d.page_content) for d in out)
        assert total <= 80
        assert out[-1].metadata["windowkeeper_rank"] == 0
        assert "windowkeeper_rank" not in DOCS[0].metadata  # originals untouched

    def test_scores_beat_order_and_question_first(self) -> None:
        scored = [
            Document("low", metadata={"relevance_score": 0.1}),
            Document("high", metadata={"relevance_score": 0.9}),
            Document("mid", metadata={"relevance_score": 0.5}),
        ]
        after = WindowkeeperDocumentCompressor(max_tokens=500).compress_documents(scored, "q")
        assert [d.page_content for d in after] == ["low", "mid", "high"]
        first = WindowkeeperDocumentCompressor(max_tokens=500, question_first=True)
        assert [d.page_content for d in first.compress_documents(scored, "q")] == [
            "high",
            "mid",
            "low",
        ]

    def test_in_a_pipeline_and_bad_input(self) -> None:
        pipeline = DocumentCompressorPipeline(
            transformers=[WindowkeeperDocumentCompressor(max_tokens=40)]
        )
        out = pipeline.compress_documents(DOCS, "refund")
        assert 1 <= len(out) < len(DOCS)
        with pytest.raises(InvalidConfigError, match="max_tokens"):
            WindowkeeperDocumentCompressor(max_tokens=0)


class TestBudgetedPrompt:
    def test_fits_documents_and_history(self) -> None:
        history = []
        for i in range(40):
            history += [HumanMessage(f"question {i} " * 10), AIMessage(f"answer {i} " * 10)]
        prompt = BudgetedPrompt(
            Budget(context_window=1_000, generation_reserve=200),
            system="Answer from the documents.",
        )
        value = prompt.invoke({"question": "refunds?", "documents": DOCS, "history": history})
        messages = value.to_messages()
        assert isinstance(messages[0], SystemMessage)
        assert messages[-1].content == "refunds?"
        assert COUNTER.count_messages(to_core_messages(messages)) <= 800
        assert prompt.last_report.prompt_tokens <= 800
        assert "refunds" in messages[-2].content.lower()  # the best document next to the question

    def test_with_a_memory_per_session_and_bad_input(self) -> None:
        store = MemoryStore()
        prompt = BudgetedPrompt(
            Budget(context_window=2_000, generation_reserve=200),
            memory=lambda sid: WindowMemory(COUNTER, store=store, session_id=sid),
        )
        memory = WindowMemory(COUNTER, store=store, session_id="s1")
        memory.add(to_core_messages([HumanMessage("My dog is Biscuit."), AIMessage("Nice.")]))
        value = prompt.invoke({"question": "dog?", "session_id": "s1"})
        assert any("Biscuit" in m.text for m in value.to_messages())
        with pytest.raises(InvalidConfigError, match="question"):
            prompt.invoke({"documents": []})


def chain(history_factory: Any, answers: list[str]) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are helpful."), MessagesPlaceholder("history"), ("human", "{input}")]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return RunnableWithMessageHistory(
            prompt | FakeListChatModel(responses=answers),
            history_factory,
            input_messages_key="input",
            history_messages_key="history",
        )


def invoke(runnable: RunnableWithMessageHistory, text: str, session: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return runnable.invoke({"input": text}, config={"configurable": {"session_id": session}})


class TestChatHistory:
    def test_runnable_with_message_history_keeps_all_and_shows_a_budget(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "chat.db"
        histories: dict[str, WindowkeeperChatMessageHistory] = {}

        def factory(session_id: str) -> WindowkeeperChatMessageHistory:
            if session_id not in histories:
                histories[session_id] = WindowkeeperChatMessageHistory(
                    session_id, store=path, max_tokens=300, memory="window"
                )
            return histories[session_id]

        runnable = chain(factory, [f"answer number {i} " * 5 for i in range(30)])
        for i in range(30):
            invoke(runnable, f"question {i}: " + "detail " * 10, "ann")
        history = histories["ann"]
        assert len(history.memory) == 30  # every turn stored
        shown = history.messages
        assert COUNTER.count_messages(to_core_messages(shown)) <= 300
        assert shown[-1].type == "ai"
        assert "question 29" in shown[-2].content
        reopened = WindowkeeperChatMessageHistory(
            "ann", store=path, max_tokens=300, memory="window"
        )
        assert len(reopened.memory) == 30  # across a restart
        assert WindowkeeperChatMessageHistory("bob", store=path, memory="window").messages == []

    def test_wraps_an_existing_history(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            inner = InMemoryChatMessageHistory()
        inner.add_messages([HumanMessage("old " * 200), AIMessage("reply " * 200)])
        history = WindowkeeperChatMessageHistory("x", store=inner, max_tokens=150, memory="window")
        history.add_messages([HumanMessage("new question"), AIMessage("new answer")])
        assert len(inner.messages) == 4  # every message written to the wrapped history
        assert [m.content for m in history.messages] == ["new question", "new answer"]

    def test_tool_turns_stay_whole_and_pending_turn_is_shown(self, tmp_path: Path) -> None:
        history = WindowkeeperChatMessageHistory(
            "t", store=tmp_path / "h.db", max_tokens=2_000, memory="window"
        )
        call = {"name": "lookup", "args": {"id": "A-17"}, "id": "c1"}
        history.add_messages([HumanMessage("Where is A-17?"), AIMessage("", tool_calls=[call])])
        assert len(history.memory) == 0  # the call has no result yet: held, not stored
        assert [m.type for m in history.messages] == ["human", "ai"]
        history.add_messages([ToolMessage("in Oslo", tool_call_id="c1"), AIMessage("In Oslo.")])
        assert len(history.memory) == 1
        assert [m.type for m in history.messages] == ["human", "ai", "tool", "ai"]

    def test_clear_keeps_the_stored_turns(self, tmp_path: Path) -> None:
        path = tmp_path / "c.db"
        history = WindowkeeperChatMessageHistory("c", store=path, memory="window")
        history.add_messages([HumanMessage("hi"), AIMessage("hello")])
        history.clear()
        assert history.messages == []
        history.add_messages([HumanMessage("again"), AIMessage("yes")])
        reopened = WindowkeeperChatMessageHistory("c", store=path, memory="window")
        assert [m.content for m in reopened.messages] == ["again", "yes"]
        assert len(WindowMemory(COUNTER, store=reopened.store, session_id="c")) == 1

    def test_bad_input_is_named(self, tmp_path: Path) -> None:
        history = WindowkeeperChatMessageHistory("b", store=tmp_path / "b.db", memory="window")
        with pytest.raises(InvalidMessageError, match="RemoveMessage"):
            history.add_messages([RemoveMessage(id="x")])
        with pytest.raises(InvalidConfigError, match="max_tokens"):
            WindowkeeperChatMessageHistory("b", store=tmp_path / "b.db", max_tokens=0)
        with pytest.raises(InvalidConfigError, match="session_id"):
            WindowkeeperChatMessageHistory("", store=tmp_path / "b.db")


class TestEmbeddingsBothWays:
    def test_minilm_as_langchain_embeddings_plugs_back_into_recall(self) -> None:
        embeddings = WindowkeeperEmbeddings()
        vector = embeddings.embed_query("Where is my parcel?")
        assert len(vector) == 384
        assert abs(sum(x * x for x in vector) - 1) < 1e-3
        docs = embeddings.embed_documents(["parcel", "tea"])
        assert len(docs) == 2
        # a LangChain Embeddings (not the core object) in the core's recall
        embedder = LangChainEmbedder(embeddings, model_id="lc-minilm")
        assert embedder.dimension == 384
        memory = LayeredMemory(COUNTER, embedder=embedder, recent_units=1, min_batch=100)
        for q, a in FACTS:
            memory.add(to_core_messages([HumanMessage(q), AIMessage(a)]))
        memory.flush(timeout=10)
        view = memory.view("What's the name of my puppy?", budget=400)
        assert 0 in [u.index for u in view.recalled]  # "dog ... Biscuit", no shared word
        memory.close()

    def test_bad_input_is_named(self) -> None:
        with pytest.raises(InvalidConfigError, match="Embeddings"):
            LangChainEmbedder("minilm")  # type: ignore[arg-type]
