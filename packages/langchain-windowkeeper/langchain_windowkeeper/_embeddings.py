"""Embeddings both ways: LangChain ``Embeddings`` in the core's recall, the embedded MiniLM in LangChain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings
from windowkeeper import Embedder, InvalidConfigError
from windowkeeper.adapters import PairEmbedder, document_vectors, query_vector

if TYPE_CHECKING:
    pass

__all__ = ["LangChainEmbedder", "WindowkeeperEmbeddings", "as_core_embedder"]


class LangChainEmbedder(PairEmbedder):
    """Any LangChain :class:`~langchain_core.embeddings.Embeddings` as a core :class:`~windowkeeper.Embedder`.

    Stored turns are embedded with ``embed_documents`` (off the request path) and the query with
    ``embed_query``, as LangChain models that embed the two differently expect. Vectors are
    L2-normalised by the core.

    Args:
        embeddings: The LangChain embeddings (``HuggingFaceEmbeddings``, ``OpenAIEmbeddings``, ...).
        model_id: Names the vector space: vectors persisted in a store are keyed by it, so change
            it when the model changes. Default: the class name plus its ``model``/``model_name``.
        dimension: Vector size; default: measured once by embedding a short text.
    """

    def __init__(
        self, embeddings: Embeddings, *, model_id: str | None = None, dimension: int | None = None
    ) -> None:
        if not isinstance(embeddings, Embeddings):
            raise InvalidConfigError(
                f"embeddings must be a LangChain Embeddings; got {type(embeddings).__name__}"
            )
        self.embeddings = embeddings
        if model_id is None:
            model = getattr(embeddings, "model_name", None) or getattr(embeddings, "model", None)
            model_id = f"langchain:{type(embeddings).__name__}" + (f":{model}" if model else "")
        super().__init__(
            embeddings.embed_documents,
            embeddings.embed_query,
            model_id=model_id,
            dimension=dimension,
        )


def as_core_embedder(embeddings: Embeddings | Embedder) -> Embedder:
    """A core embedder for LangChain ``Embeddings`` (wrapped) or a core ``Embedder`` (as is)."""
    if isinstance(embeddings, Embeddings):
        if isinstance(embeddings, WindowkeeperEmbeddings):
            return embeddings.embedder
        return LangChainEmbedder(embeddings)
    if isinstance(embeddings, Embedder):
        return embeddings
    raise InvalidConfigError(
        "embeddings must be LangChain Embeddings or a windowkeeper Embedder; "
        f"got {type(embeddings).__name__}"
    )


class WindowkeeperEmbeddings(Embeddings):
    """windowkeeper's embedded all-MiniLM-L6-v2 (int8 ONNX, 384 dimensions) as LangChain ``Embeddings``.

    Offline and torch-free (needs ``windowkeeper[embed]``); the model is shared with the core's
    recall, so a vector store and turn recall in one process load it once. Vectors are
    L2-normalised.

    Args:
        embedder: A core :class:`~windowkeeper.Embedder` to expose; default the shared MiniLM.

    Raises:
        ModelNotInstalledError: The embedded model is not installed (the message gives the
            install command).

    Example:
        >>> emb = WindowkeeperEmbeddings()
        >>> len(emb.embed_query("Where is my parcel?"))
        384
    """

    def __init__(self, embedder: Embedder | None = None) -> None:
        if embedder is None:
            from windowkeeper.local import shared_embedder

            embedder = shared_embedder()
        if not isinstance(embedder, Embedder):
            raise InvalidConfigError(
                f"embedder must be a windowkeeper Embedder; got {type(embedder).__name__}"
            )
        self.embedder = embedder

    def __repr__(self) -> str:
        return f"WindowkeeperEmbeddings({self.embedder.model_id!r})"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text."""
        return document_vectors(self.embedder, texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return query_vector(self.embedder, text)
