from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
TRANSCRIPT = ROOT / "examples" / "transcripts" / "support_agent.json"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def cookbook() -> Any:
    return load_fixture("openai_cookbook_token_counts.json")


@pytest.fixture(scope="session")
def hmarr() -> Any:
    return load_fixture("openai-chat-tokens_token-counts.test.json")


@pytest.fixture(scope="session")
def pamelafox() -> Any:
    return load_fixture("openai-messages-token-helper_fixtures.json")


# ---------------------------------------------------------------------------- PostgreSQL

POSTGRES_ENV = "WINDOWKEEPER_TEST_POSTGRES_DSN"
"""Point the PostgreSQL tests at your own server (a DSN); by default they start one (pgserver)."""


@dataclass
class Postgres:
    """A PostgreSQL server for the tests: its DSN, and the pgserver handle when we started it."""

    dsn: str
    server: Any = None

    def restart(self) -> None:
        """Stop the server (fast: open connections are cut) and start it again."""
        if self.server is None:
            pytest.skip(f"restarting needs the server the tests start ({POSTGRES_ENV} is set)")
        from pgserver._commands import pg_ctl

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )
        self.server.ensure_postgres_running()

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A real PostgreSQL 16 server (with pgvector) for the session, or the one the env names."""
    dsn = os.environ.get(POSTGRES_ENV)
    if dsn:
        yield Postgres(dsn)
        return
    import warnings

    folder = tmp_path_factory.mktemp("pgdata")
    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR on a CI runner
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield Postgres(server.get_uri(), server)
    finally:
        server.cleanup()


@pytest.fixture
def pg_schema(postgres: Postgres) -> str:
    """A fresh schema name for one test (tests share the server, never their tables)."""
    return f"t_{uuid.uuid4().hex[:12]}"
