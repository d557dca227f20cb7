"""The real ``llmlingua.PromptCompressor``, offline, on current transformers, per chunk in and out.

Three things upstream (llmlingua 0.2.2) needs here:

- **transformers 5.x**: its ``get_ppl`` keeps ``past_key_values`` as a list of ``(key, value)``
  tuples and slices them, while 5.x models take and return a ``Cache`` object. The model is handed
  to upstream behind :class:`LegacyCacheModel`, which turns tuples into a ``DynamicCache`` on the
  way in and back into tuples on the way out (upstream's own code is not changed).
- **offline**: ``PromptCompressor.__init__`` downloads tiktoken's cl100k file and loads the model by
  name; :func:`offline_prompt_compressor` sets the same attributes from an already loaded model and
  windowkeeper's bundled cl100k encoding.
- **per chunk**: ``compress_prompt`` returns one string for all chunks. Here upstream's own
  question-aware ranking (``control_context_budget``, LongLLMLingua) picks the chunks and their
  dynamic ratios, then each kept chunk is compressed on its own with the question as the
  condition, so every chunk keeps its identity; protected spans are checked after, as on the
  fast path.
"""

from __future__ import annotations

import copy
import inspect
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from windowkeeper import Chunk, TokenCounter
from windowkeeper.exceptions import InvalidConfigError

from windowkeeper_llmlingua._compressor import (
    CompressedChunk,
    CompressionResult,
    _CompressorBase,
    checked,
    dropped,
    prepare,
)
from windowkeeper_llmlingua._scorer import CausalScorer, shared_scorer
from windowkeeper_llmlingua._spans import find_spans

__all__ = ["LegacyCacheModel", "UpstreamCompressor", "offline_prompt_compressor"]

Method = Literal["longllmlingua", "llmlingua2"]


class LegacyCacheModel:
    """A causal LM that takes and returns ``past_key_values`` as legacy ``(key, value)`` tuples.

    Everything else is passed through to the wrapped model.
    """

    def __init__(self, model: Any) -> None:
        self.__dict__["_model"] = model
        names = inspect.signature(model.forward).parameters
        self.__dict__["_cache_keyword"] = next(
            (n for n in ("past_key_values", "cache", "past_key_value") if n in names),
            "past_key_values",
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_model"], name)

    def __call__(self, *args: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
        from transformers.cache_utils import Cache, DynamicCache

        model = self.__dict__["_model"]
        if past_key_values is not None and not isinstance(past_key_values, Cache):
            cache = DynamicCache()
            for layer, (key, value) in enumerate(past_key_values):
                cache.update(key, value, layer)
            past_key_values = cache
        kwargs[self.__dict__["_cache_keyword"]] = past_key_values
        output = model(*args, **kwargs)
        returned = getattr(output, "past_key_values", None)
        if isinstance(returned, Cache):
            layers: list[Any] = list(returned.layers)
            output.past_key_values = [(layer.keys, layer.values) for layer in layers]
        return output


def _llmlingua() -> Any:
    try:
        import llmlingua
    except ImportError as exc:  # pragma: no cover - a dependency of this package
        raise InvalidConfigError(
            "the upstream compressor needs llmlingua: pip install windowkeeper-llmlingua"
        ) from exc
    return llmlingua


def offline_prompt_compressor(
    model: Any, tokenizer: Any, *, device: str, llmlingua2: bool = False, name: str = "local"
) -> Any:
    """An ``llmlingua.PromptCompressor`` around a loaded model, built without network access."""
    from windowkeeper.tokens._encodings import load_encoding

    base = _llmlingua().PromptCompressor

    class OfflinePromptCompressor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:  # what upstream's __init__ and load_model set, offline
            self.model_name = name
            self.use_llmlingua2 = llmlingua2
            self.retrieval_model = None
            self.retrieval_model_name = None
            self.open_api_config: dict[str, Any] = {}
            self.cache_bos_num = 10
            self.prefix_bos_num = 100
            self.oai_tokenizer = load_encoding("cl100k_base")._encoding
            tok = copy.deepcopy(tokenizer)  # upstream changes padding; the shared one stays
            tok.padding_side = "left"
            if tok.pad_token_id is None:
                tok.pad_token_id = tok.eos_token_id
            self.tokenizer = tok
            self.model = model if llmlingua2 else LegacyCacheModel(model)
            self.device = device
            self.context_idxs: list[Any] = []
            self.max_position_embeddings = model.config.max_position_embeddings
            if llmlingua2:
                self.init_llmlingua2()

    return OfflinePromptCompressor()


class UpstreamCompressor(_CompressorBase):
    """Upstream LLMLingua, per chunk: LongLLMLingua (question-aware) or LLMLingua-2.

    Args:
        method: ``"longllmlingua"`` (a causal LM scores; the question ranks the chunks and
            conditions the token filter) or ``"llmlingua2"`` (a token-classification model, such
            as ``microsoft/llmlingua-2-xlm-roberta-large-meetingbank`` saved in a local folder;
            question-agnostic).
        scorer: The causal LM for ``"longllmlingua"`` (default: the embedded SmolLM2).
        model: A local folder with an LLMLingua-2 model (``"llmlingua2"`` only; upstream requires
            its name to contain ``bert-base-multilingual-cased`` or ``xlm-roberta-large``).
        counter: Counts the chunks for the budget and the report.
        rate: Share of tokens to keep by default.
        protect: Extra regular expressions kept verbatim (checked after compression).
        default_spans: Also protect the default kinds.
        two_stage: ``"llmlingua2"`` only: the authors' two-stage recipe, a coarse stage that keeps
            the chunks the classifier rates highest (upstream's ``use_context_level_filter``,
            kept per chunk here), then the token stage on each kept chunk. ``False``: the
            token stage on every chunk.
    """

    def __init__(
        self,
        method: Method = "longllmlingua",
        *,
        scorer: CausalScorer | None = None,
        model: str | Path | None = None,
        counter: TokenCounter | str = "gpt-4o",
        rate: float = 0.5,
        protect: Sequence[str] = (),
        default_spans: bool = True,
        two_stage: bool = True,
    ) -> None:
        if method not in ("longllmlingua", "llmlingua2"):
            raise InvalidConfigError(
                f"method must be 'longllmlingua' or 'llmlingua2'; got {method!r}"
            )
        if method == "llmlingua2" and model is None:
            raise InvalidConfigError(
                "model must name a local LLMLingua-2 folder for method='llmlingua2'; got None"
            )
        if method == "llmlingua2" and not Path(str(model)).expanduser().is_dir():
            raise InvalidConfigError(f"model must be a local folder; got {str(model)!r}")
        self.method: Method = method
        self._scorer = scorer
        self.model_path = Path(str(model)).expanduser() if model is not None else None
        self._settings(counter, rate, protect, default_spans)
        self.two_stage = bool(two_stage)
        self._upstream: Any = None
        self._lock = threading.Lock()

    @property
    def upstream(self) -> Any:
        """The offline ``llmlingua.PromptCompressor`` (built on first use)."""
        with self._lock:
            if self._upstream is None:
                if self.method == "longllmlingua":
                    scorer = self._scorer or shared_scorer()
                    self._upstream = offline_prompt_compressor(
                        scorer.model, scorer.tokenizer, device=str(scorer.device)
                    )
                else:
                    self._upstream = self._load_llmlingua2()
            return self._upstream

    def _load_llmlingua2(self) -> Any:
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        assert self.model_path is not None
        folder = str(self.model_path)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForTokenClassification.from_pretrained(folder, local_files_only=True)
        model.eval()
        return offline_prompt_compressor(
            model, tokenizer, device="cpu", llmlingua2=True, name=folder
        )

    def compress(
        self,
        chunks: Sequence[Chunk | str],
        question: str,
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
    ) -> CompressionResult:
        """Compress ``chunks`` for ``question`` (see the class notes); the question is only read."""
        request = prepare(chunks, question, self.counter, rate, target_tokens, self.rate)
        if request.unchanged:  # upstream would still cut: the chunks fit the target already
            return self._unchanged(request)
        items, before, total, target = request.items, request.before, request.total, request.target
        started = request.started
        share = target / total if total else 1.0
        upstream = self.upstream
        kept: list[int] = list(range(len(items)))
        dynamic = [0.0] * len(items)
        scores: list[float] | None = None
        if self.method == "llmlingua2" and self.two_stage and len(items) > 1:
            kept, scores = self._context_level(upstream, [c.text for c in items], share)
        if self.method == "longllmlingua" and len(items) > 1:
            if not question.strip():
                raise InvalidConfigError("question must be non-empty for method='longllmlingua'")
            lengths = [upstream.get_token_length(c.text) for c in items]
            _, ratios, used = upstream.control_context_budget(
                [c.text for c in items],
                lengths,
                share * sum(lengths),
                question=question,
                condition_in_question="after",
                reorder_context="original",
                dynamic_context_compression_ratio=0.3,
                rank_method="longllmlingua",
                context_budget="+100",
            )
            kept = list(used)
            for i, r in zip(used, ratios, strict=True):
                dynamic[i] = r
        order = (
            upstream.context_idxs[-1]
            if self.method == "longllmlingua" and upstream.context_idxs
            else sorted(range(len(items)), key=lambda i: (-scores[i], i))
            if scores is not None
            else kept
        )
        upstream.context_idxs.clear()  # upstream appends one ranking per call and never drops it
        rank = {i: r for r, i in enumerate(order)}
        out: list[CompressedChunk] = []
        notes: list[str] = []
        kept_total = sum(before[i] for i in kept) or 1
        for i, item in enumerate(items):
            r = rank.get(i, len(items) - 1)
            if i not in kept:
                by = "LongLLMLingua" if self.method == "longllmlingua" else "LLMLingua-2"
                reason = f"ranked {r + 1} by {by}: left out by the coarse stage"
                out.append(dropped(i, item, before[i], r, math.nan, reason))
                continue
            chunk_rate = min(1.0, max(0.05, target / kept_total * (1.0 + dynamic[i])))
            text = self._compress_one(upstream, item.text, question, chunk_rate)
            spans = find_spans(item.text, self.protect, defaults=self.default_spans)
            entry = checked(i, item, text, spans, before[i], self.counter.count(text), r)
            out.append(entry)
            if entry.fell_back:
                notes.append(f"chunk {i}: {entry.reason}")
        return CompressionResult(
            chunks=tuple(out),
            question=question,
            target_tokens=target,
            tokens_before=total,
            tokens_after=sum(c.tokens_after for c in out),
            seconds=time.perf_counter() - started,
            notes=tuple(notes),
        )

    @staticmethod
    def _context_level(
        upstream: Any, texts: list[str], share: float
    ) -> tuple[list[int], list[float]]:
        """LLMLingua-2's coarse stage (the authors' two-stage recipe), kept per chunk.

        Each chunk's mean keep-probability from the classifier; the chunks at or above the
        percentile that keeps ``(share + 1) / 2`` of them (upstream's own default when the token
        filter follows) go on to the token stage. Upstream joins the survivors into one string;
        here they stay chunks.
        """
        import numpy as np

        ends = {".", "\n"}
        chunked = [
            upstream._PromptCompressor__chunk_context(t, chunk_end_tokens=ends) for t in texts
        ]
        probs, _ = upstream._PromptCompressor__get_context_prob(
            chunked, token_to_word="mean", force_tokens=[], token_map={}
        )
        scores = [float(p) for p in probs]
        threshold = np.percentile(scores, int(100 * (1 - (share + 1.0) / 2)))
        return [i for i, p in enumerate(scores) if p >= threshold], scores

    def _compress_one(self, upstream: Any, text: str, question: str, rate: float) -> str:
        if not text.strip():
            return text
        if self.method == "llmlingua2":
            result = upstream.compress_prompt([text], rate=rate, use_context_level_filter=False)
            return str(result["compressed_prompt"])
        result = upstream.compress_prompt(
            [text],
            question=question,
            rate=rate,
            rank_method="longllmlingua",
            condition_in_question="after_condition",
            condition_compare=True,
            use_context_level_filter=False,
            concate_question=False,
        )
        return str(result["compressed_prompt"]).strip()
