"""Compress retrieved chunks for a question with windowkeeper-llmlingua (offline, on the CPU).

Run: `uv run python examples/rag_compression.py`. The embedded SmolLM2-135M-Instruct ranks four
passages for the question and keeps the words that carry information; code, amounts, dates, URLs
and IDs stay verbatim. Then the same compressor fills a 200-token RAG zone inside windowkeeper's
ContextAssembler, and LangChain's and LlamaIndex's faces take it as `compressor=`.
"""

from __future__ import annotations

import time

from windowkeeper import Budget, Chunk, ContextAssembler, TokenCounter
from windowkeeper_llmlingua import ChunkCompressor, find_spans

PASSAGES = [
    (
        "refunds",
        "Refund USD 1,234.50 for order NW-48213-77 was approved on 2024-03-17 after the customer "
        "wrote to billing@example.com. The courier had left the parcel with a neighbour, which the "
        "customer disputed, so support agreed to reship it at no cost. Track it at "
        "https://shop.example.com/orders/48213 (status reshipped, delivery within 4 days).",
    ),
    (
        "shipping",
        "Orders ship from the warehouse in Lyon every weekday morning. Parcels above 2 kg go by "
        "road freight and usually arrive within three to five working days anywhere in the EU, "
        "while smaller ones travel by post and are often delivered the next day in France.",
    ),
    (
        "careers",
        "The company was founded in 2009 by two engineers who repaired kettles in a garage. It now "
        "employs around 240 people across three sites and publishes an annual report on repairs, "
        "recycling and the carbon footprint of its deliveries.",
    ),
    (
        "code",
        "To check a refund from a script, call the API:\n```python\nimport requests\nr = "
        'requests.get("https://shop.example.com/api/v2/refunds/48213")\nif r.status_code < 300:\n'
        '    print(r.json()["amount"])\n```\nThe amount comes back as a string with two decimals.',
    ),
]
QUESTION = "Which refund was approved for order NW-48213-77, and when?"


def main() -> None:
    counter = TokenCounter("gpt-4o")
    compressor = ChunkCompressor(counter=counter, rate=0.5)
    chunks = [Chunk(text=t, score=1 - i / 10, id=i_d) for i, (i_d, t) in enumerate(PASSAGES)]
    start = time.perf_counter()
    compressor.scorer.load()
    print(f"SmolLM2 scorer loaded in {time.perf_counter() - start:.1f} s\n")
    result = compressor.compress(chunks, QUESTION)
    print(f"question: {QUESTION}")
    print(
        f"{result.tokens_before} -> {result.tokens_after} tokens ({result.ratio:.2f}x) "
        f"in {result.seconds:.2f} s\n"
    )
    for c in result.chunks:
        state = "dropped" if c.dropped else f"{c.tokens_before} -> {c.tokens_after} tokens"
        print(f"[{c.chunk.id}] rank {c.rank + 1}, {state}")
        if not c.dropped:
            print("   " + c.chunk.text.replace("\n", "\n   "))
            spans = find_spans(c.original.text)
            assert all(s.text in c.chunk.text for s in spans)  # checked by the compressor too
            print(f"   ({len(spans)} protected spans, all verbatim)")
    budget = Budget(context_window=8_000, generation_reserve=500, zone_limits={"rag": 200})
    out = ContextAssembler(counter, budget, compressor=compressor).assemble(
        QUESTION, system="Answer from the documents.", chunks=chunks
    )
    print(f"\nassembled: rag zone {out.report.zones['rag']} tokens (limit 200)")
    for d in out.report.dropped:
        print(f"  {d.what}: {d.tokens} tokens, {d.reason}")
    assert out.messages[-1].text == QUESTION  # the user's message is never compressed


if __name__ == "__main__":
    main()
