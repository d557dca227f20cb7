"""The LlamaIndex node postprocessors: unit behaviour, then a real VectorStoreIndex, offline."""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_index.core import Document, PromptTemplate, VectorStoreIndex
from llama_index.core import settings as li_settings
from llama_index.core.base.llms.types import CompletionResponse
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.postprocessor import LongContextReorder
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.postprocessor.windowkeeper import (
    BestNextToQueryReorder,
    TokenBudgetPostprocessor,
    node_chunks,
)
from windowkeeper import (
    Budget,
    Chunk,
    ContextAssembler,
    InvalidConfigError,
    TokenCounter,
    UnknownModelError,
    place_chunks,
)

COUNTER = TokenCounter("gpt-4o")
_ASSEMBLER = ContextAssembler(COUNTER, Budget(context_window=10, generation_reserve=1))


def cost(text: str) -> int:
    """What one node costs the core: its text in the ``<document>`` message a request sends."""
    return COUNTER.count_message(_ASSEMBLER.chunk_message(Chunk(text=text, score=0.0)))


def node(text: str, score: float | None = None, **metadata: Any) -> NodeWithScore:
    return NodeWithScore(node=TextNode(text=text, metadata=metadata), score=score)


def texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content() for n in nodes]


# ------------------------------------------------------------------ TokenBudgetPostprocessor


class TestTokenBudget:
    def test_fits_the_exact_budget_best_first(self) -> None:
        nodes = [
            node("Refunds take five days.", 0.9),
            node("Shipping is free over fifty dollars.", 0.7),
            node("Our office dog is called Biscuit. " * 20, 0.5),
            node("Hours: nine to five.", 0.1),
        ]
        two = cost(texts(nodes)[0]) + cost(texts(nodes)[1])
        out = TokenBudgetPostprocessor(max_tokens=two).postprocess_nodes(nodes)
        # the dog is over the rest of the budget; the weakest one fits only when the second is out
        assert texts(out) == ["Shipping is free over fifty dollars.", "Refunds take five days."]
        tighter = TokenBudgetPostprocessor(max_tokens=two - 1).postprocess_nodes(nodes)
        assert texts(tighter) == ["Hours: nine to five.", "Refunds take five days."]
        assert sum(cost(t) for t in texts(tighter)) <= two - 1
        # what a response synthesizer joins into its prompt costs no more than the budget
        assert COUNTER.count("\n\n".join(texts(out))) <= two
        smallest = min(cost(t) for t in texts(nodes))
        assert TokenBudgetPostprocessor(max_tokens=smallest - 1).postprocess_nodes(nodes) == []

    def test_matches_the_core_assembler(self) -> None:
        nodes = [node(f"fact {i} " * (i + 1), score=(i * 7) % 5 / 5) for i in range(8)]
        expected, _, used, _ = ContextAssembler(
            COUNTER, Budget(context_window=61, generation_reserve=1)
        ).fit_chunks(node_chunks(nodes), 60)
        out = TokenBudgetPostprocessor(max_tokens=60, counter=COUNTER).postprocess_nodes(nodes)
        assert texts(out) == [c.text for c in expected]
        assert sum(cost(t) for t in texts(out)) == used <= 60

    def test_best_last_or_first(self) -> None:
        nodes = [node("low", 0.1), node("high", 0.9), node("mid", 0.5)]
        assert texts(TokenBudgetPostprocessor(max_tokens=500).postprocess_nodes(nodes)) == [
            "low",
            "mid",
            "high",
        ]
        first = TokenBudgetPostprocessor(max_tokens=500, question_first=True)
        assert texts(first.postprocess_nodes(nodes)) == ["high", "mid", "low"]

    def test_edges_and_none(self) -> None:
        nodes = [
            node(t, s) for t, s in [("c", 0.5), ("a", 0.9), ("e", 0.1), ("b", 0.7), ("d", 0.3)]
        ]
        edges = TokenBudgetPostprocessor(max_tokens=500, order="edges")
        assert texts(edges.postprocess_nodes(nodes)) == ["b", "d", "e", "c", "a"]
        mirrored = TokenBudgetPostprocessor(max_tokens=500, order="edges", question_first=True)
        assert texts(mirrored.postprocess_nodes(nodes)) == ["a", "c", "e", "d", "b"]
        kept_in_place = TokenBudgetPostprocessor(max_tokens=3 * cost("a"), order="none")
        assert texts(kept_in_place.postprocess_nodes(nodes)) == ["c", "a", "b"]

    def test_unscored_nodes_rank_by_their_order(self) -> None:
        nodes = [node("first"), node("second"), node("third"), node("fourth")]
        out = TokenBudgetPostprocessor(max_tokens=3 * cost("second")).postprocess_nodes(nodes)
        assert texts(out) == ["third", "second", "first"]
        # one unscored (or non-finite) score and the retriever's order decides for all
        for odd in (None, math.nan, math.inf):
            mixed = [node("a", 0.1), node("b", odd), node("c", 0.9)]
            out = TokenBudgetPostprocessor(max_tokens=500).postprocess_nodes(mixed)
            assert texts(out) == ["c", "b", "a"]
        assert [c.score for c in node_chunks(nodes)] == [4.0, 3.0, 2.0, 1.0]

    def test_same_objects_scores_and_metadata_kept(self) -> None:
        nodes = [node(f"fact number {i}", 0.1 * i, source=f"kb/{i}.md") for i in range(6)]
        before = copy.deepcopy(nodes)
        sent = nodes[1].node.get_content(metadata_mode=MetadataMode.LLM)  # metadata counts
        out = TokenBudgetPostprocessor(max_tokens=4 * cost(sent)).postprocess_nodes(nodes)
        assert 1 <= len(out) < len(nodes)
        assert len({id(n) for n in out}) == len(out)
        assert all(any(n is m for m in nodes) for n in out)  # never copied, never merged
        assert nodes == before  # scores and metadata untouched, input list unchanged
        assert [n.node.metadata["source"] for n in out] == [
            "kb/2.md",
            "kb/3.md",
            "kb/4.md",
            "kb/5.md",
        ]
        assert TokenBudgetPostprocessor(max_tokens=10).postprocess_nodes([]) == []

    def test_counts_the_text_sent_to_the_llm(self) -> None:
        meta = {"source": "handbook/returns-and-refunds-policy-2024.md", "section": "Refunds"}
        nodes = [node("Refunds take five days.", 0.9, **meta)]
        llm_text = nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)
        assert "handbook" in llm_text
        fits_llm = TokenBudgetPostprocessor(max_tokens=cost(llm_text))
        assert fits_llm.postprocess_nodes(nodes) == nodes
        assert (
            TokenBudgetPostprocessor(max_tokens=cost(llm_text) - 1).postprocess_nodes(nodes) == []
        )
        text_only = TokenBudgetPostprocessor(
            max_tokens=cost("Refunds take five days."), metadata_mode=MetadataMode.NONE
        )
        assert text_only.postprocess_nodes(nodes) == nodes
        # keys the node hides from the LLM are not counted either
        nodes[0].node.excluded_llm_metadata_keys = ["source", "section"]
        assert (
            TokenBudgetPostprocessor(max_tokens=cost("Refunds take five days.")).postprocess_nodes(
                nodes
            )
            == nodes
        )

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"max_tokens": 0}, r"max_tokens must be an int >= 1; got 0"),
            ({"max_tokens": -5}, "max_tokens.*-5"),
            ({"max_tokens": True}, "max_tokens.*True"),
            ({"max_tokens": "100"}, "max_tokens.*'100'"),
            ({}, "max_tokens.*None"),
            ({"max_tokens": 10, "order": "middle"}, "order must be 'ascending', 'edges' or 'none'"),
            ({"max_tokens": 10, "question_first": "yes"}, "question_first.*'yes'"),
            ({"max_tokens": 10, "metadata_mode": "everything"}, "metadata_mode.*'everything'"),
            ({"max_tokens": 10, "model": ""}, "model.*''"),
            (
                {"max_tokens": 10, "counter": "gpt-4o"},
                "counter must be a windowkeeper TokenCounter",
            ),
        ],
    )
    def test_bad_input_raises_typed_errors(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(InvalidConfigError, match=match):
            TokenBudgetPostprocessor(**kwargs)

    def test_unknown_model_and_serialisation(self) -> None:
        with pytest.raises(UnknownModelError):
            TokenBudgetPostprocessor(max_tokens=10, model="no-such-model")
        pp = TokenBudgetPostprocessor(max_tokens=300, order="edges", counter=COUNTER)
        assert pp.counter is COUNTER
        data = pp.to_dict()
        assert "counter" not in data
        assert data["class_name"] == "TokenBudgetPostprocessor"
        assert data["metadata_mode"] == MetadataMode.LLM
        again = TokenBudgetPostprocessor.from_dict(data)
        assert (again.max_tokens, again.order, again.counter) == (300, "edges", None)
        assert TokenBudgetPostprocessor.from_json(pp.to_json()).max_tokens == 300
        mode = TokenBudgetPostprocessor(max_tokens=5, metadata_mode="none").metadata_mode
        assert mode is MetadataMode.NONE

    async def test_async(self) -> None:
        nodes = [node("low", 0.1), node("high", 0.9)]
        out = await TokenBudgetPostprocessor(max_tokens=500).apostprocess_nodes(
            nodes, query_str="q"
        )
        assert texts(out) == ["low", "high"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=80), st.floats(0, 1, allow_nan=False)), min_size=0, max_size=12
    ),
    st.integers(1, 200),
    st.sampled_from(["ascending", "edges", "none"]),
)
def test_budget_properties(pairs: list[tuple[str, float]], budget: int, order: str) -> None:
    nodes = [node(t, s) for t, s in pairs]
    pp = TokenBudgetPostprocessor(max_tokens=budget, order=order, counter=COUNTER)
    out = pp.postprocess_nodes(nodes)
    assert sum(cost(n.node.get_content()) for n in out) <= budget
    assert len({id(n) for n in out}) == len(out)
    assert all(any(n is m for m in nodes) for n in out)
    if out and order != "none":
        assert out[-1].score == max(n.score or 0.0 for n in out)
        if len({s for _, s in pairs}) == len(pairs):  # ties keep their input order, which moved
            assert pp.postprocess_nodes(out) == out  # running twice changes nothing


# ------------------------------------------------------------------ BestNextToQueryReorder


class TestBestNextToQuery:
    @pytest.mark.parametrize("n", range(1, 8))
    def test_best_next_to_the_query_whatever_the_count(self, n: int) -> None:
        nodes = [node(f"node {i}", score=(i * 5 % 7 + 1) / 10) for i in range(n)]  # distinct
        best = max(nodes, key=lambda x: x.score or 0.0)
        out = BestNextToQueryReorder().postprocess_nodes(nodes)
        assert out[-1] is best
        assert sorted(map(id, out)) == sorted(map(id, nodes))
        assert BestNextToQueryReorder(question_first=True).postprocess_nodes(nodes)[0] is best
        edges = BestNextToQueryReorder(order="edges").postprocess_nodes(nodes)
        assert edges[-1] is best
        if n > 1:
            second = sorted(nodes, key=lambda x: -(x.score or 0.0))[1]
            assert edges[0] is second
        # LlamaIndex's own reorder puts the best first for an odd count, last for an even one
        theirs = LongContextReorder().postprocess_nodes(list(nodes))
        assert (theirs[0] if n % 2 else theirs[-1]) is best

    def test_is_the_core_placement(self) -> None:
        scores = [0.3, 0.8, 0.1, 0.8, 0.5, 0.9]
        nodes = [node(f"n{i}", s) for i, s in enumerate(scores)]
        for order in ("ascending", "edges"):
            core = place_chunks([Chunk(text=f"n{i}", score=s) for i, s in enumerate(scores)], order)
            assert texts(BestNextToQueryReorder(order=order).postprocess_nodes(nodes)) == [
                c.text for c in core
            ]

    def test_unscored_by_order_and_nothing_changed(self) -> None:
        nodes = [node("first"), node("second"), node("third", 0.9)]
        before = copy.deepcopy(nodes)
        assert texts(BestNextToQueryReorder().postprocess_nodes(nodes)) == [
            "third",
            "second",
            "first",
        ]
        assert nodes == before
        assert BestNextToQueryReorder().postprocess_nodes([]) == []

    def test_bad_input_and_serialisation(self) -> None:
        with pytest.raises(
            InvalidConfigError, match="order must be 'ascending' or 'edges'; got 'none'"
        ):
            BestNextToQueryReorder(order="none")
        with pytest.raises(InvalidConfigError, match=r"question_first.*1"):
            BestNextToQueryReorder(question_first=1)
        data = BestNextToQueryReorder(order="edges").to_dict()
        assert data["class_name"] == "BestNextToQueryReorder"
        assert BestNextToQueryReorder.from_dict(data).order == "edges"

    async def test_async(self) -> None:
        nodes = [node("high", 0.9), node("low", 0.1)]
        assert texts(await BestNextToQueryReorder().apostprocess_nodes(nodes)) == ["low", "high"]


# ------------------------------------------------------------------ a real index, offline


class HashEmbedding(BaseEmbedding):
    """Bag of words hashed into a small normalised vector: deterministic, offline, and ranks
    texts by the words they share with the query."""

    dim: int = 64

    def _vector(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


class RecordingLLM(MockLLM):
    """A completion model that records every prompt it is sent."""

    prompts: list[str] = Field(default_factory=list, exclude=True)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        return CompletionResponse(text="Five days.")


DOCS = [
    ("refunds", "Refunds are paid within 5 days of the return arriving at our warehouse."),
    ("shipping", "Shipping is free for orders over 50 dollars; otherwise it costs 4 dollars."),
    ("returns", "Returns are accepted within 30 days if the item is unused."),
    ("dog", "Our office dog is called Biscuit and loves the warehouse. " * 10),
    ("hours", "Support hours are 9 to 5 on weekdays."),
]
QUERY = "how many days until refunds are paid?"
SEP = "---------------------\n"


@pytest.fixture
def no_default_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail if anything falls back to ``Settings.llm`` / ``Settings.embed_model``.

    Their defaults are OpenAI (``llama-index-llms-openai`` / ``-embeddings-openai``): a network
    call, or an ImportError where those are not installed. Every model here is passed explicitly.
    """

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a LlamaIndex Settings default model was resolved (OpenAI)")

    monkeypatch.setattr(li_settings.Settings, "_llm", None)
    monkeypatch.setattr(li_settings.Settings, "_embed_model", None)
    monkeypatch.setattr(li_settings, "resolve_llm", refuse)
    monkeypatch.setattr(li_settings, "resolve_embed_model", refuse)
    yield
    assert li_settings.Settings._llm is None
    assert li_settings.Settings._embed_model is None


@pytest.fixture
def index(no_default_models: None) -> VectorStoreIndex:
    documents = [Document(text=t, metadata={"source": s}) for s, t in DOCS]
    return VectorStoreIndex.from_documents(documents, embed_model=HashEmbedding())


def context_of(prompt: str) -> list[str]:
    """The node texts of a default QA prompt, in the order the LLM reads them."""
    context = prompt.split(SEP)[1].removesuffix("\n")
    return [block for block in context.split("\n\n") if not block.startswith("source: ")]


class TestRealIndex:
    def test_query_engine_sends_what_fits_best_next_to_the_query(
        self, index: VectorStoreIndex
    ) -> None:
        ranked = index.as_retriever(similarity_top_k=5).retrieve(QUERY)
        assert ranked[0].node.metadata["source"] == "refunds"
        llm = RecordingLLM()
        budget = 70
        engine = index.as_query_engine(
            llm=llm,
            similarity_top_k=5,
            node_postprocessors=[
                TokenBudgetPostprocessor(max_tokens=budget),
                BestNextToQueryReorder(),
            ],
        )
        response = engine.query(QUERY)
        assert str(response) == "Five days."
        (prompt,) = llm.prompts
        context = prompt.split(SEP)[1]
        assert COUNTER.count(context) <= budget
        sent = context_of(prompt)
        assert sent[-1] == DOCS[0][1]  # the best node is the last thing before the query
        assert prompt.index(DOCS[0][1]) < prompt.index(f"Query: {QUERY}")
        assert "Biscuit" not in prompt
        assert [n.node.metadata["source"] for n in response.source_nodes][-1] == "refunds"
        scores = {n.node.node_id: n.score for n in ranked}
        assert all(n.score == scores[n.node.node_id] for n in response.source_nodes)

    def test_query_first_prompt(self, index: VectorStoreIndex) -> None:
        llm = RecordingLLM()
        template = PromptTemplate("Question: {query_str}\nContext:\n{context_str}\nAnswer: ")
        engine = index.as_query_engine(
            llm=llm,
            similarity_top_k=5,
            text_qa_template=template,
            node_postprocessors=[
                TokenBudgetPostprocessor(max_tokens=80, question_first=True, order="edges")
            ],
        )
        engine.query(QUERY)
        (prompt,) = llm.prompts
        context = prompt.split("Context:\n")[1].removesuffix("\nAnswer: ")
        assert COUNTER.count(context) <= 80
        assert context.startswith(f"source: refunds\n\n{DOCS[0][1]}")

    def test_retriever_then_postprocessors(self, index: VectorStoreIndex) -> None:
        nodes = index.as_retriever(similarity_top_k=5).retrieve(QUERY)
        scores = [n.score for n in nodes]
        kept = TokenBudgetPostprocessor(max_tokens=60).postprocess_nodes(nodes, query_str=QUERY)
        assert 1 <= len(kept) < len(nodes)
        assert all(any(k is n for n in nodes) for k in kept)
        assert [n.score for n in nodes] == scores
        sent = [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in kept]
        assert sum(cost(t) for t in sent) <= 60
        assert COUNTER.count("\n\n".join(sent)) <= 60
        assert kept[-1] is nodes[0]
        reordered = BestNextToQueryReorder(question_first=True).postprocess_nodes(nodes)
        assert reordered[0] is nodes[0]
        assert len(reordered) == len(nodes)

    async def test_async_query(self, index: VectorStoreIndex) -> None:
        llm = RecordingLLM()
        engine = index.as_query_engine(
            llm=llm,
            similarity_top_k=5,
            node_postprocessors=[TokenBudgetPostprocessor(max_tokens=70), BestNextToQueryReorder()],
        )
        response = await engine.aquery(QUERY)
        assert response.source_nodes[-1].node.metadata["source"] == "refunds"
        assert context_of(llm.prompts[-1])[-1] == DOCS[0][1]
