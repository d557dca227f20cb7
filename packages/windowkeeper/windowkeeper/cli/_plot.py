"""The context-creep chart: stacked zones per turn, the alert and act lines, the projection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from windowkeeper._budget import PROMPT_ZONES, Budget, Zone
from windowkeeper._transcript import TranscriptAudit
from windowkeeper.exceptions import InvalidConfigError

if TYPE_CHECKING:
    from windowkeeper._replay import Replay

__all__ = ["check_plot_path", "plot_creep", "plot_replay"]

_COLOURS = {
    "system": "#4e79a7",
    "tools": "#f28e2b",
    "rag": "#59a14f",
    "history": "#bab0ac",
    "user": "#e15759",
    "reserve": "#d4d4d4",
}


def _pyplot() -> tuple[Any, Any]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'windowkeeper[plot]'") from exc
    return matplotlib, plt


def check_plot_path(path: str, *, flag: str = "--plot") -> Path:
    """``path`` when matplotlib can write a chart to it; checked before any work is done.

    Raises:
        InvalidConfigError: The file name's extension is not a format matplotlib writes (the
            message names ``flag``, the value and the formats).
        ImportError: matplotlib is not installed (with the install command).
    """
    _pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    # pgf is left out: writing it needs a LaTeX installation.
    formats = sorted(set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"})
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise InvalidConfigError(
            f"{flag} must name a file ending in one of {', '.join('.' + f for f in formats)} "
            f"(the chart's format is taken from it); got {path!r}"
        )
    return Path(path)


def _zone_chart(
    plt: Any, turns: list[int], zones: Sequence[Mapping[Zone, int]], budget: Budget
) -> tuple[Any, Any]:
    """A figure with the per-turn zones stacked under the generation reserve."""
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    ax.stackplot(
        turns,
        *[[z[name] for z in zones] for name in PROMPT_ZONES],
        [budget.generation_reserve] * len(turns),
        labels=[*PROMPT_ZONES, "reserve"],
        colors=[_COLOURS[z] for z in (*PROMPT_ZONES, "reserve")],
        alpha=0.9,
    )
    return fig, ax


def _finish_chart(
    matplotlib: Any, plt: Any, fig: Any, ax: Any, budget: Budget, title: str, path: str | Path
) -> Path:
    """Threshold and window lines, labels, legend; write the PNG."""
    window = budget.context_window
    for frac, colour, label in (
        (budget.alert_threshold, "#edc948", "alert"),
        (budget.act_threshold, "#e15759", "act"),
    ):
        ax.axhline(frac * window, color=colour, lw=1.2, label=f"{label} ({frac:.0%})")
    ax.axhline(window, color="black", lw=1.0, label=f"window ({window:,})")
    ax.set_xlabel("turn")
    ax.set_ylabel("tokens in the request")
    ax.set_title(title)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:.0f}k"))
    ax.legend(loc="upper left", fontsize=8, ncol=2, framealpha=0.9)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_replay(replay: Replay, path: str | Path) -> Path:
    """Per-turn zones of a replay against what re-sending everything would have cost."""
    matplotlib, plt = _pyplot()
    turns = [t.turn for t in replay.turns]
    fig, ax = _zone_chart(plt, turns, [t.report.zones for t in replay.turns], replay.budget)
    ax.plot(
        turns,
        [t.naive_tokens for t in replay.turns],
        "--",
        color="#333333",
        lw=1.2,
        label="re-sending everything",
    )
    title = f"Replay: {replay.strategy}, {replay.model}, {len(turns)} turns"
    return _finish_chart(matplotlib, plt, fig, ax, replay.budget, title, path)


def plot_creep(audit: TranscriptAudit, budget: Budget, path: str | Path) -> Path:
    """Write the chart as PNG (needs the ``plot`` extra: ``pip install 'windowkeeper[plot]'``)."""
    matplotlib, plt = _pyplot()
    turns = [row.turn for row in audit.turns]
    fig, ax = _zone_chart(plt, turns, [row.report.zones for row in audit.turns], budget)
    window = budget.context_window
    horizon = max(turns)
    p = audit.projection
    if p is not None and audit.turns_until_act is not None:
        horizon = max(horizon, min(audit.turns_until_act + 3, horizon * 20))
        xs = list(range(max(turns), horizon + 1))
        ax.plot(
            xs,
            [p.tokens_after(x) for x in xs],
            "--",
            color="#333333",
            lw=1.2,
            label=f"projection (+{p.per_turn:,.0f} tokens/turn)",
        )
        ax.axvline(audit.turns_until_act, color="#b07aa1", lw=0.8, ls=":")
        ax.annotate(
            f"80 % at turn {audit.turns_until_act}",
            (audit.turns_until_act, window * 0.82),
            fontsize=9,
            color="#6b3d63",
            ha="right",
        )
    ax.set_xlim(1, horizon)
    ax.set_ylim(0, window * 1.05)
    title = f"Context creep: {audit.model}, {len(turns)} turns observed"
    return _finish_chart(matplotlib, plt, fig, ax, budget, title, path)
