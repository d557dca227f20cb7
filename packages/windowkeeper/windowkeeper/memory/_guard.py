"""Guarded calls for background work: per-call timeout, retries with backoff, sync or async.

A sync callable runs on a helper thread per call, so a hung call can be abandoned (its thread is
left to finish; its late result is ignored). An async callable runs on the worker's own event
loop under ``asyncio.wait_for``. Closing the guard wakes a waiting call and cancels a running
task.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from windowkeeper._checks import check_int
from windowkeeper.exceptions import InvalidConfigError, WindowkeeperError

__all__ = ["Cancelled", "GaveUp", "Guard", "RetryPolicy", "SummaryTimeoutError"]

logger = logging.getLogger("windowkeeper.summary")


class SummaryTimeoutError(WindowkeeperError, TimeoutError):
    """A summariser (or condenser) call ran past :attr:`RetryPolicy.timeout`.

    The call was abandoned: its thread is left to finish and its late result is ignored.

    Attributes:
        timeout: The limit, in seconds.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"the call took longer than timeout={timeout} s and was abandoned")


class Cancelled(Exception):
    """The guard was closed while a call was waiting or running."""


class GaveUp(Exception):
    """Every attempt failed; the last attempt's exception is the ``__cause__``."""

    def __init__(self, attempts: int, error: BaseException) -> None:
        self.attempts = attempts
        super().__init__(f"{type(error).__name__}: {error}")


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How each summariser (or condenser) call is retried and timed out.

    Waits double from ``initial_delay`` up to ``max_delay`` between attempts.

    Example:
        >>> RetryPolicy(attempts=4, initial_delay=0.5, max_delay=1.5).delays()
        (0.5, 1.0, 1.5)
    """

    attempts: int = 3
    """Calls per step before it is given up (the first call included)."""
    initial_delay: float = 0.5
    """Seconds to wait after the first failure."""
    max_delay: float = 8.0
    """Longest wait between two attempts."""
    timeout: float | None = 60.0
    """Seconds one call may take before it is abandoned (None: no limit)."""

    def __post_init__(self) -> None:
        check_int("attempts", self.attempts, 1)
        for label in ("initial_delay", "max_delay"):
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidConfigError(f"{label} must be a number >= 0 (seconds); got {value!r}")
        if self.max_delay < self.initial_delay:
            raise InvalidConfigError(
                f"max_delay must be >= initial_delay ({self.initial_delay}); got {self.max_delay!r}"
            )
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, (int, float))
            or self.timeout <= 0
        ):
            raise InvalidConfigError(
                f"timeout must be a number > 0 (seconds) or None; got {self.timeout!r}"
            )

    def delays(self) -> tuple[float, ...]:
        """The waits before the 2nd, 3rd, ... attempt."""
        return tuple(
            min(self.max_delay, self.initial_delay * 2**i) for i in range(self.attempts - 1)
        )


def is_async(fn: object) -> bool:
    """Whether ``fn`` is an ``async def`` function or an object with an async ``__call__``."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (an object with an async __call__)
    )


class Guard:
    """Runs ``fn(first, second) -> str`` under a :class:`RetryPolicy`, for one worker thread.

    Not shared between threads except for :meth:`close`, which any thread may call.
    """

    def __init__(self, retry: RetryPolicy) -> None:
        self.retry = retry
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call_done: threading.Event | None = None
        self._local = threading.local()  # each worker thread runs its own event loop
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._stop.is_set()

    def close(self) -> None:
        """Wake a waiting call, cancel a running task, and refuse further calls."""
        with self._lock:
            self._stop.set()
            if self._call_done is not None:
                self._call_done.set()
            running = self._running
        if running is not None:
            loop, task = running
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(task.cancel)

    def release(self) -> None:
        """Close the calling worker thread's event loop (when the thread stops)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        self._local.loop = None
        if loop is not None:
            loop.close()

    def call(self, fn: Callable[..., object], first: str, second: object, *, what: str) -> str:
        """``fn(first, second)`` with retries, backoff and the timeout: the non-empty text it gave.

        Raises:
            Cancelled: :meth:`close` was called.
            GaveUp: Every attempt raised, timed out, or returned something other than a
                non-empty str.
        """
        delays = self.retry.delays()
        attempts = self.retry.attempts
        for attempt in range(attempts):
            if self._stop.is_set():
                raise Cancelled
            try:
                result = self._once(fn, first, second)
                if not isinstance(result, str):
                    raise TypeError(f"expected a str, got {type(result).__name__}")
                if not result.strip():
                    raise ValueError("returned an empty text")
                return result.strip()
            except Cancelled:
                raise
            except Exception as exc:
                logger.warning(
                    "%s: attempt %d/%d failed: %s: %s",
                    what,
                    attempt + 1,
                    attempts,
                    type(exc).__name__,
                    exc,
                )
                if attempt == attempts - 1:
                    raise GaveUp(attempts, exc) from exc
                if self._stop.wait(delays[attempt]):
                    raise Cancelled from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, fn: Callable[..., object], first: str, second: object) -> object:
        timeout = self.retry.timeout
        if is_async(fn):
            return self._await(cast("Awaitable[object]", fn(first, second)), timeout)
        box: dict[str, object] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["value"] = fn(first, second)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        with self._lock:
            if self._stop.is_set():
                raise Cancelled
            self._call_done = done
        threading.Thread(target=target, name="windowkeeper-summary-call", daemon=True).start()
        finished = done.wait(timeout)
        with self._lock:
            self._call_done = None
        if self._stop.is_set():
            raise Cancelled
        if not finished:
            raise SummaryTimeoutError(float(timeout or 0))
        if "error" in box:
            error = box["error"]
            raise error if isinstance(error, Exception) else RuntimeError(repr(error))
        value = box["value"]
        if inspect.isawaitable(value):
            return self._await(value, timeout)
        return value

    def _await(self, awaitable: Awaitable[object], timeout: float | None) -> object:
        async def run() -> object:
            return await asyncio.wait_for(awaitable, timeout)

        with self._lock:
            if self._stop.is_set():
                if inspect.iscoroutine(awaitable):
                    awaitable.close()
                raise Cancelled
            loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
            if loop is None:
                loop = self._local.loop = asyncio.new_event_loop()
            task = loop.create_task(run())
            self._running = (loop, task)
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError as exc:
            raise Cancelled from exc
        except TimeoutError as exc:
            if task.cancelled() or self._stop.is_set():
                raise Cancelled from exc
            raise SummaryTimeoutError(float(timeout or 0)) from exc
        finally:
            with self._lock:
                self._running = None
