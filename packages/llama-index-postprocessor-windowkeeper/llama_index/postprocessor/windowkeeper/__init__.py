"""windowkeeper node postprocessors for LlamaIndex.

:class:`TokenBudgetPostprocessor` keeps the best retrieved nodes that fit an exact token budget;
:class:`BestNextToQueryReorder` puts the best node next to the query, whatever the node count.
Both rank and place nodes with windowkeeper's core assembler, the same way its LangChain document
compressor does.
"""

from __future__ import annotations

from llama_index.postprocessor.windowkeeper._postprocessors import (
    BestNextToQueryReorder,
    TokenBudgetPostprocessor,
    node_chunks,
)

__all__ = ["BestNextToQueryReorder", "TokenBudgetPostprocessor", "node_chunks"]
