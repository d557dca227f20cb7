"""The LlamaIndex face: a chat engine with WindowkeeperMemory, and a query engine with our postprocessors.

The support transcript in ``examples/transcripts/support_agent.json`` is replayed through
LlamaIndex's own ``SimpleChatEngine``. The LLM is SCRIPTED: it stands in for your provider and
answers with the transcript's recorded assistant replies, so the run needs no network and no API
key. Everything else is real: the chat engine, the memory (layered: fact notes, the embedded
MiniLM, a SQLite file), exact counts, and a ``VectorStoreIndex`` over the transcript's help-center
articles embedded by the MiniLM as a LlamaIndex ``BaseEmbedding``.

Run:  uv run python examples/llama_index_chat.py [--max-tokens 2500]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import CustomLLM
from llama_index.memory.windowkeeper import (
    WindowkeeperEmbedding,
    WindowkeeperMemory,
    to_core_messages,
)
from llama_index.postprocessor.windowkeeper import TokenBudgetPostprocessor
from windowkeeper import TokenCounter

TRANSCRIPT = Path(__file__).parent / "transcripts" / "support_agent.json"


class ScriptedLLM(CustomLLM):
    """Stands in for your provider: answers with the transcript's assistant replies, in order."""

    replies: list[str]
    position: int = 0
    seen: list[int] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=128_000, num_output=800, model_name="gpt-4o")

    def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        self.seen.append(TokenCounter("gpt-4o").count_messages(to_core_messages(list(messages))))
        reply = self.replies[self.position % len(self.replies)]
        self.position += 1
        return ChatResponse(message=ChatMessage(role="assistant", content=reply))

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        reply = self.replies[self.position % len(self.replies)]
        self.position += 1
        return CompletionResponse(text=reply)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        raise NotImplementedError("the scripted stand-in does not stream")


def load() -> tuple[list[str], list[str], list[Document]]:
    """User messages, the final assistant reply of each turn, and the retrieved articles."""
    data = json.loads(TRANSCRIPT.read_text(encoding="utf-8"))
    users: list[str] = []
    replies: list[str] = []
    articles: dict[str, Document] = {}
    for m in data["messages"]:
        meta = m.get("metadata") or {}
        if meta.get("zone") == "rag":
            articles[meta["source"]] = Document(text=m["content"], id_=meta["source"])
        elif m["role"] == "user":
            users.append(m["content"])
            replies.append("")
        elif m["role"] == "assistant" and m.get("content") and users:
            replies[-1] = m["content"]
    return users, [r or "Noted." for r in replies], list(articles.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=2500, help="history budget of get()")
    args = parser.parse_args()
    users, replies, articles = load()
    counter = TokenCounter("gpt-4o")
    with tempfile.TemporaryDirectory() as folder:
        memory = WindowkeeperMemory.from_defaults(
            session_id="support-1",
            path=str(Path(folder) / "chat.db"),
            max_tokens=args.max_tokens,
            memory_options={"recent_units": 3, "min_batch": 2},
        )
        llm = ScriptedLLM(replies=replies)
        engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
        print(f"SimpleChatEngine + WindowkeeperMemory, history budget {args.max_tokens:,} tokens")
        print(f"{'turn':>4} {'request':>8} {'history':>8} {'stored':>7} {'ms':>6}")
        for i, text in enumerate(users):
            start = time.perf_counter()
            engine.chat(text)
            took = (time.perf_counter() - start) * 1000
            history = counter.count_messages(to_core_messages(memory.get()))
            print(f"{i:>4} {llm.seen[-1]:>8,} {history:>8,} {len(memory.core):>7} {took:>6.0f}")
        print(
            f"every turn stored: {len(memory.core)} of {len(users)}; all messages: {len(memory.get_all())}"
        )
        close = getattr(memory.core, "close", None)
        if callable(close):
            close()

    embed = WindowkeeperEmbedding()
    index = VectorStoreIndex.from_documents(articles, embed_model=embed)
    nodes = index.as_retriever(similarity_top_k=len(articles)).retrieve(
        "My 2-day order is late and tracking has not moved"
    )
    kept = TokenBudgetPostprocessor(max_tokens=600).postprocess_nodes(nodes)
    print(
        f"\nTokenBudgetPostprocessor: {len(nodes)} article chunks retrieved; within 600 tokens, best last:"
    )
    for n in kept:
        print(f"  {n.score:.3f}  {n.node.ref_doc_id}")


if __name__ == "__main__":
    main()
