"""Embeddings both ways: a LlamaIndex ``BaseEmbedding`` in the core's recall, the embedded MiniLM in LlamaIndex."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from windowkeeper import Embedder, InvalidConfigError
from windowkeeper.adapters import PairEmbedder, document_vectors, query_vector

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr

if TYPE_CHECKING:
    pass

__all__ = ["LlamaIndexEmbedder", "WindowkeeperEmbedding", "as_core_embedder"]

MINILM_NAME = "all-MiniLM-L6-v2-onnx-int8"
"""``model_name`` of :class:`WindowkeeperEmbedding` over the embedded model."""


class LlamaIndexEmbedder(PairEmbedder):
    """Any LlamaIndex ``BaseEmbedding`` as a core :class:`~windowkeeper.Embedder`.

    Stored turns are embedded with ``get_text_embedding_batch`` (off the request path, in the
    model's ``embed_batch_size``) and the query with ``get_query_embedding``, as models that embed
    the two differently (instruction prefixes) expect. Vectors are L2-normalised by the core.

    Args:
        embedding: The LlamaIndex embedding (``HuggingFaceEmbedding``, ``OpenAIEmbedding``, ...).
        model_id: Names the vector space: vectors persisted in a store are keyed by it, so change
            it when the model changes. Default: the class name plus its ``model_name``.
        dimension: Vector size; default: measured once by embedding a short query.

    Raises:
        InvalidConfigError: ``embedding`` is not a ``BaseEmbedding``, or ``model_id`` or
            ``dimension`` is not valid.

    Example:
        >>> from llama_index.core.embeddings import MockEmbedding
        >>> embedder = LlamaIndexEmbedder(MockEmbedding(embed_dim=8))
        >>> embedder.model_id, embedder.dimension, embedder.embed(["a", "b"]).shape
        ('llama_index:MockEmbedding', 8, (2, 8))
    """

    def __init__(
        self,
        embedding: BaseEmbedding,
        *,
        model_id: str | None = None,
        dimension: int | None = None,
    ) -> None:
        if not isinstance(embedding, BaseEmbedding):
            raise InvalidConfigError(
                f"embedding must be a LlamaIndex BaseEmbedding; got {type(embedding).__name__}"
            )
        self.embedding = embedding
        if model_id is None:
            model = embedding.model_name
            named = isinstance(model, str) and model and model != "unknown"
            model_id = f"llama_index:{type(embedding).__name__}" + (f":{model}" if named else "")
        super().__init__(
            embedding.get_text_embedding_batch,
            embedding.get_query_embedding,
            model_id=model_id,
            dimension=dimension,
        )


def as_core_embedder(embedding: BaseEmbedding | Embedder) -> Embedder:
    """A core embedder for a LlamaIndex ``BaseEmbedding`` (wrapped) or a core ``Embedder`` (as is).

    :class:`WindowkeeperEmbedding` gives back the core embedder it wraps, so recall and a
    LlamaIndex index share one model.

    Raises:
        InvalidConfigError: ``embedding`` is neither.

    Example:
        >>> from llama_index.core.embeddings import MockEmbedding
        >>> as_core_embedder(MockEmbedding(embed_dim=4)).dimension
        4
    """
    if isinstance(embedding, WindowkeeperEmbedding):
        return embedding.embedder
    if isinstance(embedding, BaseEmbedding):
        return LlamaIndexEmbedder(embedding)
    if isinstance(embedding, Embedder):
        return embedding
    raise InvalidConfigError(
        "embedding must be a LlamaIndex BaseEmbedding or a windowkeeper Embedder; "
        f"got {type(embedding).__name__}"
    )


class WindowkeeperEmbedding(BaseEmbedding):
    """windowkeeper's embedded all-MiniLM-L6-v2 (int8 ONNX, 384 dimensions) as a LlamaIndex ``BaseEmbedding``.

    Offline and torch-free (needs ``llama-index-memory-windowkeeper[embed]``); the model is shared
    with the core's recall, so a vector index and turn recall in one process load it once, on the
    first embedding. Vectors are L2-normalised. The async methods run the model in a worker
    thread.

    Args:
        embedder: A core :class:`~windowkeeper.Embedder` to expose; default the shared MiniLM.
        **kwargs: ``BaseEmbedding`` fields (``embed_batch_size``, ``callback_manager``, ...).

    Raises:
        InvalidConfigError: ``embedder`` is not a core ``Embedder``.
        ModelNotInstalledError: The embedded model is not installed (the message gives the
            install command).

    Example:
        >>> emb = WindowkeeperEmbedding()
        >>> len(emb.get_query_embedding("Where is my parcel?"))
        384
    """

    model_name: str = MINILM_NAME
    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder | None = None, **kwargs: Any) -> None:
        if embedder is None:
            from windowkeeper.local import shared_embedder

            embedder = shared_embedder()
            kwargs.setdefault("model_name", MINILM_NAME)
        elif not isinstance(embedder, Embedder):
            raise InvalidConfigError(
                f"embedder must be a windowkeeper Embedder; got {type(embedder).__name__}"
            )
        else:
            kwargs.setdefault("model_name", embedder.model_id)
        super().__init__(**kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this embedding under."""
        return "WindowkeeperEmbedding"

    @property
    def embedder(self) -> Embedder:
        """The core embedder this exposes (what :func:`as_core_embedder` hands to recall)."""
        return self._embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return query_vector(self._embedder, query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return document_vectors(self._embedder, [text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return document_vectors(self._embedder, texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
