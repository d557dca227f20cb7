"""Fact notes, the default summariser: extractive, deterministic, nothing invented, within the cap."""

from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from windowkeeper import InvalidConfigError, Message, TokenCounter, ToolCall
from windowkeeper._units import Unit
from windowkeeper.memory import FactNotes, RollingSummary, SummaryKeeper, render_unit
from windowkeeper.memory._facts import fact_terms, sentence_weight
from windowkeeper.memory._keeper import split_newest

COUNTER = TokenCounter("gpt-4o")
NOTES = FactNotes(counter=COUNTER)


def unit(index: int, *messages: Message, stamp: str | None = None) -> Unit:
    return Unit(index=index, messages=messages, timestamp=stamp)


def user(text: str, name: str | None = None) -> Message:
    return Message(role="user", content=text, name=name)


def assistant(text: str) -> Message:
    return Message(role="assistant", content=text)


def test_notes_keep_the_facts_and_drop_the_chatter() -> None:
    units = [
        unit(
            0,
            user("Hi! I ordered a monitor on March 3, order NW-48213-77. Thanks so much."),
            assistant(
                "I'm sorry to hear that! Let me check. The refund RF-7731-0459 of $19.95 is issued."
            ),
            stamp="2026-03-14T10:02:11Z",
        ),
        unit(1, user("Great, thank you!"), assistant("You're welcome, have a nice day!")),
    ]
    notes = NOTES("", units)
    assert notes.splitlines() == [
        "[2026-03-14]",  # the day of the unit's timestamp
        "#0 user: I ordered a monitor on March 3, order NW-48213-77.",
        "#0 assistant: The refund RF-7731-0459 of $19.95 is issued.",
    ]
    assert "Thanks so much" not in notes
    assert "#1" not in notes  # nothing in unit 1 is a fact
    assert NOTES("", units) == notes  # deterministic


def test_a_fact_already_noted_earns_no_second_sentence() -> None:
    first = NOTES("", [unit(0, user("My order is NW-1234-56 and it is late."))])
    again = NOTES(first, [unit(1, user("Again: my order is NW-1234-56."))])
    assert again == first
    more = NOTES(first, [unit(1, user("Order NW-1234-56 now ships on May 2."))])
    assert more.endswith("#1 user: Order NW-1234-56 now ships on May 2.")


def test_tool_results_become_their_fact_fields() -> None:
    call = ToolCall(id="call_1", name="issue_refund", arguments='{"amount": 19.95}')
    result = {
        "refund_id": "RF-7731-0459",
        "status": "submitted",
        "amount": 19.95,
        "created_at": "2026-03-14T10:11:39Z",
        "note": "x" * 200,
        "destination": {"last4": "4402"},
    }
    notes = NOTES(
        "",
        [
            unit(
                4,
                user("Refund the shipping fee please."),
                Message(role="assistant", tool_calls=(call,)),
                Message(role="tool", tool_call_id="call_1", content=json.dumps(result)),
                assistant("Done: refund RF-7731-0459 is on its way."),
            )
        ],
    )
    line = next(ln for ln in notes.splitlines() if ln.startswith("#4 issue_refund result:"))
    assert "status submitted" in line
    assert "last4 4402" in line
    assert "RF-7731-0459" not in line  # said in the chat: not repeated from the tool
    assert "created_at" not in line  # a timestamp to the second is noise
    assert "xxxx" not in line


def test_a_long_sentence_keeps_its_clauses_with_facts() -> None:
    long = (
        "Well, to be honest it has been a really long and tiring week for everyone involved here; "
        "the replacement for order NW-50177-31 ships on Monday, March 16 with FedEx; "
        "and honestly nobody could have predicted any of this at all, could they, not really."
    )
    notes = NOTES("", [unit(0, assistant(long))])
    assert "NW-50177-31" in notes
    assert "tiring week" not in notes


WORDS = st.sampled_from(
    ["order", "refund", "Ann", "Berlin", "ships", "on", "May", "the", "$19.95", "NW-1234-56",
     "42", "is", "late", "please", "thanks", "I", "love", "pottery", "2026-03-14", "?", "!", "."]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.lists(WORDS, min_size=1, max_size=14), min_size=1, max_size=3),
                min_size=1, max_size=6))  # fmt: skip
def test_nothing_is_invented(turns: list[list[list[str]]]) -> None:
    units = [
        unit(i, *(Message(role="user" if j == 0 else "assistant", content=" ".join(words))
                  for j, words in enumerate(turn)))
        for i, turn in enumerate(turns)
    ]  # fmt: skip
    source = " ".join(render_unit(u) for u in units)
    marks = string.punctuation + "…"
    words = {w.strip(marks) for w in source.split()}
    notes = NOTES("", units)
    for line in notes.splitlines():
        body = re.sub(r"^#\d+ [^:]+: ", "", line)
        for word in body.split():
            assert word.strip(marks) in words, (word, line)
    short = NOTES.condense(notes, 40)
    assert COUNTER.count(short) <= 40
    assert set(short.splitlines()) <= set(notes.splitlines()) | {
        ln for ln in short.splitlines() if ln.startswith("#")
    }


def test_condense_keeps_the_richest_sentences_within_the_limit_in_order() -> None:
    notes = "\n".join(
        [
            "[2026-03-14]",
            "#0 user: I think it is quite nice here.",
            "#1 user: Order NW-48213-77 was placed on March 3 for $467.07.",
            "#2 assistant: That sounds lovely, really.",
            "#3 assistant: The refund RF-7731-0459 reaches your Visa 4402 by March 27.",
        ]
    )
    for limit in (30, 45, 80, 200):
        short = NOTES.condense(notes, limit)
        assert COUNTER.count(short) <= limit
        assert short  # never empty for a text with facts
    short = NOTES.condense(notes, 60)
    assert short.splitlines() == [
        "[2026-03-14]",
        "#1 user: Order NW-48213-77 was placed on March 3 for $467.07.",
        "#3 assistant: The refund RF-7731-0459 reaches your Visa 4402 by March 27.",
    ]
    tiny = NOTES.condense(notes, 12)
    assert 0 < COUNTER.count(tiny) <= 12
    assert NOTES.condense("", 50) == ""
    with pytest.raises(InvalidConfigError, match="max_tokens must be an int >= 0"):
        NOTES.condense(notes, -1)


def test_facts_and_weights() -> None:
    assert {"nw-48213-77", "$19.95", "march 6"} <= fact_terms(
        "Pay $19.95 for NW-48213-77 by March 6."
    )
    assert "danke" not in fact_terms("Danke!")  # a capitalised word seen only first in a sentence
    assert "caroline" in fact_terms("Caroline went home.", known_words={"Caroline"})
    assert "went" not in fact_terms("Went home.", known_words={"went"})
    assert sentence_weight("Is it NW-1?", set()) == 3.0  # a question earns only its facts
    assert sentence_weight("I love pottery.", set()) == 1.5  # a preference, said in person
    assert sentence_weight("Order NW-1 is late.", {"nw-1"}) == 0.0


def test_bad_settings_raise() -> None:
    with pytest.raises(InvalidConfigError, match="counter must be a TokenCounter or None"):
        FactNotes(counter="gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="max_note_tokens must be an int between 8"):
        FactNotes(max_note_tokens=2)


def test_the_default_memory_summary_keeps_the_richest_facts_within_the_cap() -> None:
    key = "My order NW-48213-77 for $467.07 shipped on March 3 to Zoë Müller in Berlin."
    with RollingSummary(COUNTER, keep_last=2, min_batch=2, summary_tokens=200) as memory:
        memory.add([user(key, name="Zoe"), assistant("Thanks, Zoë, I see order NW-48213-77.")])
        for i in range(1, 40):
            memory.add(
                [
                    user(f"Any news today? This is check number {i}."),
                    assistant(f"It is still in transit, day {i + 1}."),
                ]
            )
        assert memory.flush(timeout=30)
        record = memory.summary_record
        assert record is not None
        assert record.covers == 38
        assert len(record.levels) == 1  # fact notes condense on one level
        view = memory.view(budget=1_000)
        assert view.tokens <= 1_000
        assert COUNTER.count_message(view.messages()[0]) <= 200
        assert f"#0 Zoe: {key}" in view.summary  # the oldest, richest line survives, verbatim
        assert sum(f"day {i + 1}." in view.summary for i in range(1, 38)) < 30
        assert memory.keeper.last_error is None


def test_the_keeper_takes_the_summarisers_levels_unless_told() -> None:
    assert SummaryKeeper(COUNTER, NOTES).max_levels == 1
    assert SummaryKeeper(COUNTER, NOTES, max_levels=3).max_levels == 3
    assert SummaryKeeper(COUNTER, lambda p, u: "x").max_levels == 3


def test_split_newest_keeps_whole_lines_or_sentences() -> None:
    def words(text: str) -> int:
        return len(text.split())

    assert split_newest("a b.\nc d.\ne f.", 4, words) == ("a b.", "c d.\ne f.")
    assert split_newest("One two. Three four. Five.", 3, words) == ("One two.", "Three four. Five.")
    assert split_newest("a b c d e", 2, words) == ("a b c d e", "")
