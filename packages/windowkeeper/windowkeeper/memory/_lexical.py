"""A small incremental BM25 index (turn recall, tool selection).

Postings are kept per term in compact arrays; a query touches only the postings of its own terms
and scores them with numpy, so a search over 100,000 documents costs about as much as the
documents that share a word with the query. numpy is imported inside the methods.
"""

from __future__ import annotations

import math
import re
import threading
from array import array
from collections import Counter
from collections.abc import Container, Iterable, Mapping
from typing import TYPE_CHECKING

from windowkeeper._checks import check_number
from windowkeeper.exceptions import InvalidConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["STOP_WORDS", "BM25Index", "stem", "tokenize"]

# Words, numbers, and runs of Han / kana / Hangul (which are not space-separated: they are cut into
# overlapping pairs of characters, the usual unit for CJK keyword search).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+(?:['’][^\W_{_CJK}]+)*")
_CJK_RUN = re.compile(rf"[{_CJK}]")

_STOP_TEXT = """a about after again all am an and any are as at be been before being but by can could did do
    does doing for from had has have having he her here hers herself him himself his how i if in into
    is it its itself just me more most my myself no nor not of off on once only or other our ours
    ourselves out over own s same she should so some such t than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves i'm i've i'll i'd
    you're you've you'll we're we've they're they've that's there's what's let's"""

AVERAGE_DRIFT = 0.01
"""How far (as a share) the average document length may move before every norm is refitted."""

CACHED_POSTING = 512
"""Postings at least this long keep their term-frequency parts between queries (numpy arrays,
extended as they grow); shorter ones are computed at each query, all together, which costs less
than keeping and extending a cache per term."""

DENSE_SHARE = 8
"""A cached term in at least one document in this many is kept as one dense vector of parts over
every document (zeros where it is absent) and added to the scores whole: for a term that common a
vector add costs less than scattering its postings (and reads memory in order, which matters when a
turn's other work has evicted the index from the CPU caches). The vector takes at most four times
the memory of the cached posting it replaces, and only terms that were queried are kept."""

STOP_WORDS: frozenset[str] = frozenset(_STOP_TEXT.split())
"""English function words left out of the index (BM25's idf would give them almost no weight
anyway; dropping them keeps their long postings out of every query)."""


def stem(word: str) -> str:
    """A light English stemmer: plural and a few verb endings, nothing that changes meaning much.

    ``stories`` → ``story``, ``running`` → ``run``, ``painted`` → ``paint``, ``classes`` →
    ``class``. Words of three letters or fewer, and words with digits or apostrophes, are kept.

    Example:
        >>> [stem(w) for w in ["stories", "running", "painted", "classes", "cats", "bus"]]
        ['story', 'run', 'paint', 'class', 'cat', 'bus']
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            root = word[: -len(suffix)]
            if not any(c in "aeiouy" for c in root):
                return word
            if len(root) >= 2 and root[-1] == root[-2] and root[-1] not in "lsz":
                root = root[:-1]  # running → run, stopped → stop (but falls → fall)
            return root
    return word


def tokenize(
    text: str, *, stop_words: Container[str] = STOP_WORDS, stemming: bool = True
) -> list[str]:
    """Lower-cased index terms of ``text``: words (Unicode-aware), stemmed, without stop words.

    Example:
        >>> tokenize("Caroline's painting classes in São Paulo, 2023!")
        ['caroline', 'paint', 'class', 'são', 'paulo', '2023']
        >>> tokenize("東京タワー")
        ['東京', '京タ', 'タワ', 'ワー']
    """
    lowered = text.lower()
    words = _TOKEN.findall(lowered)
    if stop_words is STOP_WORDS and stemming and _CJK_RUN.search(lowered) is None:
        return _default_terms(words)  # the usual case: one cached lookup per word
    out: list[str] = []
    for word in words:
        if _CJK_RUN.match(word):
            out.extend(
                [word] if len(word) == 1 else [word[i : i + 2] for i in range(len(word) - 1)]
            )
            continue
        term = _term(word, stop_words, stemming)
        if term:
            out.append(term)
    return out


def _term(word: str, stop_words: Container[str], stemming: bool) -> str:
    """The index term of one lower-cased word, "" for a stop word."""
    word = word.replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if word in stop_words:
        return ""
    if stemming:
        stemmed = _STEMS.get(word)
        if stemmed is None:
            if len(_STEMS) >= _STEMS_MAX:
                _STEMS.clear()
            stemmed = _STEMS[word] = stem(word)
        word = stemmed
    return word


def _default_terms(words: list[str]) -> list[str]:
    """:func:`_term` of each word under the default settings, through a cache of words seen."""
    cache = _DEFAULT_TERMS
    out: list[str] = []
    for word in words:
        term = cache.get(word)
        if term is None:
            if len(cache) >= _STEMS_MAX:
                cache.clear()
            term = cache[word] = _term(word, STOP_WORDS, True)
        if term:
            out.append(term)
    return out


_STEMS: dict[str, str] = {}  # word -> stem: conversations reuse their words
_DEFAULT_TERMS: dict[str, str] = {}  # word -> term under the default settings ("": a stop word)
_STEMS_MAX = 200_000


class BM25Index:
    """Okapi BM25 over documents added one at a time, searched with numpy.

    Args:
        k1: Term-frequency saturation (``>= 0``).
        b: Length normalisation, from 0 (none) to 1 (full).
        stemming: Apply :func:`stem` to every term.
        stop_words: Words left out of documents and queries.

    Example:
        >>> index = BM25Index()
        >>> index.add(7, "Ann adopted a grey cat named Pixel")
        >>> index.add(9, "The build failed on the CI runner")
        >>> [doc for doc, _ in index.search("what is the name of Ann's cat?", k=5)]
        [7]
    """

    def __init__(
        self,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        stemming: bool = True,
        stop_words: Iterable[str] = STOP_WORDS,
    ) -> None:
        check_number("k1", k1, 0)
        check_number("b", b, 0, 1)
        if isinstance(stop_words, str):
            raise InvalidConfigError(
                f"stop_words must be a collection of words, not one str; got {stop_words!r}"
            )
        self.k1 = float(k1)
        self.b = float(b)
        self.stemming = stemming
        self.stop_words = frozenset(stop_words)
        self._lock = threading.RLock()
        self._rows: dict[int, int] = {}
        self._doc_ids: array[int] = array("q")
        self._lengths: array[float] = array("f")
        self._postings: dict[str, tuple[array[int], array[float]]] = {}
        # per term: its rows and each row's term-frequency part of the score, in numpy, extended
        # as the posting grows; all of them are recomputed when the average length is refitted
        self._arrays: dict[str, tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]] = {}
        self._norm: npt.NDArray[np.float32] | None = None  # k1 * (1 - b + b * length / average)
        self._norm_buffer: npt.NDArray[np.float32] | None = None  # _norm's storage (doubling)
        self._fitted = 0  # documents in _norm
        self._average = 0.0  # the average length the norm and the cached parts use
        self._fitted_total = 0.0  # the summed length of the documents in _norm
        self._filled: dict[str, int] = {}  # rows of each cached term already computed
        self._touched: set[str] = set()  # cached terms that gained rows since the last refresh
        # per term in one document in DENSE_SHARE or more: its parts over every row (0: absent),
        # and how many of its postings are in
        self._dense: dict[str, tuple[npt.NDArray[np.float32], int]] = {}
        self._ids_array: npt.NDArray[np.int64] | None = None  # doc_ids(), until a document is added

    def __len__(self) -> int:
        return len(self._doc_ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._rows

    def terms(self, text: str) -> list[str]:
        """The index terms of ``text`` under this index's settings."""
        return tokenize(text, stop_words=self.stop_words, stemming=self.stemming)

    def add(self, doc_id: int, text: str) -> None:
        """Index a document under a new id.

        Raises:
            InvalidConfigError: ``doc_id`` is already indexed.
        """
        self.add_terms(doc_id, self.terms(text))

    def add_terms(self, doc_id: int, terms: Iterable[str]) -> None:
        """Like :meth:`add`, for a document already split by :meth:`terms`."""
        counts = Counter(terms)
        with self._lock:
            if doc_id in self._rows:
                raise InvalidConfigError(f"doc_id {doc_id!r} is already indexed; ids are unique")
            row = len(self._doc_ids)
            self._rows[doc_id] = row
            self._doc_ids.append(doc_id)
            length = float(sum(counts.values()))
            self._lengths.append(length)
            arrays, dense, touched = self._arrays, self._dense, self._touched
            for term, tf in counts.items():
                posting = self._postings.get(term)
                if posting is None:
                    posting = self._postings[term] = (array("i"), array("f"))
                posting[0].append(row)
                posting[1].append(tf)
                if term in arrays or term in dense:
                    touched.add(term)

    def search(
        self, query: str, k: int, *, exclude: Container[int] = frozenset()
    ) -> list[tuple[int, float]]:
        """The ``k`` best-scoring documents for ``query``, best first (only documents sharing a term).

        Ties keep the order the documents were added in.
        """
        return self.search_terms(Counter(self.terms(query)), k, exclude=exclude)

    def search_terms(
        self, weights: Mapping[str, float], k: int, *, exclude: Container[int] = frozenset()
    ) -> list[tuple[int, float]]:
        """Like :meth:`search`, for already-tokenised query terms with a weight each.

        A term's BM25 contribution is multiplied by its weight (e.g. its count in the query, or a
        lower weight for words taken from the conversation around the query).
        """
        with self._lock:
            if k <= 0:
                return []
            scores = self.scores(weights)
            doc_ids = self.doc_ids()
            if exclude:
                scores[[self._rows[d] for d in _present(exclude, self._rows)]] = 0.0
        hits = best_rows(scores, k)
        return [
            (int(d), float(s))
            for d, s in zip(doc_ids[hits].tolist(), scores[hits].tolist(), strict=True)
        ]

    def doc_ids(self) -> npt.NDArray[np.int64]:
        """Every document id, in the order added (the rows of :meth:`scores`); read-only.

        Kept between calls and rebuilt only when documents were added.
        """
        import numpy as np

        with self._lock:
            cached = self._ids_array
            if cached is None or len(cached) != len(self._doc_ids):
                cached = np.array(self._doc_ids, dtype=np.int64)
                cached.flags.writeable = False
                self._ids_array = cached
            return cached

    def document_frequency(self, term: str) -> int:
        """How many documents contain ``term`` (an index term, as :meth:`terms` makes them)."""
        with self._lock:
            posting = self._postings.get(term)
            return len(posting[0]) if posting is not None else 0

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        """:meth:`document_frequency` of each term, in one call (0 for a term not indexed)."""
        with self._lock:
            postings = self._postings
            return {t: len(postings[t][0]) if t in postings else 0 for t in terms}

    def scores(self, weights: Mapping[str, float]) -> npt.NDArray[np.float32]:
        """The BM25 score of every document (in the order added) for weighted query terms.

        Only the postings of the query's terms are touched: a term costs in proportion to the
        number of documents that contain it (a term in one document in :data:`DENSE_SHARE` or
        more is added as one vector over every document). The average document length in the
        length norm is refitted whenever the true average has moved by more than
        :data:`AVERAGE_DRIFT` since the last fit (so small indexes are always exact), which lets
        each posting keep its term-frequency part of the score between queries.
        """
        import numpy as np

        with self._lock:
            n = len(self._doc_ids)
            scores = np.zeros(n, dtype=np.float32)
            terms = [(t, w) for t, w in weights.items() if w > 0 and t in self._postings]
            if not terms:
                return scores
            self._fit_norm(n)
            norm = self._norm
            assert norm is not None
            long: list[tuple[str, float, int]] = []  # (term, weight x idf, df)
            dense: list[tuple[str, float]] = []
            short: list[tuple[array[int], array[float]]] = []
            short_factors: list[float] = []
            for term, weight in terms:
                posting = self._postings[term]
                df = len(posting[0])
                factor = weight * math.log(1.0 + (n - df + 0.5) / (df + 0.5))
                if df >= CACHED_POSTING and df * DENSE_SHARE >= n:
                    dense.append((term, factor))
                elif df >= CACHED_POSTING:
                    long.append((term, factor, df))
                else:
                    short.append(posting)
                    short_factors.append(factor)
            rows_of, parts_of = self._cached_parts([t for t, _, _ in long])
            factors = [f for _, f, _ in long]
            sizes = [df for _, _, df in long]
            if short:  # the short postings gathered in C (array.extend), computed in one go
                short_rows, short_tf = array("i"), array("f")
                for rows_buffer, tf_buffer in short:
                    short_rows.extend(rows_buffer)
                    short_tf.extend(tf_buffer)
                rows_of.append(np.frombuffer(short_rows, dtype=np.int32))
                parts_of.append(self._parts(short_rows, short_tf))
                factors.extend(short_factors)
                sizes.extend(len(p[0]) for p in short)
            if rows_of:
                parts = np.concatenate(parts_of) * np.repeat(
                    np.asarray(factors, dtype=np.float32), sizes
                )
                summed = np.bincount(np.concatenate(rows_of), weights=parts, minlength=n)
                scores = summed.astype(np.float32)
            if dense:  # in query order, after the postings: the same sums whoever asked before
                vectors = self._dense_parts([t for t, _ in dense], n)
                term_scores = np.empty(n, dtype=np.float32)
                for vector, (_, factor) in zip(vectors, dense, strict=True):
                    np.multiply(vector, np.float32(factor), out=term_scores)
                    scores += term_scores
            return scores

    def _parts(self, rows: array[int], tf: array[float]) -> npt.NDArray[np.float32]:
        """``tf * (k1 + 1) / (tf + norm)`` of each posting entry, under the fitted norm."""
        import numpy as np

        assert self._norm is not None
        frequency = np.frombuffer(tf, dtype=np.float32)
        norm = self._norm[np.frombuffer(rows, dtype=np.int32)]
        part: npt.NDArray[np.float32] = frequency * np.float32(self.k1 + 1.0) / (frequency + norm)
        return part

    def _fit_norm(self, n: int) -> None:
        """The length norm of every document; refitted (dropping every cached part) on drift.

        The refit points are those of a norm checked after every single document: a refit
        happens at the last count in ``(fitted, n]`` whose running average has moved more than
        :data:`AVERAGE_DRIFT` from the one in use (found by one pass over the new lengths). So
        the norm, and every score, depends only on the documents, never on when earlier queries
        or :meth:`refresh` happened to run. Between refits the norm array grows by doubling, so
        a new document costs one new entry.
        """
        import numpy as np

        fitted = self._fitted
        if fitted >= n and self._norm is not None:
            return
        total, base, refit = self._fitted_total, self._average, 0
        lengths = self._lengths
        for count in range(fitted + 1, n + 1):
            total += lengths[count - 1]
            average = total / count if total else 1.0
            if abs(average - base) > AVERAGE_DRIFT * base:  # base 0: the first document
                base, refit = average, count
        self._fitted_total = total
        if not refit:  # new documents, normed with the average in use
            buffer = self._norm_buffer
            assert buffer is not None
            if len(buffer) < n:
                grown = np.empty(max(n, 2 * len(buffer)), dtype=np.float32)
                grown[:fitted] = buffer[:fitted]
                buffer = self._norm_buffer = grown
            fresh = np.array(lengths[fitted:n], dtype=np.float32)
            buffer[fitted:n] = self.k1 * (1.0 - self.b + self.b * fresh / self._average)
            self._norm = buffer[:n]
            self._fitted = n
            return
        everything = np.array(lengths[:n], dtype=np.float32)
        self._average = base
        self._norm_buffer = (self.k1 * (1.0 - self.b + self.b * everything / base)).astype(
            np.float32
        )
        self._norm = self._norm_buffer[:n]
        self._fitted = n
        self._arrays.clear()
        self._filled.clear()
        self._dense.clear()

    def refresh(self) -> None:
        """Do now the work the next query would do for documents added since the last one.

        Fits the length norm of the new documents, extends the cached parts of the long
        postings (:data:`CACHED_POSTING`) they added to (only those), and rebuilds
        :meth:`doc_ids`. Scores are the same
        with or without it: an index owner calls it off the request path (e.g. right after
        indexing, on a worker thread) so that a query only reads.
        """
        with self._lock:
            n = len(self._doc_ids)
            if n == 0:
                return
            self._fit_norm(n)
            self.doc_ids()
            touched = [t for t in self._touched if t in self._arrays]
            dense = [t for t in self._touched if t in self._dense]
            self._touched.clear()
            if touched:
                self._cached_parts(touched)
            if dense:
                self._dense_parts(dense, n)

    def _dense_parts(self, terms: list[str], n: int) -> list[npt.NDArray[np.float32]]:
        """Each term's parts (:meth:`_parts`) over rows ``[0, n)``, 0 where it is absent; cached.

        A term stored this way drops its posting cache (:meth:`_cached_parts`), and the other
        way round, so a term keeps one of the two. The vectors grow by doubling, and the postings
        every term gained since the last call are computed together.
        """
        import numpy as np

        pending: list[tuple[str, int]] = []
        for term in terms:
            cached = self._dense.get(term)
            if cached is None:
                self._arrays.pop(term, None)
                self._filled.pop(term, None)
            vector, done = cached if cached is not None else (None, 0)
            if vector is None or len(vector) < n:
                grown = np.zeros(max(n, 2 * (len(vector) if vector is not None else 0)), np.float32)
                if vector is not None:
                    grown[: len(vector)] = vector
                vector = grown
            self._dense[term] = (vector, done)
            pending.append((term, done))
        for term, _, total, rows, parts in self._new_parts(pending):
            vector = self._dense[term][0]
            vector[rows] = parts
            self._dense[term] = (vector, total)
        return [self._dense[term][0][:n] for term in terms]

    def _cached_parts(
        self, terms: list[str]
    ) -> tuple[list[npt.NDArray[np.int32]], list[npt.NDArray[np.float32]]]:
        """Each term's rows and parts (:meth:`_parts`), cached, extended as its posting grows.

        The cached arrays grow by doubling, and the entries every term gained since the last query
        are computed together, so a posting that gains a row per turn costs one new row per turn.
        """
        import numpy as np

        pending: list[tuple[str, int]] = []
        for term in terms:
            total = len(self._postings[term][0])
            cached = self._arrays.get(term)
            if cached is None:
                self._dense.pop(term, None)
            done = 0 if cached is None else self._filled[term]
            if cached is None or len(cached[0]) < total:
                capacity = max(total, 2 * (len(cached[0]) if cached is not None else 0), 4)
                rows = np.empty(capacity, dtype=np.int32)
                part = np.empty(capacity, dtype=np.float32)
                if cached is not None:
                    rows[:done] = cached[0][:done]
                    part[:done] = cached[1][:done]
                self._arrays[term] = (rows, part)
            pending.append((term, done))
        for term, done, total, new_rows, new_parts in self._new_parts(pending):
            rows, part = self._arrays[term]
            rows[done:total] = new_rows
            part[done:total] = new_parts
            self._filled[term] = total
        rows_of: list[npt.NDArray[np.int32]] = []
        parts_of: list[npt.NDArray[np.float32]] = []
        for term in terms:
            rows, part = self._arrays[term]
            total = self._filled[term]
            rows_of.append(rows[:total])
            parts_of.append(part[:total])
        return rows_of, parts_of

    def _new_parts(
        self, pending: list[tuple[str, int]]
    ) -> list[tuple[str, int, int, npt.NDArray[np.int32], npt.NDArray[np.float32]]]:
        """``(term, done, total, rows, parts)`` for each term's postings ``[done, total)``.

        The postings every term gained since ``done`` are gathered in C and computed in one go;
        terms with nothing new are left out.
        """
        import numpy as np

        spans: list[tuple[str, int, int]] = []
        fresh_rows, fresh_tf = array("i"), array("f")
        for term, done in pending:
            rows_buffer, tf_buffer = self._postings[term]
            total = len(rows_buffer)
            if done < total:
                spans.append((term, done, total))
                fresh_rows.extend(rows_buffer[done:])
                fresh_tf.extend(tf_buffer[done:])
        if not spans:
            return []
        computed = self._parts(fresh_rows, fresh_tf)
        new_rows = np.frombuffer(fresh_rows, dtype=np.int32)
        out: list[tuple[str, int, int, npt.NDArray[np.int32], npt.NDArray[np.float32]]] = []
        at = 0
        for term, done, total in spans:
            size = total - done
            out.append((term, done, total, new_rows[at : at + size], computed[at : at + size]))
            at += size
        return out


def best_rows(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.intp]:
    """Rows of the ``k`` highest positive ``scores``, best first; ties keep row order (k >= 1).

    The k-th highest score is found by one partition; every row above it is taken, then the
    first rows equal to it, so which tied rows make the cut never depends on the sort.
    """
    import numpy as np

    n = len(scores)
    if n > k:
        cut = np.partition(scores, n - k)[n - k]
        if cut > 0:
            above = np.flatnonzero(scores > cut)
            tied = np.flatnonzero(scores == cut)[: k - len(above)]
            hits = np.concatenate((above, tied))
        else:  # k or fewer positive scores: all of them
            hits = np.flatnonzero(scores > 0)
    else:
        hits = np.flatnonzero(scores > 0)
    ordered: npt.NDArray[np.intp] = hits[np.lexsort((hits, -scores[hits]))]
    return ordered


def _present(exclude: Container[int], rows: Mapping[int, int]) -> list[int]:
    if isinstance(exclude, set | frozenset | list | tuple | range | dict):
        return [d for d in exclude if d in rows]
    return [d for d in rows if d in exclude]
