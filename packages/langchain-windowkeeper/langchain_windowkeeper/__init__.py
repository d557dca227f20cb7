"""windowkeeper for LangChain: exact token budgets, whole tool groups, background summaries and recall.

The adapter translates; every decision is windowkeeper's core. ``WindowkeeperMiddleware`` (needs
``langchain``: ``pip install 'langchain-windowkeeper[agents]'``) is imported on first use, so the
chat-history, retrieval and counting pieces work with ``langchain-core`` alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_windowkeeper._convert import (
    to_core,
    to_core_messages,
    to_langchain,
    to_langchain_messages,
)
from langchain_windowkeeper._counting import LangChainTokenCounter, token_counter
from langchain_windowkeeper._embeddings import (
    LangChainEmbedder,
    WindowkeeperEmbeddings,
    as_core_embedder,
)
from langchain_windowkeeper._engine import chat_summarizer
from langchain_windowkeeper._history import WindowkeeperChatMessageHistory
from langchain_windowkeeper._retrieval import (
    BudgetedPrompt,
    TurnRecallRetriever,
    WindowkeeperDocumentCompressor,
    document_chunks,
)

if TYPE_CHECKING:
    from langchain_windowkeeper._middleware import WindowkeeperMiddleware, WindowkeeperState

__version__ = "0.1.0"

__all__ = [
    "BudgetedPrompt",
    "LangChainEmbedder",
    "LangChainTokenCounter",
    "TurnRecallRetriever",
    "WindowkeeperChatMessageHistory",
    "WindowkeeperDocumentCompressor",
    "WindowkeeperEmbeddings",
    "WindowkeeperMiddleware",
    "WindowkeeperState",
    "as_core_embedder",
    "chat_summarizer",
    "document_chunks",
    "to_core",
    "to_core_messages",
    "to_langchain",
    "to_langchain_messages",
    "token_counter",
]


def __getattr__(name: str) -> Any:
    if name in ("WindowkeeperMiddleware", "WindowkeeperState"):
        from langchain_windowkeeper import _middleware

        return getattr(_middleware, name)
    raise AttributeError(f"module 'langchain_windowkeeper' has no attribute {name!r}")
