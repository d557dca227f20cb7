from __future__ import annotations

import itertools
import re

import pytest
from windowkeeper.exceptions import InvalidConfigError
from windowkeeper_llmlingua import find_spans, missing_spans

HOSTILE = (
    "Refund USD 1,234,567.89 (ref NW-48213-77) on 2024-03-17 at 14:05; dose 3.5 mg. "
    "See https://shop.example.com/orders?id=42&x=1, write to ann.lee+bills@example.co.uk, "
    "open ./conf/app.yaml or C:\\Users\\ann\\log.txt, run id 3f2b9c1e-7d4a-4b8e-9f00-1a2b3c4d5e6f.\n"
    "```python\nif x < 3:\n    y = {'a': 1}\n```\n"
    'Inline `pip install -U pkg` and {"k": [1, 2], "v": "w"} and sha 9fceb02d0ae598e95dc970b74767f19372d61af8.'
)


def kinds(text: str) -> dict[str, str]:
    return {s.text: s.kind for s in find_spans(text)}


def test_every_kind_of_hostile_span_is_found_whole() -> None:
    found = kinds(HOSTILE)
    for expected in [
        "USD 1,234,567.89",
        "NW-48213-77",
        "2024-03-17",
        "14:05",
        "3.5 mg",
        "https://shop.example.com/orders?id=42&x=1",
        "ann.lee+bills@example.co.uk",
        "./conf/app.yaml",
        "C:\\Users\\ann\\log.txt",
        "3f2b9c1e-7d4a-4b8e-9f00-1a2b3c4d5e6f",
        "```python\nif x < 3:\n    y = {'a': 1}\n```",
        "`pip install -U pkg`",
        '{"k": [1, 2], "v": "w"}',
        "9fceb02d0ae598e95dc970b74767f19372d61af8",
    ]:
        assert expected in found, (expected, found)


def test_spans_are_sorted_and_never_overlap() -> None:
    spans = find_spans(HOSTILE)
    for a, b in itertools.pairwise(spans):
        assert a.end <= b.start
    assert all(HOSTILE[s.start : s.end] == s.text for s in spans)


def test_user_patterns_and_defaults_off() -> None:
    text = "ticket TCK/77 for Ann, amount 12"
    assert [s.text for s in find_spans(text, [r"TCK/\d+"], defaults=False)] == ["TCK/77"]
    assert [s.text for s in find_spans(text, [re.compile("Ann")], defaults=False)] == ["Ann"]
    with pytest.raises(InvalidConfigError, match=r"protect pattern '\(' is not a valid regex"):
        find_spans(text, ["("])
    with pytest.raises(InvalidConfigError, match="protect must hold regular expressions"):
        find_spans(text, [3])  # type: ignore[list-item]


def test_missing_spans_finds_a_mangled_number() -> None:
    spans = find_spans("paid on 2024-03-17 to /srv/app/run.sh")
    assert missing_spans(spans, "paid 2024-03-17 to /srv/app/run.sh") == []
    lost = missing_spans(spans, "paid 202-0-17 to //wind/.yaml")
    assert [s.text for s in lost] == ["2024-03-17", "/srv/app/run.sh"]
