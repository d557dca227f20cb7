"""Zones, the budget that splits a context window between them, and the report of where tokens went."""

from __future__ import annotations

import difflib
import enum
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Never, TypeAlias, get_args

from windowkeeper._checks import check_int
from windowkeeper._profiles import ModelProfile, ModelRegistry, default_registry
from windowkeeper.exceptions import BudgetExceededError, InvalidConfigError

__all__ = ["Budget", "BudgetReport", "Dropped", "Level", "Zone"]

Zone: TypeAlias = Literal["system", "tools", "rag", "history", "user", "reserve"]
"""The parts of a context window, in the order the assembler lays them out."""
PromptZone: TypeAlias = Literal["system", "tools", "rag", "history", "user"]
Level: TypeAlias = Literal["ok", "alert", "act", "overflow"]
"""``ok``; ``alert`` at the alert threshold (70 %); ``act`` at the act threshold (80 %); ``overflow``
when the prompt plus the generation reserve no longer fit the window."""

ZONES: tuple[Zone, ...] = get_args(Zone)
PROMPT_ZONES: tuple[PromptZone, ...] = get_args(PromptZone)
LEVELS: tuple[Level, ...] = get_args(Level)


RESERVE_CAP = 4096
"""The most tokens a model's default generation reserve takes (its output cap, at most this)."""


def default_reserve(profile: ModelProfile) -> int:
    """A model's default generation reserve: its output cap, at most :data:`RESERVE_CAP`.

    Example:
        >>> default_reserve(default_registry().get("gpt-4o"))
        4096
    """
    return min(profile.max_output_tokens, RESERVE_CAP)


class _FromProfile(enum.Enum):
    """Marks a setting taken from the model's profile unless given."""

    PROFILE = "the profile's"


def _refuse_unknown_keywords(
    unknown: Mapping[str, object], function: Callable[..., object]
) -> None:
    """Raise for keywords ``function`` does not take, naming the allowed ones and the closest."""
    allowed = [
        name
        for name, p in inspect.signature(function).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.5)
    if not close:  # a fragment of a longer name ("reserve")
        close = [a for a in allowed if name in a][:1]
    hint = f"; did you mean {close[0]}?" if close else ""
    raise InvalidConfigError(
        f"{function.__qualname__}() got an unknown keyword {name}={unknown[name]!r}; "
        f"the keywords are {', '.join(allowed)}{hint}"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Dropped:
    """Something left out of the context, and why.

    Example:
        >>> Dropped(zone="history", what="unit 3", tokens=412, reason="history over its limit").tokens
        412
    """

    zone: Zone
    """The zone it would have been in."""
    what: str
    """A short label: ``unit 12``, ``chunk kb/returns.md``, ``tool get_weather``."""
    tokens: int
    """Tokens it would have cost."""
    reason: str
    """Why it was left out."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetReport:
    """Where every token of a request went.

    Example:
        >>> b = Budget(context_window=128_000, generation_reserve=1_500)
        >>> r = b.report({"system": 1_400, "tools": 800, "history": 101_000, "user": 60})
        >>> r.level, round(r.utilization, 3)
        ('act', 0.807)
    """

    context_window: int
    """The window the request must fit."""
    zones: Mapping[Zone, int]
    """Tokens per zone; ``reserve`` is the generation reserve."""
    limits: Mapping[Zone, int]
    """Per-zone maximums that were set."""
    prompt_tokens: int
    """Tokens of the prompt (every zone but the reserve)."""
    utilization: float
    """``prompt_tokens / context_window``."""
    level: Level
    """ok / alert / act / overflow."""
    headroom: int
    """Tokens still free after prompt and reserve (negative when over)."""
    over_limit: tuple[Zone, ...] = ()
    """Zones above their own maximum."""
    dropped: tuple[Dropped, ...] = ()
    """What was left out to make it fit."""
    effective_window: int | None = None
    """Quality window of the model, when known."""
    model: str | None = None
    """Model name, when the budget came from a profile."""

    @property
    def over_effective_window(self) -> bool:
        """True when the prompt is longer than the model's known quality window."""
        return self.effective_window is not None and self.prompt_tokens > self.effective_window

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "model": self.model,
            "context_window": self.context_window,
            "zones": dict(self.zones),
            "limits": dict(self.limits),
            "prompt_tokens": self.prompt_tokens,
            "utilization": round(self.utilization, 6),
            "level": self.level,
            "headroom": self.headroom,
            "over_limit": list(self.over_limit),
            "over_effective_window": self.over_effective_window,
            "dropped": [
                {"zone": d.zone, "what": d.what, "tokens": d.tokens, "reason": d.reason}
                for d in self.dropped
            ],
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """A context window split into zones, with utilization thresholds.

    Args are fields; every one is checked when the budget is built.

    Example:
        >>> b = Budget(context_window=128_000, generation_reserve=1_500)
        >>> b.headroom({"system": 1_400, "tools": 800})
        124300
    """

    context_window: int
    """Tokens the model accepts (prompt + output)."""
    generation_reserve: int
    """Tokens kept free for the model's answer."""
    zone_limits: Mapping[PromptZone, int] = field(default_factory=dict)
    """Optional maximum per prompt zone."""
    alert_threshold: float = 0.70
    """Utilization at which the level becomes ``alert``."""
    act_threshold: float = 0.80
    """Utilization at which the level becomes ``act``."""
    effective_window: int | None = None
    """Quality window; reports flag prompts longer than this."""
    model: str | None = None
    """Model name for reports."""

    def __post_init__(self) -> None:
        check_int("context_window", self.context_window, 1)
        reserve = self.generation_reserve
        if (
            isinstance(reserve, bool)
            or not isinstance(reserve, int)
            or not 0 <= reserve < self.context_window
        ):
            raise InvalidConfigError(
                f"generation_reserve must be between 0 and context_window ({self.context_window}) "
                f"exclusive; got {reserve!r}"
            )
        if not isinstance(self.zone_limits, Mapping):
            raise InvalidConfigError(
                f"zone_limits must be a mapping of zone to tokens; got {self.zone_limits!r}"
            )
        limits = dict(self.zone_limits)
        for zone, limit in limits.items():
            if zone not in PROMPT_ZONES:
                raise InvalidConfigError(
                    f"zone_limits keys must be among {list(PROMPT_ZONES)}; got {zone!r}"
                )
            if (
                isinstance(limit, bool)
                or not isinstance(limit, int)
                or not 0 <= limit <= self.context_window
            ):
                raise InvalidConfigError(
                    f"zone_limits[{zone!r}] must be an int between 0 and context_window "
                    f"({self.context_window}); got {limit!r}"
                )
        object.__setattr__(self, "zone_limits", MappingProxyType(limits))
        for label in ("alert_threshold", "act_threshold"):
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise InvalidConfigError(f"{label} must be a number in (0, 1]; got {value!r}")
        if self.alert_threshold > self.act_threshold:
            raise InvalidConfigError(
                f"alert_threshold must be <= act_threshold ({self.act_threshold}); "
                f"got {self.alert_threshold!r}"
            )
        window = self.effective_window
        if window is not None and (
            isinstance(window, bool)
            or not isinstance(window, int)
            or not 0 < window <= self.context_window
        ):
            raise InvalidConfigError(
                f"effective_window must be None or an int between 1 and context_window "
                f"({self.context_window}); got {window!r}"
            )
        if self.model is not None and not isinstance(self.model, str):
            raise InvalidConfigError(f"model must be a str or None; got {self.model!r}")

    @classmethod
    def for_model(
        cls,
        model: str | ModelProfile,
        *,
        generation_reserve: int | None = None,
        registry: ModelRegistry | None = None,
        zone_limits: Mapping[PromptZone, int] | None = None,
        alert_threshold: float = 0.70,
        act_threshold: float = 0.80,
        effective_window: int | _FromProfile | None = _FromProfile.PROFILE,
        **unknown: Never,
    ) -> Budget:
        """A budget for a registered model: its window and effective window.

        ``generation_reserve`` defaults to the model's output cap, at most 4,096 tokens;
        ``effective_window`` to the profile's (``None`` for none). The other keywords are
        :class:`Budget`'s fields.

        Raises:
            InvalidConfigError: A keyword is unknown (the message names the closest one) or a
                value is out of range.
            UnknownModelError: ``model`` has no profile.

        Example:
            >>> Budget.for_model("gpt-4o").context_window
            128000
        """
        if unknown:  # a misspelt keyword: a type error for mypy, a clear message at run time
            _refuse_unknown_keywords(unknown, cls.for_model)
        profile = (registry or default_registry()).get(model)
        reserve = default_reserve(profile) if generation_reserve is None else generation_reserve
        return cls(
            context_window=profile.context_window,
            generation_reserve=reserve,
            zone_limits={} if zone_limits is None else zone_limits,
            alert_threshold=alert_threshold,
            act_threshold=act_threshold,
            effective_window=(
                profile.effective_window
                if isinstance(effective_window, _FromProfile)
                else effective_window
            ),
            model=profile.name,
        )

    @property
    def prompt_limit(self) -> int:
        """Tokens the prompt may use: window minus reserve."""
        return self.context_window - self.generation_reserve

    def headroom(self, used: Mapping[str, int]) -> int:
        """Tokens left for everything else after the zones in ``used`` and the reserve.

        Example:
            >>> Budget(context_window=8_192, generation_reserve=1_024).headroom({"system": 500})
            6668
        """
        return self.prompt_limit - sum(used.get(z, 0) for z in PROMPT_ZONES)

    def level_of(self, prompt_tokens: int) -> Level:
        """The level for a prompt of ``prompt_tokens``."""
        if prompt_tokens > self.prompt_limit:
            return "overflow"
        utilization = prompt_tokens / self.context_window
        if utilization >= self.act_threshold:
            return "act"
        if utilization >= self.alert_threshold:
            return "alert"
        return "ok"

    def report(
        self, zones: Mapping[str, int], *, dropped: tuple[Dropped, ...] = ()
    ) -> BudgetReport:
        """Build the report for a request whose zones hold ``zones`` tokens.

        Raises:
            InvalidConfigError: A zone name is unknown or a count is negative.
        """
        for zone, n in zones.items():
            if zone not in PROMPT_ZONES:
                raise InvalidConfigError(
                    f"zones keys must be among {list(PROMPT_ZONES)}; got {zone!r}"
                )
            check_int(f"zones[{zone!r}]", n, 0)
        counts: dict[Zone, int] = {z: int(zones.get(z, 0)) for z in PROMPT_ZONES}
        counts["reserve"] = self.generation_reserve
        prompt = sum(counts[z] for z in PROMPT_ZONES)
        over = tuple(z for z, limit in self.zone_limits.items() if counts[z] > limit)
        return BudgetReport(
            context_window=self.context_window,
            zones=MappingProxyType(counts),
            limits=self.zone_limits,  # type: ignore[arg-type]
            prompt_tokens=prompt,
            utilization=prompt / self.context_window,
            level=self.level_of(prompt),
            headroom=self.prompt_limit - prompt,
            over_limit=over,
            dropped=dropped,
            effective_window=self.effective_window,
            model=self.model,
        )

    def require_fits(self, zones: Mapping[str, int]) -> None:
        """Raise unless the zones plus the reserve fit the window and each zone its limit.

        Raises:
            BudgetExceededError: With ``required``, ``limit`` and the ``zone`` that overflowed.
        """
        for zone, limit in self.zone_limits.items():
            if zones.get(zone, 0) > limit:
                raise BudgetExceededError(required=zones.get(zone, 0), limit=limit, zone=zone)
        needed = sum(zones.get(z, 0) for z in PROMPT_ZONES) + self.generation_reserve
        if needed > self.context_window:
            raise BudgetExceededError(
                required=needed,
                limit=self.context_window,
                zone="total",
                detail=f"prompt {needed - self.generation_reserve} + reserve {self.generation_reserve}",
            )
