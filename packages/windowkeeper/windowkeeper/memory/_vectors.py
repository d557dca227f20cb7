"""Embedders and the in-process vector index used by turn recall.

numpy is imported inside the functions that need it, so ``import windowkeeper`` stays light.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from windowkeeper._checks import check_int
from windowkeeper.exceptions import InvalidConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float32]

__all__ = ["CallableEmbedder", "Embedder", "VectorIndex", "as_embedder"]

EmbedFunction = Callable[[Sequence[str]], Sequence[Sequence[float]]]
"""Any function from texts to one vector per text (a list of lists, an array, ...)."""

EXACT_MAX_ROWS = 4_096
"""Up to this many vectors a search is exact (brute force, ~0.5 ms); above it a binary prefilter
picks candidates that are then rescored exactly, so a search costs about the same at 10,000 or
100,000 rows."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of one fixed space.

    ``model_id`` names the space: persisted vectors are keyed by it, so two embedders with the same
    id must give the same vectors. An embedder may also have ``embed_query(text) -> vector`` (as
    LangChain's ``Embeddings`` do): recall then embeds the query with it, on the request path,
    and stored turns with :meth:`embed`.

    Example:
        >>> class Ones:
        ...     model_id, dimension = "ones", 2
        ...     def embed(self, texts): return [[1.0, 1.0] for _ in texts]
        >>> isinstance(Ones(), Embedder)
        True
    """

    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One vector per text, shape ``(len(texts), dimension)``."""
        ...


class CallableEmbedder:
    """An :class:`Embedder` around a plain function ``texts -> vectors``.

    The vectors are checked for shape and L2-normalised (search ranks by cosine).

    Args:
        fn: Returns one vector of ``dimension`` floats per text.
        model_id: Names the vector space (persisted vectors are keyed by it).
        dimension: Length of every vector.

    Example:
        >>> e = CallableEmbedder(lambda texts: [[float(len(t)), 1.0] for t in texts],
        ...                      model_id="len-v1", dimension=2)
        >>> [round(float(x), 3) for x in e.embed(["ab"])[0]]
        [0.894, 0.447]
    """

    def __init__(self, fn: EmbedFunction, *, model_id: str, dimension: int) -> None:
        if not callable(fn):
            raise InvalidConfigError(f"fn must be callable (texts -> vectors); got {fn!r}")
        if not isinstance(model_id, str) or not model_id:
            raise InvalidConfigError(f"model_id must be a non-empty str; got {model_id!r}")
        check_int("dimension", dimension, 1)
        self.fn = fn
        self.model_id = model_id
        self.dimension = dimension

    def __repr__(self) -> str:
        return f"CallableEmbedder(model_id={self.model_id!r}, dimension={self.dimension})"

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The function's vectors as a float32 array of unit rows.

        Raises:
            InvalidConfigError: The function returned the wrong number or length of vectors.
        """
        import numpy as np

        texts = list(texts)
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        out = np.asarray(self.fn(texts), dtype=np.float32)
        if out.shape != (len(texts), self.dimension):
            raise InvalidConfigError(
                f"embedder {self.model_id!r} must return {len(texts)} vectors of dimension "
                f"{self.dimension}; got an array of shape {out.shape}"
            )
        return normalize(out)


def as_embedder(
    fn: Embedder | EmbedFunction, *, model_id: str | None = None, dimension: int | None = None
) -> Embedder:
    """``fn`` itself when it already is an :class:`Embedder`, else a :class:`CallableEmbedder`.

    Example:
        >>> e = as_embedder(lambda texts: [[1.0, 0.0]] * len(texts), model_id="const", dimension=2)
        >>> e.model_id, e.embed(["a", "b"]).shape
        ('const', (2, 2))
    """
    if isinstance(fn, Embedder):
        return fn
    if model_id is None or dimension is None:
        raise InvalidConfigError(
            f"a plain embedding function needs model_id and dimension; got model_id={model_id!r}, "
            f"dimension={dimension!r}"
        )
    return CallableEmbedder(fn, model_id=model_id, dimension=dimension)


def normalize(vectors: FloatArray) -> FloatArray:
    """Rows scaled to unit length (zero rows stay zero)."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    out: FloatArray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return out


def _popcount(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    import numpy as np

    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        counted: npt.NDArray[np.uint8] = np.bitwise_count(words)
        return counted
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    per_byte = table[words.view(np.uint8)].reshape(*words.shape, 8)
    summed: npt.NDArray[np.uint8] = per_byte.sum(axis=-1, dtype=np.uint8)
    return summed


class VectorIndex:
    """Unit vectors in one growing float32 matrix, searched by cosine similarity.

    Append-only, keyed by integer ids (turn recall uses unit indexes). Up to ``exact_max_rows``
    vectors a search is exact brute force. Beyond that, a sign-bit code of each (centred) vector
    is kept beside it: a query first ranks every row by Hamming distance over those codes (48
    bytes a row instead of 1,536), then rescores the best ``candidates`` rows exactly. The centre is
    re-fitted, and the codes rebuilt, each time the index doubles. Thread-safe.

    Args:
        dimension: Length of every vector.
        exact_max_rows: Largest size searched exactly.
        candidates: Rows rescored exactly per query above ``exact_max_rows`` (at least ``k``).

    Example:
        >>> index = VectorIndex(2)
        >>> index.add([10, 11], [[1.0, 0.0], [0.0, 1.0]])
        >>> [(i, round(s, 3)) for i, s in index.search([0.9, 0.1], k=1)]
        [(10, 0.994)]
    """

    def __init__(
        self, dimension: int, *, exact_max_rows: int = EXACT_MAX_ROWS, candidates: int = 1024
    ) -> None:
        check_int("dimension", dimension, 1)
        check_int("exact_max_rows", exact_max_rows, 0)
        check_int("candidates", candidates, 1)
        import numpy as np

        self.dimension = dimension
        self.exact_max_rows = exact_max_rows
        self.candidates = candidates
        self._lock = threading.RLock()
        self._n = 0
        self._matrix: FloatArray = np.zeros((64, dimension), dtype=np.float32)
        self._ids: npt.NDArray[np.int64] = np.zeros(64, dtype=np.int64)
        self._rows: dict[int, int] = {}
        self._words = (dimension + 63) // 64
        self._codes: npt.NDArray[np.uint64] | None = None  # (words, capacity), column per row
        self._coded = 0  # rows [0, _coded) have codes
        self._fitted_at = 0  # size when the centre was last fitted
        self._centre: FloatArray | None = None

    def __len__(self) -> int:
        return self._n

    def __contains__(self, item: object) -> bool:
        return item in self._rows

    def ids(self) -> list[int]:
        """Every id, in insertion order."""
        with self._lock:
            return [int(i) for i in self._ids[: self._n]]

    def vector(self, item: int) -> FloatArray:
        """The stored (unit-length) vector of ``item`` (a copy)."""
        with self._lock:
            row: FloatArray = self._matrix[self._rows[item]].copy()
            return row

    def add(self, ids: Sequence[int], vectors: Sequence[Sequence[float]] | FloatArray) -> None:
        """Append vectors (normalised here) under new ids.

        Raises:
            InvalidConfigError: An id is already present, or the vectors have the wrong shape.
        """
        import numpy as np

        block = np.asarray(vectors, dtype=np.float32)
        if block.ndim != 2 or block.shape != (len(ids), self.dimension):
            raise InvalidConfigError(
                f"vectors must have shape ({len(ids)}, {self.dimension}); got {block.shape}"
            )
        block = normalize(block)
        with self._lock:
            fresh = set()
            for item in ids:
                if item in self._rows or item in fresh:
                    raise InvalidConfigError(f"id {item!r} is already in the index; ids are unique")
                fresh.add(item)
            need = self._n + len(ids)
            if need > len(self._matrix):
                capacity = max(need, 2 * len(self._matrix))
                matrix = np.zeros((capacity, self.dimension), dtype=np.float32)
                matrix[: self._n] = self._matrix[: self._n]
                id_column = np.zeros(capacity, dtype=np.int64)
                id_column[: self._n] = self._ids[: self._n]
                self._matrix, self._ids = matrix, id_column
            self._matrix[self._n : need] = block
            self._ids[self._n : need] = ids
            for offset, item in enumerate(ids):
                self._rows[int(item)] = self._n + offset
            self._n = need

    def _query(self, query: Sequence[float] | FloatArray) -> FloatArray:
        import numpy as np

        q = normalize(np.asarray(query, dtype=np.float32).reshape(-1))
        if q.shape != (self.dimension,):
            raise InvalidConfigError(
                f"query must have dimension {self.dimension}; got shape {q.shape}"
            )
        return q

    def similarities(self, query: Sequence[float] | FloatArray, *, at_least: int = 0) -> FloatArray:
        """The cosine similarity of every row (in insertion order) to ``query``.

        Exact up to ``exact_max_rows`` rows. Above, only the prefilter's candidates (at least
        ``max(candidates, at_least)`` rows) are scored exactly; every other row gets the lowest of
        those scores, so it ranks after all of them.
        """
        import numpy as np

        q = self._query(query)
        with self._lock:
            n = self._n
            if n <= self.exact_max_rows:
                return _dot(self._matrix[:n], q)
            rows, scores = self._candidates(q, at_least)
            out = np.full(n, scores.min(), dtype=np.float32)
            out[rows] = scores
            return out

    def search(
        self,
        query: Sequence[float] | FloatArray,
        k: int,
        *,
        exclude: Container[int] = frozenset(),
    ) -> list[tuple[int, float]]:
        """The ``k`` ids most similar to ``query`` by cosine, best first, skipping ``exclude``.

        Raises:
            InvalidConfigError: ``query`` has the wrong dimension.
        """
        import numpy as np

        q = self._query(query)
        with self._lock:
            n = self._n
            skip = np.array([self._rows[i] for i in _members(exclude, self._rows)], dtype=np.intp)
            want = min(k, n - len(skip))
            if want <= 0:
                return []
            if n <= self.exact_max_rows:
                rows = np.arange(n)
                scores = _dot(self._matrix[:n], q)
                scores[skip] = -np.inf
            else:
                rows, scores = self._candidates(q, want + len(skip))
                scores[np.isin(rows, skip)] = -np.inf
            sub, best = _top(scores, want)
            ids = self._ids[rows[sub]]
        return [(int(i), float(s)) for i, s in zip(ids.tolist(), best.tolist(), strict=True)]

    def _candidates(self, q: FloatArray, at_least: int) -> tuple[npt.NDArray[np.intp], FloatArray]:
        """Rows picked by the sign-bit prefilter, and their exact cosines."""
        self._refresh_codes()
        pool = min(self._n, max(self.candidates, at_least))
        rows = _smallest(self._hamming(q), pool, self._words * 64)
        scores = _dot(self._matrix[rows], q)
        return rows, scores

    # ----------------------------------------------------------------------------- prefilter

    def _refresh_codes(self) -> None:
        """Codes for every row; re-centre (and rebuild all codes) when the index has doubled."""
        import numpy as np

        n = self._n
        if self._centre is None or n >= 2 * self._fitted_at:
            self._centre = self._matrix[:n].mean(axis=0)
            self._fitted_at = n
            self._coded = 0
        if self._codes is None or self._codes.shape[1] < n:
            codes = np.zeros((self._words, len(self._matrix)), dtype=np.uint64)
            if self._codes is not None:
                codes[:, : self._coded] = self._codes[:, : self._coded]
            self._codes = codes
        if self._coded < n:
            self._codes[:, self._coded : n] = self._encode(self._matrix[self._coded : n]).T
            self._coded = n

    def _encode(self, rows: FloatArray) -> npt.NDArray[np.uint64]:
        import numpy as np

        assert self._centre is not None
        bits = np.packbits(rows - self._centre > 0, axis=-1)
        pad = self._words * 8 - bits.shape[-1]
        if pad:
            bits = np.pad(bits, [(0, 0)] * (bits.ndim - 1) + [(0, pad)])
        words: npt.NDArray[np.uint64] = np.ascontiguousarray(bits).view(np.uint64)
        return words

    def _hamming(self, q: FloatArray) -> npt.NDArray[np.uint16]:
        import numpy as np

        assert self._codes is not None
        n = self._n
        qcode = self._encode(q[None, :])[0]
        acc = _popcount(self._codes[0, :n] ^ qcode[0]).astype(np.uint16)
        for w in range(1, self._words):
            acc += _popcount(self._codes[w, :n] ^ qcode[w])
        return acc


def _dot(rows: FloatArray, q: FloatArray) -> FloatArray:
    """``rows @ q`` on the calling thread.

    numpy's own loop, not BLAS: a multi-threaded BLAS call leaves its threads spinning for a while
    afterwards, and on a small machine they then take the cores the query embedder needs (measured:
    a MiniLM query went from 8 to 17 ms after a 10,000-row BLAS product on 2 cores).
    """
    import numpy as np

    out: FloatArray = np.einsum("ij,j->i", rows, q)
    return out


def _members(exclude: Container[int], rows: dict[int, int]) -> list[int]:
    """The ids of ``exclude`` that are in the index (any container, iterable or not)."""
    if isinstance(exclude, set | frozenset | list | tuple | range | dict):
        return [i for i in exclude if i in rows]
    return [i for i in rows if i in exclude]


def _smallest(distances: npt.NDArray[np.uint16], count: int, most: int) -> npt.NDArray[np.intp]:
    """Positions of ``count`` smallest distances (ties at the cut: lowest positions), by histogram.

    Distances are small integers, so a histogram finds the cut in one pass: cheaper than a
    partition of the whole array.
    """
    import numpy as np

    histogram = np.bincount(distances, minlength=most + 1)
    cut = int(np.searchsorted(np.cumsum(histogram), count))  # the distance that completes count
    below = np.flatnonzero(distances < cut)
    at = np.flatnonzero(distances == cut)[: count - len(below)]
    picked: npt.NDArray[np.intp] = np.concatenate([below, at])
    return picked


def _top(scores: FloatArray, k: int) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """Positions of the ``k`` highest scores, best first (ties: lower position first)."""
    import numpy as np

    n = len(scores)
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    order = part[np.lexsort((part, -scores[part]))]
    return order, scores[order]
