"""windowkeeper for LlamaIndex: a memory that fits its token budget exactly, blocks, a budgeted LLM.

The adapter translates; every decision (what fits, what is summarised, recalled or cleared) is
windowkeeper's core, the same for every framework.
"""

from __future__ import annotations

from llama_index.memory.windowkeeper._blocks import RecallBlock, SummaryBlock
from llama_index.memory.windowkeeper._convert import (
    to_core,
    to_core_messages,
    to_llama,
    to_llama_messages,
)
from llama_index.memory.windowkeeper._embeddings import (
    LlamaIndexEmbedder,
    WindowkeeperEmbedding,
    as_core_embedder,
)
from llama_index.memory.windowkeeper._llm import BudgetedLLM
from llama_index.memory.windowkeeper._memory import WindowkeeperMemory, llm_summarizer

__version__ = "0.1.0"

__all__ = [
    "BudgetedLLM",
    "LlamaIndexEmbedder",
    "RecallBlock",
    "SummaryBlock",
    "WindowkeeperEmbedding",
    "WindowkeeperMemory",
    "as_core_embedder",
    "llm_summarizer",
    "to_core",
    "to_core_messages",
    "to_llama",
    "to_llama_messages",
]
