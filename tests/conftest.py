from __future__ import annotations

import json
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
