"""The three figures of a tune report, drawn on bare ``matplotlib.figure.Figure`` objects with the Agg canvas.

Optuna's own ``optuna.visualization.matplotlib`` plots go through pyplot and switch the global style
(``plt.style.use("ggplot")``), which a library must not do to its caller; the numbers drawn here are
Optuna's (trial values, ``get_param_importances``).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from advisor.tune.space import PLACEMENT_PARAM

if TYPE_CHECKING:
    from advisor.tune.results import TuneReport


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _colors(report: TuneReport) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {p.name: palette(i % 10) for i, p in enumerate(report.config.space.placements)}


def history_png(report: TuneReport) -> bytes:
    """Optimisation history: each trial's validation loss by trial number, and the best so far."""
    fig, subplots = _figure(8.5, 4.4)
    ax = subplots()
    colors = _colors(report)
    best: list[tuple[int, float]] = []
    low = float("inf")
    for t in report.trials:
        if t.state == "complete" and t.value is not None:
            name = str(t.params.get(PLACEMENT_PARAM))
            ax.plot([t.number], [t.value], "o", ms=5, color=colors.get(name, "grey"), label=name)
            low = min(low, t.value)
            best.append((t.number, low))
        elif t.state == "pruned" and t.val_loss:
            ax.plot([t.number], [t.val_loss[-1]], "x", ms=5, color="grey", label="pruned (last reported)")
    if best:
        ax.step([n for n, _ in best], [v for _, v in best], where="post", color="black", lw=1.2, label="best so far")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=8, frameon=False)
    ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation loss at the last epoch")
    ax.set_title(f"optimisation history · {report.config.data.dataset} · {report.config.arch}", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    return _png(fig)


def importance_png(report: TuneReport) -> bytes:
    """Optuna's parameter importances as horizontal bars (or why there are none)."""
    fig, subplots = _figure(6.5, 3.2)
    ax = subplots()
    if report.importances:
        names = list(report.importances)[::-1]
        values = [report.importances[n] for n in names]
        ax.barh(range(len(names)), values, color="tab:blue", alpha=0.85)
        ax.set_yticks(range(len(names)), names, fontsize=9)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
        ax.set_xlim(0, max(values) * 1.2 if max(values) > 0 else 1)
        ax.set_xlabel("importance (PED-ANOVA, normalised)")
    else:
        ax.text(0.5, 0.5, report.importance_note or "no importances", ha="center", va="center", wrap=True, fontsize=9)
        ax.set_axis_off()
    ax.set_title("parameter importance for the validation loss", fontsize=10)
    return _png(fig)


def rates_png(report: TuneReport) -> bytes:
    """Validation loss against each group's rate, one panel per group, coloured by placement."""
    groups = report.config.space.groups
    fig, subplots = _figure(4.0 * max(1, len(groups)), 3.8)
    axes = subplots(1, max(1, len(groups)), squeeze=False)[0]
    colors = _colors(report)
    for ax, g in zip(axes, groups, strict=False):
        seen = set()
        for t in report.trials:
            if t.state != "complete" or t.value is None or g.param not in t.params:
                continue
            name = str(t.params.get(PLACEMENT_PARAM))
            ax.plot(
                [t.params[g.param]],
                [t.value],
                "o",
                ms=5,
                color=colors.get(name, "grey"),
                label=None if name in seen else name,
            )
            seen.add(name)
        if g.plan_p is not None:
            ax.axvline(g.plan_p, color="black", lw=1, ls="--", label="the plan's rate")
        ax.set_xlim(g.low - 0.02, g.high + 0.02)
        ax.set_xlabel(f"{g.param} (drop probability)")
        ax.set_ylabel("validation loss")
        ax.set_yscale("log")
        ax.set_title(f"{g.name}: searched {g.low:g}–{g.high:g}", fontsize=10)
        ax.grid(True, alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)
    if not groups:
        axes[0].text(0.5, 0.5, "no rate was searched", ha="center", va="center")
        axes[0].set_axis_off()
    return _png(fig)
