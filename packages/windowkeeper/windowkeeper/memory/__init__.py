"""Memory strategies: choose which units of a conversation the model sees this turn."""

from __future__ import annotations

from windowkeeper.memory._base import (
    Memory,
    MemoryView,
    StoredMemory,
    Summarizer,
    recalled_message,
    render_unit,
    summary_message,
)
from windowkeeper.memory._chat import ChatSummarizer
from windowkeeper.memory._editing import ContextEditor
from windowkeeper.memory._facts import FactNotes
from windowkeeper.memory._guard import RetryPolicy, SummaryTimeoutError
from windowkeeper.memory._keeper import SummaryError, SummaryKeeper
from windowkeeper.memory._layered import LayeredMemory, LayerSplit
from windowkeeper.memory._lexical import BM25Index
from windowkeeper.memory._recall import RecallIndex, RecallSettings, TurnRecall
from windowkeeper.memory._recent import WindowMemory
from windowkeeper.memory._summary import RollingSummary
from windowkeeper.memory._vectors import Embedder, VectorIndex, as_embedder
from windowkeeper.memory._window import TokenWindow, TrimResult

__all__ = [
    "BM25Index",
    "ChatSummarizer",
    "ContextEditor",
    "Embedder",
    "FactNotes",
    "LayerSplit",
    "LayeredMemory",
    "Memory",
    "MemoryView",
    "RecallIndex",
    "RecallSettings",
    "RetryPolicy",
    "RollingSummary",
    "StoredMemory",
    "Summarizer",
    "SummaryError",
    "SummaryKeeper",
    "SummaryTimeoutError",
    "TokenWindow",
    "TrimResult",
    "TurnRecall",
    "VectorIndex",
    "WindowMemory",
    "as_embedder",
    "recalled_message",
    "render_unit",
    "summary_message",
]
