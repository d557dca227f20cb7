"""The windowkeeper error and warning tree.

```
WindowkeeperError
├── InvalidConfigError (ValueError)        a setting is out of range; raised when the object is built
│   └── ModelNotInstalledError (ImportError) an embedded model is absent; gives the install command
├── InvalidMessageError (ValueError)       a message or transcript is malformed; names the index
├── UnknownModelError (KeyError)           no profile for a model name; suggests close names
├── EncodingError                          a tokenizer file is missing, corrupt or unreadable
└── BudgetExceededError                    the fixed zones alone do not fit the window

WindowkeeperWarning (UserWarning)
├── ApproximateCountWarning               counts come from a stand-in encoding with an error band
└── PrefixCacheWarning                    the stable prefix is too short to cache, or it changed
```

Every error message names the parameter, the value it got and what is allowed.
"""

from __future__ import annotations

__all__ = [
    "ApproximateCountWarning",
    "BudgetExceededError",
    "EncodingError",
    "InvalidConfigError",
    "InvalidMessageError",
    "ModelNotInstalledError",
    "PrefixCacheWarning",
    "StoreUnavailableError",
    "UnknownModelError",
    "WindowkeeperError",
    "WindowkeeperWarning",
]


class WindowkeeperError(Exception):
    """Base class of every error windowkeeper raises."""


class InvalidConfigError(WindowkeeperError, ValueError):
    """A setting is out of its allowed range or of the wrong kind.

    Raised when the object that takes the setting is built, never later.
    """


class InvalidMessageError(WindowkeeperError, ValueError):
    """A message, or a transcript of messages, is malformed.

    Attributes:
        index: Position of the offending message in its list, when there is one.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        self.index = index
        prefix = f"message {index}: " if index is not None else ""
        super().__init__(prefix + message)


class UnknownModelError(WindowkeeperError, KeyError):
    """No profile is registered for a model name.

    Attributes:
        model: The name that was asked for.
        suggestions: Registered names close to it, best first.
    """

    def __init__(self, model: str, suggestions: tuple[str, ...]) -> None:
        self.model = model
        self.suggestions = suggestions
        hint = f" Did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""
        super().__init__(
            f"model {model!r} has no profile.{hint} Register one with "
            f"windowkeeper.register_model(ModelProfile(name={model!r}, context_window=..., "
            f"max_output_tokens=..., encoding='o200k_base'))."
        )

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class ModelNotInstalledError(InvalidConfigError, ImportError):
    """An embedded model (the local summariser or embedder) is not installed.

    Raised when the object that needs it is built, never later on a request.

    Attributes:
        model: What was looked for.
        install: The command that installs it.
    """

    def __init__(self, model: str, install: str, *, detail: str = "") -> None:
        self.model = model
        self.install = install
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{model} is not installed{extra}. Install it with: {install}")


class StoreUnavailableError(WindowkeeperError, ConnectionError):
    """A shared store (PostgreSQL) could not be reached, or lost its connection mid-call.

    A unit, summary or vector is always either whole in the store or absent. A write is tried
    again while the server is away (up to the store's ``timeout``) and never lands twice; when
    this is raised, the last try's outcome is unknown only if its connection broke while
    committing: a memory's next view (``sync``) shows whether the unit landed. The store's pool
    reconnects by itself.

    Attributes:
        cause: What the driver said, e.g. ``"connection refused"``.
    """

    def __init__(self, message: str, *, cause: str = "") -> None:
        self.cause = cause
        super().__init__(message + (f": {cause}" if cause else ""))


class EncodingError(WindowkeeperError):
    """A tokenizer could not be loaded: file missing, hash mismatch, or unreadable."""


class BudgetExceededError(WindowkeeperError):
    """The parts that can never be dropped do not fit the context window.

    Attributes:
        required: Tokens the fixed parts need (system, user message, reserve, ...).
        limit: Tokens the window (or the zone) allows.
        zone: The zone that overflowed, or ``"total"`` for the whole window.
    """

    def __init__(self, *, required: int, limit: int, zone: str, detail: str = "") -> None:
        self.required = required
        self.limit = limit
        self.zone = zone
        over = required - limit
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"{zone} needs {required} tokens but only {limit} fit: over by {over}{extra}"
        )


class WindowkeeperWarning(UserWarning):
    """Base class of every warning windowkeeper issues."""


class ApproximateCountWarning(WindowkeeperWarning):
    """Counts come from a stand-in encoding; the profile declares the error band."""


class PrefixCacheWarning(WindowkeeperWarning):
    """The stable prompt prefix is too short to be cached, or it changed between requests."""
