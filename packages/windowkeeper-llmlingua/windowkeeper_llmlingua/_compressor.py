"""Question-aware compression of retrieved chunks, per chunk in and per chunk out.

The fast path (:class:`ChunkCompressor`) follows LongLLMLingua's recipe with one batched forward
pass per request instead of upstream's many: the scorer reads every chunk followed by the
question, which ranks the chunks (how well each predicts the question) and gives every chunk
token its surprisal. Then:

1. **coarse**: chunks are taken best first until they hold ``coarse`` times the target; the rest
   are dropped (reported);
2. **budget per chunk**: the better a kept chunk ranks, the more of it is kept (``dynamic`` moves a
   chunk's share up to that fraction above or below the average);
3. **words**: within a chunk, whole words are kept by their tokens' mean surprisal, highest first,
   so no word is ever cut inside; every word of a protected span (code, numbers with units,
   dates, URLs, emails, paths, IDs, UUIDs, JSON, user patterns) is kept, with the spacing between
   the words of a span unchanged;
4. **check**: each protected span is looked up in the result; a chunk that lost one falls back
   to its original text (reported). The output is counted with the application's counter.

``mode="chunks"`` stops after the ranking: whole chunks are kept or dropped to fit the target.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from windowkeeper import Chunk, TokenCounter
from windowkeeper._checks import check_number
from windowkeeper.exceptions import InvalidConfigError

from windowkeeper_llmlingua._scorer import CausalScorer, ChunkScore, shared_scorer
from windowkeeper_llmlingua._spans import Span, find_spans, missing_spans, protected_words

__all__ = ["ChunkCompressor", "CompressedChunk", "CompressionResult"]

_WORD = re.compile(r"\S+")
Mode = Literal["tokens", "chunks"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CompressedChunk:
    """One chunk after compression: the same identity, metadata and score, a shorter text."""

    index: int
    """Position of the chunk in the input."""
    chunk: Chunk
    """The chunk to send (``id``, ``score`` and ``metadata`` of the input; the new text)."""
    original: Chunk
    """The chunk as it came in."""
    dropped: bool
    """True when the coarse stage left the whole chunk out."""
    tokens_before: int
    tokens_after: int
    """Tokens of the text before and after (0 when dropped), with the compressor's counter."""
    rank: int
    """Position in the question-aware ranking (0: the chunk that best predicts the question)."""
    question_loss: float
    """The ranking score: mean loss of the question after the chunk (lower: more relevant)."""
    protected: tuple[str, ...] = ()
    """The protected spans found in the chunk (kept verbatim)."""
    fell_back: bool = False
    """True when compression lost a protected span and the original text was kept instead."""
    reason: str = ""
    """Why the chunk was dropped, kept whole, or fell back."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CompressionResult:
    """The compressed chunks in input order, and the totals."""

    chunks: tuple[CompressedChunk, ...]
    question: str
    target_tokens: int
    tokens_before: int
    tokens_after: int
    seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def kept(self) -> list[Chunk]:
        """The chunks to send (dropped ones left out), in input order."""
        return [c.chunk for c in self.chunks if not c.dropped]

    @property
    def ratio(self) -> float:
        """Compression ratio, tokens before / tokens after (1.0 when nothing was sent before)."""
        return self.tokens_before / self.tokens_after if self.tokens_after else math.inf


def _as_chunks(chunks: Sequence[Chunk | str]) -> list[Chunk]:
    if isinstance(chunks, str) or not isinstance(chunks, Sequence):
        raise InvalidConfigError(
            f"chunks must be a sequence of Chunk or str; got {type(chunks).__name__}"
        )
    out: list[Chunk] = []
    for i, c in enumerate(chunks):
        if isinstance(c, Chunk):
            out.append(c)
        elif isinstance(c, str):
            out.append(Chunk(text=c, score=0.0))
        else:
            raise InvalidConfigError(
                f"chunks[{i}] must be a Chunk or a str; got {type(c).__name__}"
            )
    return out


class _CompressorBase:
    """What both compressors share: the counter, the default rate, the protected spans."""

    counter: TokenCounter
    rate: float
    protect: tuple[str | re.Pattern[str], ...]
    default_spans: bool

    def _settings(
        self,
        counter: TokenCounter | str,
        rate: float,
        protect: Sequence[str | re.Pattern[str]],
        default_spans: bool,
    ) -> None:
        self.counter = counter if isinstance(counter, TokenCounter) else TokenCounter(counter)
        self.rate = _check_rate(rate)
        if isinstance(protect, str):
            raise InvalidConfigError("protect must be a sequence of patterns, not one str")
        find_spans("", protect)  # typed errors for bad patterns now, not at the first call
        self.protect = tuple(protect)
        self.default_spans = bool(default_spans)

    @staticmethod
    def _unchanged(request: Request) -> CompressionResult:
        """Every chunk as it is (the chunks fit the target already)."""
        before = request.before
        out = tuple(
            whole(i, c, before[i], i, math.nan, "within the target: sent as it is")
            for i, c in enumerate(request.items)
        )
        return CompressionResult(
            chunks=out,
            question=request.question,
            target_tokens=request.target,
            tokens_before=request.total,
            tokens_after=request.total,
            seconds=time.perf_counter() - request.started,
        )


class ChunkCompressor(_CompressorBase):
    """Compress retrieved chunks for a question to a token target (see the module notes).

    Args:
        scorer: The language model that scores (default: the embedded SmolLM2, shared per process).
        counter: Counts the chunks for the budget (the application's model, e.g. ``"gpt-4o"``).
        rate: Share of the chunks' tokens to keep by default (0.5: 2x compression).
        mode: ``"tokens"`` (rank, then keep words) or ``"chunks"`` (rank, keep or drop whole chunks).
        coarse: Chunks are kept best first until they hold this many times the target (>= 1).
        dynamic: How far a kept chunk's share moves with its rank (0: the same for all; 0.3
            keeps up to 30 % more of the best chunk and 30 % less of the worst).
        protect: Extra regular expressions whose matches are kept verbatim.
        default_spans: Also protect the default kinds (code, numbers, URLs, IDs, JSON...).

    Example:
        >>> compressor = ChunkCompressor(counter="gpt-4o", rate=0.5)  # loads nothing yet
        >>> result = compressor.compress(chunks, question="Who won?")  # doctest: +SKIP
        >>> result.ratio, [c.tokens_after for c in result.chunks]  # doctest: +SKIP
    """

    def __init__(
        self,
        scorer: CausalScorer | None = None,
        *,
        counter: TokenCounter | str = "gpt-4o",
        rate: float = 0.5,
        mode: Mode = "tokens",
        coarse: float = 1.3,
        dynamic: float = 0.3,
        protect: Sequence[str | re.Pattern[str]] = (),
        default_spans: bool = True,
    ) -> None:
        if scorer is not None and not isinstance(scorer, CausalScorer):
            raise InvalidConfigError(f"scorer must be a CausalScorer or None; got {scorer!r}")
        self._scorer = scorer
        self._settings(counter, rate, protect, default_spans)
        if mode not in ("tokens", "chunks"):
            raise InvalidConfigError(f"mode must be 'tokens' or 'chunks'; got {mode!r}")
        self.mode: Mode = mode
        self.coarse = check_number("coarse", coarse, 1, finite=True)
        self.dynamic = check_number("dynamic", dynamic, 0, 0.9)

    @property
    def scorer(self) -> CausalScorer:
        """The scorer (the shared embedded one unless given)."""
        if self._scorer is None:
            self._scorer = shared_scorer()
        return self._scorer

    def compress(
        self,
        chunks: Sequence[Chunk | str],
        question: str,
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
    ) -> CompressionResult:
        """Compress ``chunks`` for ``question`` to ``target_tokens`` (or ``rate`` of their tokens).

        The question is only read. Chunks already within the target come back unchanged.

        Raises:
            InvalidConfigError: Bad chunks, question, rate or target.
        """
        request = prepare(chunks, question, self.counter, rate, target_tokens, self.rate)
        if request.unchanged:
            return self._unchanged(request)
        scores = self.scorer.score(
            [c.text for c in request.items], question, token_losses=self._token_losses([request])
        )
        return self._select(request, scores)

    def compress_many(
        self,
        requests: Sequence[tuple[Sequence[Chunk | str], str]],
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
        batch: int = 8,
        progress: bool = False,
    ) -> list[CompressionResult]:
        """:meth:`compress` for many ``(chunks, question)`` requests; results in input order.

        ``batch`` requests at a time are scored in shared forward passes (fuller batches than one
        request gives).

        Args:
            requests: ``(chunks, question)`` pairs.
            rate: Share of each request's tokens to keep (default: the compressor's).
            target_tokens: A token target per request instead of the rate.
            batch: Requests scored together.
            progress: Show a progress bar (tqdm) over the requests.
        """
        prepared = [
            prepare(chunks, question, self.counter, rate, target_tokens, self.rate)
            for chunks, question in requests
        ]
        bar = _progress(len(prepared)) if progress else None
        out: list[CompressionResult] = []
        for at in range(0, len(prepared), max(int(batch), 1)):
            group = prepared[at : at + max(int(batch), 1)]
            busy = [r for r in group if not r.unchanged]
            texts = [c.text for r in busy for c in r.items]
            questions = [r.question for r in busy for _ in r.items]
            scores = (
                self.scorer.score(texts, questions, token_losses=self._token_losses(busy))
                if texts
                else []
            )
            offset = 0
            for r in group:
                if r.unchanged:
                    out.append(self._unchanged(r))
                    continue
                out.append(self._select(r, scores[offset : offset + len(r.items)]))
                offset += len(r.items)
            if bar is not None:
                bar.update(len(group))
        if bar is not None:
            bar.close()
        return out

    async def acompress(
        self,
        chunks: Sequence[Chunk | str],
        question: str,
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
    ) -> CompressionResult:
        """:meth:`compress` on the package's worker thread (the event loop keeps running)."""
        import asyncio
        import functools

        call = functools.partial(
            self.compress, chunks, question, rate=rate, target_tokens=target_tokens
        )
        return await asyncio.get_running_loop().run_in_executor(_worker(), call)

    def _coarse(self, request: Request, question_losses: Sequence[float]) -> list[int]:
        """The chunks the coarse stage keeps, best first: until they hold ``coarse`` x the target."""
        ranking = sorted(range(len(request.items)), key=lambda i: (question_losses[i], i))
        kept: list[int] = []
        held = 0
        for i in ranking:
            if held >= self.coarse * request.target:
                break
            kept.append(i)
            held += request.before[i]
        return kept

    def _token_losses(self, requests: Sequence[Request]) -> Any:
        """What the scorer computes token losses for: the chunks the coarse stage keeps."""
        if self.mode == "chunks":
            return False

        def wanted(question_losses: list[float]) -> list[int]:
            out: list[int] = []
            at = 0
            for r in requests:
                n = len(r.items)
                out += [at + i for i in self._coarse(r, question_losses[at : at + n])]
                at += n
            return out

        return wanted

    def _select(self, request: Request, scores: Sequence[ChunkScore]) -> CompressionResult:
        """The compression of a prepared request from its chunks' scores."""
        items, before, question = request.items, request.before, request.question
        total, target, started = request.total, request.target, request.started
        ranking = sorted(range(len(items)), key=lambda i: (scores[i].question_loss, i))
        rank = {i: r for r, i in enumerate(ranking)}
        if self.mode == "chunks":
            return self._whole_chunks(
                items, before, scores, ranking, rank, question, target, started
            )
        kept = self._coarse(request, [s.question_loss for s in scores])
        # 2. a share per kept chunk, more for the better ranked, summing to the target
        k = len(kept)
        weights = {
            i: 1.0 + self.dynamic * (1.0 - 2.0 * p / (k - 1) if k > 1 else 0.0)
            for p, i in enumerate(kept)
        }
        base = target / max(sum(weights[i] * before[i] for i in kept), 1)
        texts: dict[int, str] = {}
        spans_of: dict[int, list[Span]] = {}
        words_of: dict[int, list[tuple[int, int, float, bool, int]]] = {}
        for i in kept:
            spans = find_spans(items[i].text, self.protect, defaults=self.default_spans)
            spans_of[i] = spans
            words_of[i] = self._words(items[i].text, scores[i], spans)
            texts[i] = self._keep(items[i].text, words_of[i], min(1.0, base * weights[i]))
        after = dict(zip(kept, self.counter.count_batch([texts[i] for i in kept]), strict=True))
        # 3. over the target (word costs are estimates): drop the weakest words left, twice at most
        for _ in range(2):
            over = sum(after.values()) - target
            if over <= 0:
                break
            for i in sorted(kept, key=lambda i: -rank[i]):  # the lowest-ranked chunks first
                if over <= 0:
                    break
                share = min(1.0, max(0.0, (after[i] - over) / max(before[i], 1)))
                trimmed = self._keep(items[i].text, words_of[i], share)
                cost = self.counter.count(trimmed)
                over -= after[i] - cost
                texts[i], after[i] = trimmed, cost
        out: list[CompressedChunk] = []
        notes: list[str] = []
        for i, item in enumerate(items):
            if i not in texts:
                out.append(
                    dropped(
                        i,
                        item,
                        before[i],
                        rank[i],
                        scores[i].question_loss,
                        _coarse_reason(rank[i]),
                    )
                )
                continue
            entry = checked(i, item, texts[i], spans_of[i], before[i], after[i], rank[i])
            out.append(replace(entry, question_loss=scores[i].question_loss))
            if entry.fell_back:
                notes.append(f"chunk {i}: {entry.reason}")
        sent = sum(c.tokens_after for c in out)
        if sent > target:
            notes.append(
                f"{sent} tokens after compression, over the target of {target}: the protected "
                "spans and the smallest kept words need that much"
            )
        return CompressionResult(
            chunks=tuple(out),
            question=question,
            target_tokens=target,
            tokens_before=total,
            tokens_after=sent,
            seconds=time.perf_counter() - started,
            notes=tuple(notes),
        )

    # ----------------------------------------------------------------------------- helpers

    def _words(
        self, text: str, score: ChunkScore, spans: list[Span]
    ) -> list[tuple[int, int, float, bool, int]]:
        """``(start, end, surprisal, protected, model tokens)`` of each word of ``text``."""
        bounds = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        protected = protected_words(bounds, spans)
        sums = [0.0] * len(bounds)
        counts = [0] * len(bounds)
        w = 0
        for (a, b), loss in zip(score.offsets, score.losses.tolist(), strict=False):
            if b <= a:
                continue
            while w < len(bounds) and bounds[w][1] <= a:
                w += 1
            j = w
            while j < len(bounds) and bounds[j][0] < b:  # a token may touch two words
                sums[j] += loss
                counts[j] += 1
                j += 1
        return [
            (a, b, sums[i] / counts[i] if counts[i] else math.inf, protected[i], max(counts[i], 1))
            for i, (a, b) in enumerate(bounds)
        ]

    @staticmethod
    def _keep(text: str, words: list[tuple[int, int, float, bool, int]], share: float) -> str:
        """The words of ``text`` worth keeping for ``share`` of its model tokens, in order."""
        if not words:
            return text
        budget = share * sum(w[4] for w in words)
        keep = [w[3] for w in words]  # protected words always
        used = sum(w[4] for w in words if w[3])
        for i in sorted(range(len(words)), key=lambda i: -words[i][2]):
            if keep[i]:
                continue
            if used + words[i][4] > budget:
                continue
            keep[i] = True
            used += words[i][4]
        parts: list[str] = []
        previous = -1
        for i, (a, b, _, _, _) in enumerate(words):
            if not keep[i]:
                continue
            if parts:
                gap = text[words[previous][1] : a]
                parts.append(gap if previous == i - 1 else ("\n" if "\n" in gap else " "))
            parts.append(text[a:b])
            previous = i
        return "".join(parts)

    def _whole_chunks(
        self,
        items: list[Chunk],
        before: list[int],
        scores: Sequence[ChunkScore],
        ranking: list[int],
        rank: dict[int, int],
        question: str,
        target: int,
        started: float,
    ) -> CompressionResult:
        keep: set[int] = set()
        used = 0
        for i in ranking:  # best first; a chunk too large is skipped, smaller ones may fit
            if used + before[i] <= target:
                keep.add(i)
                used += before[i]
        out = tuple(
            whole(i, item, before[i], rank[i], scores[i].question_loss, "kept whole")
            if i in keep
            else dropped(
                i, item, before[i], rank[i], scores[i].question_loss, _coarse_reason(rank[i])
            )
            for i, item in enumerate(items)
        )
        return CompressionResult(
            chunks=out,
            question=question,
            target_tokens=target,
            tokens_before=sum(before),
            tokens_after=used,
            seconds=time.perf_counter() - started,
        )


def whole(
    index: int, item: Chunk, before: int, rank: int, question_loss: float, reason: str
) -> CompressedChunk:
    """A chunk sent as it is."""
    return CompressedChunk(
        index=index,
        chunk=item,
        original=item,
        dropped=False,
        tokens_before=before,
        tokens_after=before,
        rank=rank,
        question_loss=question_loss,
        reason=reason,
    )


def dropped(
    index: int, item: Chunk, before: int, rank: int, question_loss: float, reason: str
) -> CompressedChunk:
    """A chunk the coarse stage left out (an empty text; identity, score and metadata kept)."""
    return CompressedChunk(
        index=index,
        chunk=_with_text(item, ""),
        original=item,
        dropped=True,
        tokens_before=before,
        tokens_after=0,
        rank=rank,
        question_loss=question_loss,
        reason=reason,
    )


def _coarse_reason(rank: int) -> str:
    return f"ranked {rank + 1} for the question: left out by the coarse stage"


def checked(
    index: int, item: Chunk, text: str, spans: Sequence[Span], before: int, after: int, rank: int
) -> CompressedChunk:
    """A kept chunk whose protected spans are looked up in ``text``: one lost, the original."""
    lost = missing_spans(spans, text)
    reason = ""
    if lost:
        text, after = item.text, before
        reason = f"protected span lost ({lost[0].kind} {lost[0].text!r}): original kept"
    return CompressedChunk(
        index=index,
        chunk=_with_text(item, text),
        original=item,
        dropped=False,
        tokens_before=before,
        tokens_after=after,
        rank=rank,
        question_loss=math.nan,
        protected=tuple(s.text for s in spans),
        fell_back=bool(lost),
        reason=reason,
    )


@dataclass(frozen=True, slots=True)
class Request:
    """A compression request checked and counted, before any model runs."""

    items: list[Chunk]
    question: str
    before: list[int]
    total: int
    target: int
    started: float

    @property
    def unchanged(self) -> bool:
        """The chunks fit the target already (or there are none)."""
        return self.total <= self.target or not self.items


def prepare(
    chunks: Sequence[Chunk | str],
    question: str,
    counter: TokenCounter,
    rate: float | None,
    target_tokens: int | None,
    default_rate: float,
) -> Request:
    """Check a request and count its chunks; the target from ``target_tokens`` or the rate."""
    started = time.perf_counter()
    items = _as_chunks(chunks)
    if not isinstance(question, str):
        raise InvalidConfigError(f"question must be a str; got {type(question).__name__}")
    before = counter.count_batch([c.text for c in items]) if items else []
    total = sum(before)
    if target_tokens is not None:
        if (
            isinstance(target_tokens, bool)
            or not isinstance(target_tokens, int)
            or target_tokens < 0
        ):
            raise InvalidConfigError(f"target_tokens must be an int >= 0; got {target_tokens!r}")
        target = target_tokens
    else:
        target = math.ceil(total * (_check_rate(rate) if rate is not None else default_rate))
    return Request(items, question, before, total, target, started)


_WORKER: Any = None
_WORKER_LOCK = threading.Lock()


def _worker() -> Any:
    """The package's one worker thread (model calls run one at a time anyway)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            from concurrent.futures import ThreadPoolExecutor

            _WORKER = ThreadPoolExecutor(1, thread_name_prefix="windowkeeper-llmlingua")
        return _WORKER


def _progress(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return None
    return tqdm(total=total, unit="request", desc="compressing")


def _with_text(chunk: Chunk, text: str) -> Chunk:
    return Chunk(text=text, score=chunk.score, id=chunk.id, metadata=dict(chunk.metadata))


def _check_rate(rate: Any) -> float:
    value = check_number("rate", rate, 0, 1)
    if value <= 0:
        raise InvalidConfigError(f"rate must be a number > 0 and <= 1; got {rate!r}")
    return float(value)
