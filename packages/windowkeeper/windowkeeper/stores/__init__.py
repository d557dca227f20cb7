"""Where units live: the store protocol, an in-memory store and the SQLite store."""

from __future__ import annotations

from windowkeeper.stores._base import DEFAULT_SESSION, ConversationStore, StateStore, SummaryRecord
from windowkeeper.stores._memory import MemoryStore
from windowkeeper.stores._sqlite import Durability, SQLiteStore

__all__ = [
    "DEFAULT_SESSION",
    "ConversationStore",
    "Durability",
    "MemoryStore",
    "SQLiteStore",
    "StateStore",
    "SummaryRecord",
]
