"""Where units live: the store protocol, an in-memory store, SQLite, and PostgreSQL (shared)."""

from __future__ import annotations

from windowkeeper.stores._base import DEFAULT_SESSION, ConversationStore, StateStore, SummaryRecord
from windowkeeper.stores._memory import MemoryStore
from windowkeeper.stores._open import open_store, shared_postgres
from windowkeeper.stores._postgres import PostgresStore
from windowkeeper.stores._sqlite import Durability, SQLiteStore

__all__ = [
    "DEFAULT_SESSION",
    "ConversationStore",
    "Durability",
    "MemoryStore",
    "PostgresStore",
    "SQLiteStore",
    "StateStore",
    "SummaryRecord",
    "open_store",
    "shared_postgres",
]
