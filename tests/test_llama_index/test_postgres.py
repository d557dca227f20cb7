"""The LlamaIndex memory on PostgreSQL: our shared store, and LlamaIndex's own Postgres chat store."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import MockLLM
from llama_index.memory.windowkeeper import WindowkeeperMemory
from llama_index.storage.chat_store.postgres import PostgresChatStore
from windowkeeper import PostgresStore

from tests.conftest import Postgres


def test_two_app_servers_share_the_conversation(postgres: Postgres, pg_schema: str) -> None:
    session = f"ann-{pg_schema}"
    a = WindowkeeperMemory(session_id=session, path=postgres.dsn, strategy="window")
    b = WindowkeeperMemory(session_id=session, path=postgres.dsn, strategy="window")
    assert isinstance(a.core.store, PostgresStore)
    a.put_messages(
        [
            ChatMessage(role=MessageRole.USER, content="My order is A-17."),
            ChatMessage(role=MessageRole.ASSISTANT, content="Noted."),
        ]
    )
    # b never saw that turn: it reads it from the shared store
    assert [m.content for m in b.get()] == ["My order is A-17.", "Noted."]
    b.put_messages(
        [
            ChatMessage(role=MessageRole.USER, content="When does it ship?"),
            ChatMessage(role=MessageRole.ASSISTANT, content="Today."),
        ]
    )
    assert [m.content for m in a.get_all()] == [
        "My order is A-17.",
        "Noted.",
        "When does it ship?",
        "Today.",
    ]
    engine = SimpleChatEngine.from_defaults(llm=MockLLM(max_tokens=5), memory=a)
    engine.chat("And the tracking number?")
    assert [m.content for m in b.get_all()][-2] == "And the tracking number?"
    assert len(b.get_all()) == 6  # each turn stored once


def _chat_store(dsn: str, table: str) -> PostgresChatStore:
    """LlamaIndex's Postgres chat store over the test server's unix socket (sync and async)."""
    url = urlparse(dsn)
    host = parse_qs(url.query)["host"][0]
    user = url.username or "postgres"
    database = url.path.lstrip("/") or "postgres"
    return PostgresChatStore.from_params(
        connection_string=f"postgresql+psycopg://{user}@/{database}?host={host}",
        async_connection_string=f"postgresql+asyncpg://{user}@/{database}?host={host}",
        table_name=table,
    )


def test_llama_index_postgres_chat_store_continues_after_a_restart(
    postgres: Postgres, pg_schema: str
) -> None:
    if "host=" not in postgres.dsn:  # pragma: no cover - a server given by the environment
        import pytest

        pytest.skip("this test builds a unix-socket URL for LlamaIndex's chat store")
    store = _chat_store(postgres.dsn, table=pg_schema)
    reopened = _chat_store(postgres.dsn, table=pg_schema)
    try:
        _continue_after_restart(store, reopened)
    finally:  # SQLAlchemy's pools hold psycopg connections until disposed
        for chat_store in (store, reopened):
            chat_store._session.kw["bind"].dispose()


def _continue_after_restart(store: PostgresChatStore, reopened: PostgresChatStore) -> None:
    first = WindowkeeperMemory(session_id="bob", chat_store=store, strategy="window", path=None)
    first.put_messages(
        [
            ChatMessage(role=MessageRole.USER, content="I moved to Porto."),
            ChatMessage(role=MessageRole.ASSISTANT, content="Address updated."),
            ChatMessage(role=MessageRole.USER, content="Thanks!"),
        ]
    )
    # a restart: a new process, a new chat store object on the same table
    again = WindowkeeperMemory(session_id="bob", chat_store=reopened, path=None)
    assert [m.content for m in again.get_all()] == [
        "I moved to Porto.",
        "Address updated.",
        "Thanks!",
    ]
    assert [m.content for m in again.get()][-1] == "Thanks!"  # the turn in progress, held


async def test_the_async_methods_work_on_the_shared_store(
    postgres: Postgres, pg_schema: str
) -> None:
    memory = WindowkeeperMemory(
        session_id=f"async-{pg_schema}", path=postgres.dsn, strategy="window"
    )
    await memory.aput_messages(
        [
            ChatMessage(role=MessageRole.USER, content="Hi, order A-9?"),
            ChatMessage(role=MessageRole.ASSISTANT, content="Shipped."),
        ]
    )
    await memory.aput(ChatMessage(role=MessageRole.USER, content="Thanks"))
    assert [m.content for m in await memory.aget()] == ["Hi, order A-9?", "Shipped.", "Thanks"]
    assert len(await memory.aget_all()) == 3
