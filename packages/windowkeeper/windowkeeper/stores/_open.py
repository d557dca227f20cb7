"""One way for every face to turn a store setting into a store."""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path

from windowkeeper.exceptions import InvalidConfigError
from windowkeeper.stores._base import ConversationStore
from windowkeeper.stores._memory import MemoryStore
from windowkeeper.stores._postgres import PostgresStore
from windowkeeper.stores._sqlite import SQLiteStore

__all__ = ["open_store", "shared_postgres"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")

_OPEN: dict[tuple[str, str], PostgresStore] = {}
_OPEN_LOCK = threading.Lock()


def shared_postgres(dsn: str, *, schema: str = "windowkeeper") -> PostgresStore:
    """The process's one :class:`PostgresStore` (and connection pool) for ``dsn`` and ``schema``.

    Memories of many sessions, or many memory objects built per request, then share one pool
    instead of opening one each. Closed when the interpreter exits.
    """
    key = (dsn, schema)
    with _OPEN_LOCK:
        store = _OPEN.get(key)
        if store is None or store.closed:
            store = _OPEN[key] = PostgresStore(dsn, schema=schema)
        return store


def open_store(store: ConversationStore | str | os.PathLike[str] | None) -> ConversationStore:
    """A store from a store object, a ``postgresql://`` URI, a SQLite file path, or ``None``.

    ``None`` gives an in-process :class:`MemoryStore` (gone when the process ends); a URI gives
    the process's shared :class:`PostgresStore` for it (:func:`shared_postgres`); any other str or
    path a :class:`SQLiteStore` file.
    """
    if store is None:
        return MemoryStore()
    if isinstance(store, str) and store.startswith(_POSTGRES_SCHEMES):
        return shared_postgres(store)
    if isinstance(store, (str, os.PathLike)):
        return SQLiteStore(Path(store))
    if isinstance(store, ConversationStore):
        return store
    raise InvalidConfigError(
        "store must be a ConversationStore, a postgresql:// URI, a SQLite file path or None; "
        f"got {type(store).__name__}"
    )


@atexit.register
def _close_shared() -> None:
    with _OPEN_LOCK:
        for store in _OPEN.values():
            store.close()
        _OPEN.clear()
