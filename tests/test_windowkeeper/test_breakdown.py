from __future__ import annotations

from windowkeeper import TokenCounter, breakdown

COUNT = TokenCounter("gpt-4o").count


def test_prose_packs_more_chars_per_token_than_json_and_cjk() -> None:
    prose = breakdown(
        "The quick brown fox jumps over the lazy dog near the riverbank today. " * 5, COUNT
    )
    data = breakdown(
        '{"order_id": "NW-48213-77", "items": [{"sku": "A-1", "qty": 2}], "ok": true}', COUNT
    )
    cjk = breakdown("お誕生日おめでとうございます。今日はとても良い天気ですね。", COUNT)
    assert prose.shares[0].kind == "prose"
    assert data.shares[0].kind == "json"
    assert cjk.shares[0].kind == "cjk"
    assert prose.share("prose").chars_per_token > 2 * cjk.share("cjk").chars_per_token
    assert prose.share("prose").chars_per_token > data.share("json").chars_per_token


def test_mixed_text_is_split_and_covers_every_character() -> None:
    text = (
        "Your refund of 249.99 EUR for order 48213 is on its way.\n"
        "Track it at https://example.com/track?id=48213 today.\n"
        "```python\ndef total(items):\n    return sum(i.price for i in items)\n```\n"
        "東京の倉庫から発送されました。\n"
    )
    b = breakdown(text, COUNT)
    kinds = {s.kind for s in b.shares}
    assert {"prose", "number", "url", "code", "cjk"} <= kinds
    assert sum(s.chars for s in b.shares) == len(text)
    assert b.total_tokens == COUNT(text)
    assert abs(b.boundary_tokens) <= 10


def test_empty_text() -> None:
    b = breakdown("", COUNT)
    assert b.total_tokens == 0
    assert b.shares == ()
    assert b.share("prose").chars_per_token == 0.0


def test_a_json_line_inside_prose_is_json_not_code() -> None:
    text = 'The tool returned:\n{"order_id": "NW-1", "status": "shipped"}\nThanks.\n'
    b = breakdown(text, COUNT)
    assert b.share("json").chars == len('{"order_id": "NW-1", "status": "shipped"}\n')
    assert b.share("code").chars == 0
