"""The ``windowkeeper`` command: count, audit, plan, kv, models, replay, clone.

Exit codes: 0 success; 1 ``--fail-on`` level reached; 2 usage error (unknown option, bad flag
value, inconsistent flags); 3 bad input (file missing, unreadable or not UTF-8, invalid JSON or
transcript, unknown model, missing optional dependency); 4 internal error (a bug: the traceback is
printed, please report it); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys
import traceback
import warnings
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

# every exit code stays importable from here (EXIT_OK and EXIT_FAIL_ON are re-exported)
from windowkeeper.cli._args import EXIT_FAIL_ON as EXIT_FAIL_ON
from windowkeeper.cli._args import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    _CliError,
    _parser,
)
from windowkeeper.cli._args import EXIT_OK as EXIT_OK
from windowkeeper.cli._commands import _audit, _count, _kv, _models, _plan
from windowkeeper.cli._output import _error, _unknown_model
from windowkeeper.cli._replay_clone import _clone, _replay
from windowkeeper.exceptions import ApproximateCountWarning, UnknownModelError, WindowkeeperError

__all__ = ["entry", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 110)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    handler = {
        "count": _count,
        "audit": _audit,
        "plan": _plan,
        "kv": _kv,
        "models": _models,
        "replay": _replay,
        "clone": _clone,
    }[args.command]
    try:
        with warnings.catch_warnings():
            # the CLI shows the band instead
            warnings.simplefilter("ignore", ApproximateCountWarning)
            return handler(args, console, err)
    except _CliError as exc:
        if exc.code == EXIT_USAGE:
            err.print(Text(f"windowkeeper {args.command}: error: {exc}"))
        else:
            _error(err, str(exc))
        return exc.code
    except UnknownModelError as exc:
        _error(err, _unknown_model(exc, from_flag=getattr(args, "model", None) is not None))
        return EXIT_INPUT
    except (WindowkeeperError, ImportError) as exc:  # ModelNotInstalledError is both
        _error(err, str(exc))
        return EXIT_INPUT
    except OSError as exc:
        _error(
            err, f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        )
        return EXIT_INPUT
    except KeyboardInterrupt:
        _error(err, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say so, and keep its exit code apart from --fail-on's
        err.print(
            Text(
                f"windowkeeper: internal error ({type(exc).__name__}: {exc}); this is a bug in "
                "windowkeeper, please report it with the command you ran and this traceback:"
            )
        )
        traceback.print_exception(exc, file=sys.stderr)
        return EXIT_INTERNAL


def entry() -> None:
    """The console script: run :func:`main` as a program and exit with its code.

    Only here (never when :func:`main` is called inside another process, e.g. a test run) may the
    process end early past a background model call.
    """
    code = main()
    _exit_past_native_workers(code)
    sys.exit(code)


def _exit_past_native_workers(code: int) -> None:
    """End the process at once when a background model call is still running after close().

    A summariser call inside torch cannot be interrupted, and torch aborts the process ("terminate
    called without an active exception") if the interpreter shuts down under it. Everything
    committed is already in the store; the abandoned call's result would be discarded anyway.
    """
    import os
    import threading

    if any(
        t.name.startswith("windowkeeper-summary") and t.is_alive() for t in threading.enumerate()
    ):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
