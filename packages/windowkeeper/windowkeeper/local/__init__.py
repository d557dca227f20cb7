"""Embedded models behind optional extras, loaded lazily: the SmolLM2 summariser, the MiniLM embedder.

Importing this package loads no model and imports neither torch nor onnxruntime; building an object
checks that its files are installed (else :class:`~windowkeeper.ModelNotInstalledError` with the
install command), and the first call loads the model.
"""

from __future__ import annotations

from windowkeeper.local._embedder import MINILM_MODEL_ID, MiniLMEmbedder, shared_embedder
from windowkeeper.local._summarizer import LocalSummarizer, default_summarizer

__all__ = [
    "MINILM_MODEL_ID",
    "LocalSummarizer",
    "MiniLMEmbedder",
    "default_summarizer",
    "shared_embedder",
]
