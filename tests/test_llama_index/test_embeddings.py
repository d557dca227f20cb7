"""Embeddings both ways: the embedded MiniLM as a LlamaIndex BaseEmbedding, a BaseEmbedding in recall."""

from __future__ import annotations

import math

import numpy as np
import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.embeddings import MockEmbedding
from llama_index.memory.windowkeeper._convert import to_core_messages
from llama_index.memory.windowkeeper._embeddings import (
    LlamaIndexEmbedder,
    WindowkeeperEmbedding,
    as_core_embedder,
)
from windowkeeper import InvalidConfigError, LayeredMemory, TokenCounter
from windowkeeper.local import shared_embedder

COUNTER = TokenCounter("gpt-4o")
FACTS = [
    ("My dog is called Biscuit.", "Lovely name."),
    ("I live in Oslo, near the harbour.", "Noted."),
    ("Order A-17 is a blue kettle.", "I see order A-17."),
    ("Please ship to my office on Monday.", "Monday it is."),
    ("My sister Ann visits in May.", "How nice."),
    ("The kettle arrived dented.", "Sorry, a refund is on its way."),
]


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


@pytest.mark.model
class TestMiniLMAsBaseEmbedding:
    def test_sync_vectors_are_384_and_normalised(self) -> None:
        embedding = WindowkeeperEmbedding()
        assert embedding.model_name == "all-MiniLM-L6-v2-onnx-int8"
        query = embedding.get_query_embedding("Where is my parcel?")
        assert len(query) == 384
        assert abs(_norm(query) - 1) < 1e-3
        texts = embedding.get_text_embedding_batch(["parcel", "tea", "kettle"])
        assert [len(v) for v in texts] == [384, 384, 384]
        assert all(abs(_norm(v) - 1) < 1e-3 for v in texts)
        assert embedding.get_text_embedding("parcel") == pytest.approx(texts[0], abs=1e-5)

    async def test_async_matches_sync(self) -> None:
        embedding = WindowkeeperEmbedding()
        query = await embedding.aget_query_embedding("Where is my parcel?")
        texts = await embedding.aget_text_embedding_batch(["parcel", "tea"])
        single = await embedding.aget_text_embedding("tea")
        assert query == pytest.approx(
            embedding.get_query_embedding("Where is my parcel?"), abs=1e-5
        )
        assert texts == [
            pytest.approx(v, abs=1e-5)
            for v in embedding.get_text_embedding_batch(["parcel", "tea"])
        ]
        assert single == pytest.approx(texts[1], abs=1e-5)

    def test_shares_the_core_model(self) -> None:
        embedding = WindowkeeperEmbedding()
        assert embedding.embedder is shared_embedder()
        assert as_core_embedder(embedding) is shared_embedder()  # recall reuses the same model

    def test_a_llama_index_embedding_plugs_into_recall(self) -> None:
        # a LlamaIndex BaseEmbedding (not the core object) in the core's recall
        embedder = LlamaIndexEmbedder(WindowkeeperEmbedding(), model_id="li-minilm")
        assert embedder.dimension == 384
        memory = LayeredMemory(COUNTER, embedder=embedder, recent_units=1, min_batch=100)
        for q, a in FACTS:
            memory.add(
                to_core_messages(
                    [ChatMessage(role="user", content=q), ChatMessage(role="assistant", content=a)]
                )
            )
        memory.flush(timeout=10)
        view = memory.view("What's the name of my puppy?", budget=400)
        assert 0 in [u.index for u in view.recalled]  # "dog ... Biscuit", no shared word
        memory.close()


class TestLlamaIndexEmbedder:
    def test_defaults_name_the_class_and_model(self) -> None:
        embedder = LlamaIndexEmbedder(MockEmbedding(embed_dim=8, model_name="mock-8"))
        assert embedder.model_id == "llama_index:MockEmbedding:mock-8"
        assert embedder.dimension == 8
        vectors = embedder.embed(["a", "b", "c"])
        assert vectors.shape == (3, 8)
        assert vectors.dtype == np.float32
        assert embedder.embed([]).shape == (0, 8)
        assert embedder.embed_query("q").shape == (8,)

    def test_as_core_embedder(self) -> None:
        mock = MockEmbedding(embed_dim=4)
        wrapped = as_core_embedder(mock)
        assert isinstance(wrapped, LlamaIndexEmbedder)
        assert wrapped.embedding is mock
        assert as_core_embedder(wrapped) is wrapped  # a core Embedder as is

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"embedding": "minilm"}, "BaseEmbedding"),
            ({"embedding": MockEmbedding(embed_dim=4), "model_id": ""}, "model_id"),
            ({"embedding": MockEmbedding(embed_dim=4), "dimension": 0}, "dimension"),
            ({"embedding": MockEmbedding(embed_dim=4), "dimension": True}, "dimension"),
        ],
    )
    def test_bad_input_is_named(self, kwargs: dict[str, object], match: str) -> None:
        with pytest.raises(InvalidConfigError, match=match):
            LlamaIndexEmbedder(**kwargs)  # type: ignore[arg-type]

    def test_bad_embedder_is_named(self) -> None:
        with pytest.raises(InvalidConfigError, match="Embedder"):
            WindowkeeperEmbedding(embedder="minilm")  # type: ignore[arg-type]
        with pytest.raises(InvalidConfigError, match="BaseEmbedding"):
            as_core_embedder(42)  # type: ignore[arg-type]
