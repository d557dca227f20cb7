"""What every command shares: messages on stderr, JSON output, reading input, progress."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from windowkeeper._transcript import Transcript, decode_utf8, parse_transcript
from windowkeeper.exceptions import UnknownModelError

_LEVEL_STYLE = {
    "ok": "green",
    "alert": "yellow",
    "act": "bold red",
    "overflow": "bold white on red",
}
PROGRESS_EVERY = 5.0
"""Seconds between two plain progress lines when standard error is not a terminal."""


# ------------------------------------------------------------------------------------ messages


def _error(err: Console, message: str) -> None:
    """``error: message`` on stderr; the message is plain text, never markup."""
    err.print(Text.assemble(("error:", "bold red"), " ", message))


def _warn(err: Console, message: str) -> None:
    err.print(Text.assemble(("warning:", "bold yellow"), " ", message))


def _unknown_model(exc: UnknownModelError, *, from_flag: bool) -> str:
    """The command line's wording of an unknown model (the library's suggests Python code)."""
    where = "--model" if from_flag else "the transcript's model"
    hint = f"; did you mean {' or '.join(map(repr, exc.suggestions))}?" if exc.suggestions else "."
    advice = "" if from_flag else " Pass --model to use another one."
    return (
        f"{where} {exc.model!r} has no profile{hint} Run `windowkeeper models` to list the "
        f"profiles.{advice}"
    )


def _emit_json(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data), highlight=False)


# ------------------------------------------------------------------------------------- input


def _source(path: str) -> str:
    """How a file argument is named in messages."""
    return "standard input" if path == "-" else repr(path)


def _read_text(path: str) -> str:
    """The UTF-8 text of a file, or of standard input for ``-``.

    Raises:
        InvalidMessageError: The bytes are not UTF-8 (the message names the file).
        OSError: The file is missing or unreadable.
    """
    if path == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # a text stream without bytes underneath (an embedding program's)
            return sys.stdin.read()
        data: bytes = buffer.read()
    else:
        data = Path(path).read_bytes()
    return decode_utf8(data, _source(path))


def _load(path: str) -> Transcript:
    """A transcript from a JSON file, or from standard input for ``-``."""
    return parse_transcript(_read_text(path), _source(path))


def _label(path: str) -> str:
    return "stdin" if path == "-" else Path(path).name


def _check_plot(path: str | None) -> None:
    """Refuse a chart file matplotlib cannot write before the work starts (exit code 3)."""
    if path:
        from windowkeeper.cli._plot import check_plot_path

        check_plot_path(path)


# ---------------------------------------------------------------------------------- progress


class _Progress:
    """Progress of long work on stderr: rich bars on a terminal, else a plain line now and then.

    Plain lines (``turn 5/24``) come at most every :data:`PROGRESS_EVERY` seconds, so a short run
    prints none.
    """

    def __init__(self, err: Console) -> None:
        self._err = err
        self._last = time.monotonic()
        self._tasks: dict[str, TaskID] = {}
        self._bars = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            if err.is_terminal
            else None
        )

    def __enter__(self) -> _Progress:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._bars.stop()

    def update(self, key: str, label: str, done: int, total: int) -> None:
        """Show ``label done/total`` for the piece of work ``key``."""
        if self._bars is not None:
            task = self._tasks.get(key)
            if task is None:
                task = self._tasks[key] = self._bars.add_task(label, total=total)
            self._bars.update(task, description=label, completed=done, total=total)
            return
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY:
            self._last = now
            self._err.print(Text(f"{label} {done}/{total}"))

    def done(self, key: str) -> None:
        """Remove the bar of ``key`` (plain mode prints nothing)."""
        task = self._tasks.pop(key, None)
        if task is not None and self._bars is not None:
            self._bars.remove_task(task)
