"""Helpers every framework adapter shares, so no adapter re-implements them.

Adapters translate: they convert a framework's messages to core :class:`~windowkeeper.Message`
objects and back, and plug a framework's embeddings into recall. What they have in common lives
here: converting a list with errors that name the position, the upper-bound cost of a content
block the core cannot count, the comparison of parts a store may normalise, and an
:class:`~windowkeeper.Embedder` over a framework's pair of document and query functions.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from windowkeeper._assembler import check_compress_zones
from windowkeeper._compression import check_compressor
from windowkeeper._messages import ContentPart, Message, TextPart
from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError, InvalidMessageError
from windowkeeper.memory._base import MemoryView
from windowkeeper.memory._vectors import Embedder, normalize

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "ConvertedUnits",
    "PairEmbedder",
    "call_blocking",
    "check_compress_zones",
    "check_compressor",
    "convert_each",
    "document_vectors",
    "nonempty_parts",
    "query_vector",
    "upper_bound_tokens",
]

_T = TypeVar("_T")


def convert_each(items: Iterable[_T], convert: Callable[[_T], Message]) -> list[Message]:
    """``convert`` over ``items``; a refused item's error names its position.

    Example:
        >>> convert_each(["hi"], lambda s: Message(role="user", content=s))[0].text
        'hi'
    """
    out: list[Message] = []
    for i, item in enumerate(items):
        try:
            out.append(convert(item))
        except InvalidMessageError as exc:
            raise InvalidMessageError(str(exc), index=i) from None
    return out


def upper_bound_tokens(block: Mapping[str, Any]) -> int:
    """Tokens a content block the core cannot count may cost at most: one per byte of its JSON.

    A BPE token is at least one byte, so this is never below what the text of the block costs.

    Example:
        >>> upper_bound_tokens({"type": "file", "file": {"id": "f-1"}})
        39
    """
    return len(json.dumps(block, ensure_ascii=False, default=str).encode())


def nonempty_parts(parts: Sequence[ContentPart]) -> tuple[ContentPart, ...]:
    """``parts`` without empty text: a store may write ``[""]`` as ``""``, which reads back as none.

    Example:
        >>> nonempty_parts((TextPart(text=""), TextPart(text="a")))
        (TextPart(text='a'),)
    """
    return tuple(p for p in parts if not (isinstance(p, TextPart) and not p.text))


class PairEmbedder:
    """An :class:`~windowkeeper.Embedder` over a framework's document and query functions.

    Stored turns go through ``documents`` (off the request path) and the query through ``query``,
    as frameworks that embed the two differently expect; the core L2-normalises the vectors.

    Args:
        documents: ``texts -> vectors`` (LangChain ``embed_documents``, LlamaIndex
            ``get_text_embedding_batch``).
        query: ``text -> vector`` (``embed_query``, ``get_query_embedding``).
        model_id: Names the vector space: persisted vectors are keyed by it.
        dimension: Vector size; default: measured once by embedding a short text.

    Example:
        >>> e = PairEmbedder(lambda ts: [[1.0, 0.0] for _ in ts], lambda t: [0.0, 1.0], model_id="toy")
        >>> e.dimension, e.embed(["a"]).shape, e.embed_query("q").tolist()
        (2, (1, 2), [0.0, 1.0])
    """

    def __init__(
        self,
        documents: Callable[[list[str]], Sequence[Sequence[float]]],
        query: Callable[[str], Sequence[float]],
        *,
        model_id: str,
        dimension: int | None = None,
    ) -> None:
        if not isinstance(model_id, str) or not model_id:
            raise InvalidConfigError(f"model_id must be a non-empty str; got {model_id!r}")
        self._documents = documents
        self._query = query
        self.model_id = model_id
        if dimension is None:
            dimension = len(query("windowkeeper dimension probe"))
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise InvalidConfigError(f"dimension must be an int >= 1; got {dimension!r}")
        self.dimension = dimension

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r}, dimension={self.dimension})"

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Stored texts; shape ``(len(texts), dimension)``."""
        import numpy as np

        texts = list(texts)
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return np.asarray(self._documents(texts), dtype=np.float32)

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        """The query."""
        import numpy as np

        return np.asarray(self._query(text), dtype=np.float32)


class ConvertedUnits(Generic[_T]):
    """Framework copies of the stored units a memory shows, kept between calls.

    A memory shows mostly the same recent units turn after turn, and stored units never change,
    so an adapter converts each shown unit's messages back to framework objects once and reuses
    them while the unit stays in view (a session keeps only the units of its last view). Blocks
    the memory makes for one view (a summary, recalled turns) are converted each time.

    Args:
        convert: One core message to the framework's message.
        max_sessions: Sessions kept (the least recently used are dropped).

    Example:
        >>> from windowkeeper import MemoryView, Unit
        >>> unit = Unit(index=0, messages=(Message(role="user", content="hi"),))
        >>> cache = ConvertedUnits(lambda m: m.text.upper())
        >>> cache.view_messages("ann", MemoryView(recent=(unit,)))
        ['HI']
    """

    def __init__(self, convert: Callable[[Message], _T], *, max_sessions: int = 1024) -> None:
        self.convert = convert
        self.max_sessions = max_sessions
        self._shown: OrderedDict[str, dict[int, list[_T]]] = OrderedDict()
        self._lock = threading.Lock()

    def mapping(self, session_id: str, units: Sequence[Unit]) -> dict[int, _T]:
        """``id(core message) -> framework message`` for every message of ``units``."""
        with self._lock:
            cached = self._shown.pop(session_id, {})
        shown: dict[int, list[_T]] = {}
        out: dict[int, _T] = {}
        for unit in units:
            converted = cached.get(unit.index)
            if converted is None:
                converted = [self.convert(m) for m in unit.messages]
            shown[unit.index] = converted
            for message, item in zip(unit.messages, converted, strict=True):
                out[id(message)] = item
        with self._lock:
            self._shown[session_id] = shown
            while len(self._shown) > self.max_sessions:
                self._shown.popitem(last=False)
        return out

    def view_messages(self, session_id: str, view: MemoryView) -> list[_T]:
        """The view's messages as framework messages (stored units from the cache)."""
        known = self.mapping(session_id, view.recent)
        return [
            item if (item := known.get(id(m))) is not None else self.convert(m)
            for m in view.messages()
        ]

    def forget(self, session_id: str) -> None:
        """Drop a session's converted units (after its view starts afresh)."""
        with self._lock:
            self._shown.pop(session_id, None)


def document_vectors(embedder: Embedder, texts: Sequence[str]) -> list[list[float]]:
    """``embedder``'s vectors for stored texts as L2-normalised lists (a framework's format).

    Example:
        >>> from windowkeeper import as_embedder
        >>> e = as_embedder(lambda ts: [[3.0, 4.0] for _ in ts], model_id="toy", dimension=2)
        >>> document_vectors(e, ["a"])
        [[0.6000000238418579, 0.800000011920929]]
    """
    return _rows(embedder.embed(list(texts))) if texts else []


def query_vector(embedder: Embedder, text: str) -> list[float]:
    """The vector of a query: ``embedder.embed_query`` when it has one (as recall uses it)."""
    embed_query = getattr(embedder, "embed_query", None)
    if callable(embed_query):
        return _rows([embed_query(text)])[0]
    return _rows(embedder.embed([text]))[0]


def _rows(vectors: Any) -> list[list[float]]:
    import numpy as np

    array = normalize(np.asarray(vectors, dtype=np.float32))
    return [[float(x) for x in row] for row in array]


async def call_blocking(store: object, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)`` from a framework's async method, off the event loop when needed.

    A store other processes share (``store.shared``, PostgreSQL) answers over the network, so
    the call runs on a worker thread and the event loop keeps serving other requests; with an
    in-process or SQLite store it runs inline (a thread hop would cost more than the call).
    """
    if getattr(store, "shared", False) is True:
        import asyncio

        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)
