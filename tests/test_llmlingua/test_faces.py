"""The compressor behind the framework faces: LangChain's document compressor, LlamaIndex's postprocessor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_windowkeeper import WindowkeeperDocumentCompressor
from llama_index.core.base.llms.types import CompletionResponse
from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import BaseRetriever as LlamaRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.windowkeeper import TokenBudgetPostprocessor
from windowkeeper import InvalidConfigError, TokenCounter
from windowkeeper_llmlingua import CausalScorer, ChunkCompressor, find_spans

from tests.test_llmlingua.test_compressor import PROSE
from tests.test_llmlingua.test_spans import HOSTILE

COUNTER = TokenCounter("gpt-4o")
QUESTION = "Where do the kettles ship from?"
TEXTS = [*PROSE, HOSTILE]


@pytest.fixture(scope="module")
def compressor(tiny_model: Path) -> ChunkCompressor:
    return ChunkCompressor(CausalScorer(tiny_model, device="cpu", dtype="float32"), counter=COUNTER)


class ListRetriever(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.docs)


def test_langchain_contextual_compression_retriever(compressor: ChunkCompressor) -> None:
    docs = [
        Document(t, id=f"d{i}", metadata={"source": f"kb/{i}.md", "relevance_score": 1 - i / 10})
        for i, t in enumerate(TEXTS)
    ]
    budget = 200
    retriever = ContextualCompressionRetriever(
        base_compressor=WindowkeeperDocumentCompressor(max_tokens=budget, compressor=compressor),
        base_retriever=ListRetriever(docs=docs),
    )
    out = retriever.invoke(QUESTION)
    assert out
    assert sum(COUNTER.count(d.page_content) for d in out) <= budget
    assert any("windowkeeper_compressed" in d.metadata for d in out)
    by_id = {d.id: d for d in docs}
    for d in out:
        original = by_id[d.id]
        assert d.metadata["source"] == original.metadata["source"]
        if "windowkeeper_compressed" in d.metadata:
            before, after = d.metadata["windowkeeper_compressed"]
            assert (before, after) == (
                COUNTER.count(original.page_content),
                COUNTER.count(d.page_content),
            )
            assert after < before
        for span in find_spans(original.page_content):
            assert span.text in d.page_content
    assert all("windowkeeper_compressed" not in d.metadata for d in docs)  # originals untouched
    with pytest.raises(InvalidConfigError, match="compressor must have compress"):
        WindowkeeperDocumentCompressor(max_tokens=10, compressor=object())


class FixedRetriever(LlamaRetriever):
    def __init__(self, nodes: list[NodeWithScore]) -> None:
        super().__init__()
        self.nodes = nodes

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return list(self.nodes)


class RecordingLLM(MockLLM):
    prompts: list[str] = Field(default_factory=list, exclude=True)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        return CompletionResponse(text="Lyon.")


def test_llama_index_query_engine_with_the_compressing_postprocessor(
    compressor: ChunkCompressor,
) -> None:
    nodes = [
        NodeWithScore(
            node=TextNode(text=t, id_=f"n{i}", metadata={"source": f"kb/{i}"}), score=1 - i / 10
        )
        for i, t in enumerate(TEXTS)
    ]
    llm = RecordingLLM()
    budget = 220
    engine = RetrieverQueryEngine.from_args(
        FixedRetriever(nodes),
        llm=llm,
        node_postprocessors=[TokenBudgetPostprocessor(max_tokens=budget, compressor=compressor)],
    )
    response = engine.query(QUESTION)
    assert str(response) == "Lyon."
    (prompt,) = llm.prompts
    assert QUESTION in prompt  # the query reaches the LLM unchanged
    sent = response.source_nodes
    assert sent
    assert sum(COUNTER.count(n.node.get_content(metadata_mode="llm")) for n in sent) <= budget
    originals = {n.node.node_id: n for n in nodes}
    compressed = [n for n in sent if "windowkeeper_compressed" in n.node.metadata]
    assert compressed
    for n in sent:
        original = originals[n.node.node_id]
        assert n.score == original.score
        assert n.node.metadata["source"] == original.node.metadata["source"]
        assert "windowkeeper_compressed" not in n.node.get_content(metadata_mode="llm")
        for span in find_spans(original.node.get_content()):
            assert span.text in n.node.get_content()
    assert all("windowkeeper_compressed" not in n.node.metadata for n in nodes)
    with pytest.raises(InvalidConfigError, match="compressor must have compress"):
        TokenBudgetPostprocessor(max_tokens=10, compressor=object())


def test_the_assembler_compresses_history_tool_results_keeping_their_ids_and_numbers(
    compressor: ChunkCompressor,
) -> None:
    """The zones a user allows: older tool results compressed, protected spans intact."""
    from windowkeeper import Budget, ContextAssembler

    record = (
        "Order A-48213 for the customer in Lyon: shipped on 2025-03-17 from the Lyon depot "
        "by DHL, tracking 1Z999AA10123456784, weight 3.5 kg, value USD 1,234.50; the parcel "
        "was delayed at the depot because the label was damaged and had to be printed again. "
    ) * 3
    history: list[dict[str, Any]] = []
    for i in range(2):
        history += [
            {"role": "user", "content": f"Where is my order, attempt {i}?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": f"c{i}",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"order": "A-48213"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"c{i}", "content": record},
            {"role": "assistant", "content": "It is on its way."},
        ]
    budget = Budget(context_window=8_000, generation_reserve=500)
    user = "When did order A-48213 ship?"
    out = ContextAssembler(
        COUNTER, budget, compressor=compressor, compress_zones=("rag", "history")
    ).assemble(user, history=history)
    results = [m for m in out.messages if m.role == "tool"]
    assert [m.tool_call_id for m in results] == ["c0", "c1"]
    assert results[1].text == record  # the newest turn's result is never compressed
    older = results[0].text
    assert COUNTER.count(older) < COUNTER.count(record)
    for span in find_spans(record):
        assert span.text in older  # IDs, dates, amounts and the tracking number verbatim
    assert out.messages[-1].text == user
