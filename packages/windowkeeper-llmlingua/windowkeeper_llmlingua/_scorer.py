r"""A causal language model that scores chunks against a question in few, batched forward passes.

Each chunk is cut into windows of at most ``max_window`` model tokens; every window is followed
by the question (``<start> window \\n\\nQuestion: question``) and all windows run together in
batches of similar length. One pass gives both signals the compressor needs:

- the loss of every chunk token given the text before it (its surprisal: what token-level
  compression keeps), and
- the mean loss of the question's tokens given the window (LongLLMLingua's coarse ranking: the
  lower, the better the chunk predicts the question).

Logits are computed only where a loss is needed, a window at a time (a 49k-token vocabulary makes
full-batch logits the largest allocation otherwise). torch and transformers are imported on the
first call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from windowkeeper._checks import check_int
from windowkeeper.exceptions import InvalidConfigError

__all__ = ["CausalScorer", "ChunkScore", "shared_scorer"]

QUESTION_PREFIX = "\n\nQuestion: "


@dataclass(frozen=True, slots=True)
class ChunkScore:
    """What the scorer read from one chunk."""

    offsets: tuple[tuple[int, int], ...]
    """Character range of each model token in the chunk text."""
    losses: npt.NDArray[np.float32]
    """Each token's loss (nats) given the text before it in its window (empty when not asked)."""
    question_loss: float
    """Mean loss of the question's tokens after the chunk (its best window): lower is more relevant."""


class CausalScorer:
    """Chunk and token scores from a causal LM (the embedded SmolLM2-135M-Instruct by default).

    Args:
        model: ``None`` for the embedded SmolLM2 (converted once by windowkeeper's local model
            cache, shared with ``windowkeeper.local``'s summariser), a local folder, or a model id
            already in the Hugging Face cache (never downloaded: loaded with
            ``local_files_only=True``).
        device: ``"auto"`` (the GPU when torch sees one, else the CPU), ``"cpu"``, ``"cuda"``...
        dtype: ``"auto"`` (bfloat16 where the CPU computes it natively, or on a GPU; else
            float32), ``"float32"`` or ``"bfloat16"``.
        max_window: Most chunk tokens per window (a longer chunk is cut into several).
        batch_tokens: Most tokens (padding included) in one forward pass.

    Raises:
        InvalidConfigError: A setting is out of range.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "auto",
        dtype: Literal["auto", "float32", "bfloat16"] = "auto",
        max_window: int = 512,
        batch_tokens: int = 4096,
    ) -> None:
        if model is not None and not isinstance(model, str | Path):
            raise InvalidConfigError(
                f"model must be None (the embedded SmolLM2), a folder or a model id; got {model!r}"
            )
        if dtype not in ("auto", "float32", "bfloat16"):
            raise InvalidConfigError(
                f"dtype must be 'auto', 'float32' or 'bfloat16'; got {dtype!r}"
            )
        if not isinstance(device, str) or not device:
            raise InvalidConfigError(
                f"device must be a non-empty str such as 'cpu'; got {device!r}"
            )
        self.model_name = model
        self.device_name = device
        self.dtype = dtype
        self.max_window = check_int("max_window", max_window, 16, 8192)
        self.batch_tokens = check_int("batch_tokens", batch_tokens, 64)
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: Any = None
        self.forward_passes = 0
        """Forward passes run so far (batches)."""
        self.tokens_scored = 0
        """Model tokens run so far, padding excluded."""

    def __repr__(self) -> str:
        name = self.model_name if self.model_name is not None else "SmolLM2-135M-Instruct"
        return f"CausalScorer({str(name)!r}, loaded={self._model is not None})"

    # ------------------------------------------------------------------------------- loading

    @property
    def model(self) -> Any:
        """The loaded ``transformers`` model (loads it)."""
        self.load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (loads it)."""
        self.load()
        return self._tokenizer

    @property
    def device(self) -> Any:
        """The torch device the model runs on (loads it)."""
        self.load()
        return self._device

    def load(self) -> None:
        """Load the model now; a no-op once loaded."""
        if self._loaded():
            return
        with self._lock:
            if self._loaded():  # by another thread meanwhile
                return
            import torch

            model: Any
            tokenizer: Any

            if self.model_name is None:
                from windowkeeper.local import shared_summarizer

                model, tokenizer = shared_summarizer().loaded()
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                path = str(self.model_name)
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
                model.eval()
            name = self.device_name
            if name == "auto":
                name = "cuda" if torch.cuda.is_available() else "cpu"
            device = torch.device(name)
            wanted = self._wanted_dtype(torch, device)
            if self.model_name is None and (
                device.type != "cpu" or next(model.parameters()).dtype != wanted
            ):  # the shared summariser's copy stays as it is; this one moves or changes type
                import copy

                model = copy.deepcopy(model)
            model.to(device=device, dtype=wanted)
            model.eval()
            if not getattr(tokenizer, "is_fast", False):
                raise InvalidConfigError(
                    f"model {self.model_name!r} must come with a fast tokenizer (character offsets)"
                )
            self._tokenizer = tokenizer
            self._device = device
            self._model = model

    def _loaded(self) -> bool:
        return self._model is not None

    def _wanted_dtype(self, torch: Any, device: Any) -> Any:
        if self.dtype == "float32":
            return torch.float32
        if self.dtype == "bfloat16":
            return torch.bfloat16
        if device.type == "cuda":
            return torch.bfloat16
        from windowkeeper.local._summarizer import _native_bf16

        return torch.bfloat16 if _native_bf16(torch) else torch.float32

    # ------------------------------------------------------------------------------- scoring

    def score(
        self,
        texts: Sequence[str],
        question: str | Sequence[str],
        *,
        token_losses: bool | Callable[[list[float]], Collection[int]] = True,
    ) -> list[ChunkScore]:
        """Score each text against its question (see the module notes); one entry per text.

        Args:
            texts: The chunks.
            question: The question the chunks should answer, or one question per text (chunks
                of several requests scored in the same batches). An empty question makes the
                ranking uninformative (the likelihood of nothing).
            token_losses: Also compute every chunk token's loss (token-level compression); when
                False only the question positions get logits (ranking only, cheaper). A
                function receives every text's question loss once the pass is done and returns
                the texts that need token losses (the others, e.g. chunks a coarse stage drops,
                get none: the vocabulary projection is the costly part after the pass).
        """
        import torch

        self.load()
        tokenizer, model = self._tokenizer, self._model
        start = _start_id(tokenizer)
        questions = [question] * len(texts) if isinstance(question, str) else list(question)
        if len(questions) != len(texts):
            raise InvalidConfigError(
                f"question must be a str or one per text; got {len(questions)} for {len(texts)} texts"
            )
        prefix_len = len(tokenizer(QUESTION_PREFIX, add_special_tokens=False)["input_ids"])
        # a row is <start> + window + question: it must fit the model's positions
        positions = _positions(model)
        room = min(self.max_window, positions // 2) if positions else self.max_window
        asked: dict[str, list[int]] = {}
        for q in questions:
            if q not in asked:
                ids = tokenizer(QUESTION_PREFIX + q, add_special_tokens=False)["input_ids"]
                asked[q] = ids[: max(room // 2, prefix_len + 1)]
        size = self.max_window
        if positions:
            size = max(1, min(size, positions - 1 - max(len(a) for a in asked.values())))
        encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        windows: list[tuple[int, int, list[int]]] = []  # (text, first token, ids)
        for t, ids in enumerate(encoded["input_ids"]):
            if not ids:
                windows.append((t, 0, []))
                continue
            for first in range(0, len(ids), size):
                windows.append((t, first, ids[first : first + size]))
        losses = [np.zeros(len(ids), dtype=np.float32) for ids in encoded["input_ids"]]
        best = [float("inf")] * len(texts)
        order = sorted(
            range(len(windows)),
            key=lambda w: len(windows[w][2]) + len(asked[questions[windows[w][0]]]),
        )
        lm_head = model.get_output_embeddings()
        base = model.base_model
        targets_of = {
            q: torch.tensor(ids[prefix_len:], device=self._device) for q, ids in asked.items()
        }
        batch: list[int] = []
        states: dict[int, tuple[Any, Any]] = {}  # window -> (hidden states, next tokens)

        def run(batch: list[int]) -> None:
            rows = [[start, *windows[w][2], *asked[questions[windows[w][0]]]] for w in batch]
            width = max(len(r) for r in rows)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            ids, mask = ids.to(self._device), mask.to(self._device)
            with torch.inference_mode():
                hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
                for i, w in enumerate(batch):
                    t, _, chunk_ids = windows[w]
                    n = len(chunk_ids)
                    q_targets = targets_of[questions[t]]
                    q0 = 1 + n + prefix_len  # the first question token (after the prefix)
                    q_logits = lm_head(hidden[i, q0 - 1 : q0 - 1 + len(q_targets)]).float()
                    q_loss = torch.nn.functional.cross_entropy(q_logits, q_targets)
                    best[t] = min(best[t], float(q_loss))
                    if token_losses and n:  # kept until it is known whether they are needed
                        states[w] = (hidden[i, 0:n].clone(), ids[i, 1 : n + 1].clone())
            self.forward_passes += 1
            self.tokens_scored += sum(len(r) for r in rows)

        for w in order:
            width = 1 + len(windows[w][2]) + len(asked[questions[windows[w][0]]])
            if batch and width * (len(batch) + 1) > self.batch_tokens:
                run(batch)
                batch = []
            batch.append(w)
        if batch:
            run(batch)
        wanted = set(range(len(texts)))
        if callable(token_losses):
            wanted = {int(t) for t in token_losses(list(best))}
        with torch.inference_mode():
            for w, (states_w, targets) in states.items():
                t, first, chunk_ids = windows[w]
                if t not in wanted:
                    continue
                logits = lm_head(states_w).float()
                loss = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
                losses[t][first : first + len(chunk_ids)] = loss.cpu().numpy()
        out: list[ChunkScore] = []
        for t, offsets in enumerate(encoded["offset_mapping"]):
            out.append(
                ChunkScore(
                    offsets=tuple((int(a), int(b)) for a, b in offsets),
                    losses=losses[t]
                    if token_losses and t in wanted
                    else np.zeros(0, dtype=np.float32),
                    question_loss=best[t],
                )
            )
        return out


def _start_id(tokenizer: Any) -> int:
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


_SHARED: CausalScorer | None = None
_SHARED_LOCK = threading.Lock()


def shared_scorer() -> CausalScorer:
    """The process's default scorer (the embedded SmolLM2, loaded on first use, once)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = CausalScorer()
        return _SHARED


def _positions(model: Any) -> int | None:
    """The most positions ``model`` takes (``None`` when its config does not say)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
