"""The LangChain faces on a PostgreSQL store shared by two app servers (real server, real agents).

Two ``create_agent`` apps stand for two servers behind a load balancer: each has its own
middleware (its own process state) and its own ``PostgresSaver`` connection, both on the same
database; a thread's turns are served alternately by one and the other.
"""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_windowkeeper import WindowkeeperChatMessageHistory, WindowkeeperMiddleware
from langgraph.checkpoint.postgres import PostgresSaver
from windowkeeper import PostgresStore
from windowkeeper.stores import open_store, shared_postgres

from tests.conftest import Postgres
from tests.test_langchain.fakes import RecordingChatModel, plain_answer

SYSTEM = "You are the support agent of Tidewater Outfitters."


def test_two_servers_serve_one_thread_and_store_each_turn_once(
    postgres: Postgres, pg_schema: str
) -> None:
    stores = [PostgresStore(postgres.dsn, schema=pg_schema) for _ in range(2)]
    with (
        PostgresSaver.from_conn_string(postgres.dsn) as saver_a,
        PostgresSaver.from_conn_string(postgres.dsn) as saver_b,
    ):
        saver_a.setup()
        models = [RecordingChatModel(script=plain_answer) for _ in range(2)]
        apps = [
            create_agent(
                model,
                system_prompt=SYSTEM,
                middleware=[
                    WindowkeeperMiddleware("gpt-4o", memory="window", store=store, embeddings=None)
                ],
                checkpointer=saver,
            )
            for model, store, saver in zip(models, stores, (saver_a, saver_b), strict=True)
        ]
        config = {"configurable": {"thread_id": f"thread-{pg_schema}"}}
        asks = [f"Question {i} about order TW-{100 + i}" for i in range(6)]
        for i, ask in enumerate(asks):
            apps[i % 2].invoke({"messages": [HumanMessage(ask)]}, config)
        # every request saw the whole thread so far, whichever server served it
        requests = [r for pair in zip(*(m.requests for m in models), strict=False) for r in pair]
        for i, request in enumerate(requests):
            users = [m.text for m in request if isinstance(m, HumanMessage)]
            assert users == asks[: i + 1]
    stored = stores[0].units(f"thread-{pg_schema}")
    # each turn stored once, in order, though the two servers took turns storing them
    assert [u.user.text for u in stored] == asks
    for store in stores:
        store.close()


def test_a_postgres_uri_is_a_store_everywhere(postgres: Postgres) -> None:
    """``store="postgresql://..."``: the process's one shared store (one pool), in every face."""
    uri = postgres.dsn
    assert open_store(uri) is shared_postgres(uri)
    history = WindowkeeperChatMessageHistory(f"h-{id(uri)}", store=uri, memory="window")
    history.add_messages([HumanMessage("hello")])
    assert isinstance(history.store, PostgresStore)
    middleware = WindowkeeperMiddleware("gpt-4o", memory="window", store=uri, embeddings=None)
    assert middleware.engine.store is history.store
