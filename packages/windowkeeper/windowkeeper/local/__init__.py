"""Embedded models behind optional extras, loaded lazily: the MiniLM embedder, the SmolLM2 summariser.

The summariser is opt-in (the memories' default is :class:`~windowkeeper.memory.FactNotes`):
``RollingSummary(counter, summarizer=shared_summarizer())``.

Importing this package loads no model and imports neither torch nor onnxruntime; building an object
checks that its files are installed (else :class:`~windowkeeper.ModelNotInstalledError` with the
install command), and the first call loads the model.
"""

from __future__ import annotations

from windowkeeper.local._embedder import MINILM_MODEL_ID, MiniLMEmbedder, shared_embedder
from windowkeeper.local._summarizer import LocalSummarizer, shared_summarizer

__all__ = [
    "MINILM_MODEL_ID",
    "LocalSummarizer",
    "MiniLMEmbedder",
    "shared_embedder",
    "shared_summarizer",
]
