"""Counts checked against published, API-confirmed figures (fixtures copied from ../shared/data)."""

from __future__ import annotations

from typing import Any

import pytest
from windowkeeper import Message, TokenCounter, load_encoding, messages_from_openai

STRING_ENCODINGS = ("cl100k_base", "o200k_base")


@pytest.mark.parametrize("encoding", STRING_ENCODINGS)
def test_token_ids_match_the_cookbook(cookbook: Any, encoding: str) -> None:
    enc = load_encoding(encoding)
    for text, expected in cookbook["string_examples"].items():
        assert enc.encode(text) == expected[encoding]["ids"], text
        assert enc.count(text) == expected[encoding]["count"]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4", 129),
        ("gpt-3.5-turbo", 129),
        ("gpt-4o", 124),
        ("gpt-4o-mini", 124),
        ("gpt-3.5-turbo-0301", 127),
        ("gpt-4-0613", 129),
        ("gpt-3.5-turbo-0613", 129),
    ],
)
def test_cookbook_chat_example(cookbook: Any, model: str, expected: int) -> None:
    messages = messages_from_openai(cookbook["chat_example"]["messages"])
    assert TokenCounter(model).count_messages(messages) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-4", 105), ("gpt-3.5-turbo", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_cookbook_weather_tool_example(cookbook: Any, model: str, expected: int) -> None:
    example = cookbook["tools_example"]
    counter = TokenCounter(model)
    assert (
        counter.count_messages(messages_from_openai(example["messages"]), tools=example["tools"])
        == expected
    )


def test_all_36_hmarr_cases_exactly(hmarr: Any) -> None:
    counter = TokenCounter("gpt-3.5-turbo")
    cases = hmarr["cases"]
    assert len(cases) == 36
    got = [
        counter.count_messages(
            messages_from_openai(c["messages"]),
            tools=c.get("functions"),
            tool_choice=c.get("function_call"),
        )
        for c in cases
    ]
    assert got == [c["tokens"] for c in cases]


def test_pamelafox_system_and_tools_within_upstream_tolerance(pamelafox: Any) -> None:
    counter = TokenCounter("gpt-3.5-turbo")  # the API figures come from a gpt-35-turbo deployment
    cases = pamelafox["system_and_tools"]
    assert len(cases) == 18
    for case in cases:
        got = counter.count_messages(
            [Message.from_openai(case["system_message"])],
            tools=case["tools"],
            tool_choice=case.get("tool_choice"),
        )
        assert case["count"] <= got <= case["count"] + 3, case["name"]


@pytest.mark.parametrize(("model", "key"), [("gpt-4-turbo", "count"), ("gpt-4o", "count_omni")])
def test_pamelafox_single_messages_exactly(pamelafox: Any, model: str, key: str) -> None:
    counter = TokenCounter(model)
    cases = pamelafox["messages"]
    assert len(cases) == 14
    for case in cases:
        assert counter.count_messages([Message.from_openai(case["message"])]) == case[key], case[
            "name"
        ]


def test_tool_choice_forms_change_the_count(cookbook: Any) -> None:
    example = cookbook["tools_example"]
    messages = messages_from_openai(example["messages"])
    counter = TokenCounter("gpt-4o")
    base = counter.count_messages(messages, tools=example["tools"])
    named = {"type": "function", "function": {"name": "get_current_weather"}}
    assert counter.count_messages(messages, tools=example["tools"], tool_choice="none") == base + 1
    assert counter.count_messages(messages, tools=example["tools"], tool_choice="auto") == base
    assert counter.count_messages(messages, tools=example["tools"], tool_choice=named) == (
        base + 7 + counter.count("get_current_weather")
    )
