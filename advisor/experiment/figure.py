"""The experiment's one figure: validation-loss curves per variant, and final test accuracy with error bars.

Drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas: no pyplot, no global backend switch, no
display needed.
"""

from __future__ import annotations

import io
import math
import statistics

from advisor.experiment.results import ExperimentResult


def _mean_curve(curves: list[list[float]]) -> tuple[list[float], list[float]]:
    length = min(len(c) for c in curves)
    mean = [statistics.fmean(c[i] for c in curves) for i in range(length)]
    std = [statistics.stdev(c[i] for c in curves) if len(curves) > 1 else 0.0 for i in range(length)]
    return mean, std


def accuracy_axis(result: ExperimentResult) -> tuple[float, float]:
    """The accuracy axis in percent: from the chance level of the task, rounded down to a multiple of 10
    (100 / n_classes: 10 % for digits, 30 % for wine, 50 % for breast-cancer), to 100 %.

    Bars start at a floor that means something, so their lengths compare accuracies; a floor just below
    the lowest bar would make a difference of half a point look like a factor of two.
    """
    floor = math.floor(100.0 / max(result.n_classes, 1) / 10.0) * 10.0
    return floor, 100.0


def render_png(result: ExperimentResult, *, dpi: int = 110) -> bytes:
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    from advisor.experiment.report import title

    fig = Figure(figsize=(11.5, 4.8), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    curves_ax, acc_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    palette = colormaps["tab10"]
    colors = {v.name: palette(i % 10) for i, v in enumerate(result.variants)}
    # Variants with the same placement (the advisor's plan often is one of the others) draw the same curve;
    # different dash patterns keep both visible.
    dashes = {v.name: ("-", "--", "-.", ":")[i % 4] for i, v in enumerate(result.variants)}

    for s in result.ranking:
        runs = [r for r in result.runs if r.variant == s.name]
        mean, std = _mean_curve([[e.val_loss for e in r.epochs] for r in runs])
        epochs = list(range(1, len(mean) + 1))
        color = colors.get(s.name, "black")
        curves_ax.plot(epochs, mean, color=color, lw=1.8, ls=dashes.get(s.name, "-"), label=s.name)
        if len(runs) > 1:
            curves_ax.fill_between(
                epochs,
                [m - d for m, d in zip(mean, std, strict=True)],
                [m + d for m, d in zip(mean, std, strict=True)],
                color=color,
                alpha=0.12,
                lw=0,
            )
        best = min(range(len(mean)), key=lambda i: mean[i])
        curves_ax.plot([epochs[best]], [mean[best]], "o", color=color, ms=5)
    curves_ax.set_xlabel("epoch")
    curves_ax.set_ylabel("validation loss (cross-entropy)")
    curves_ax.set_title("validation loss, mean over seeds (dot: lowest)", fontsize=10)
    curves_ax.set_yscale("log")  # late epochs, where the variants part ways, get the room
    curves_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    curves_ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    curves_ax.yaxis.set_minor_formatter(NullFormatter())
    curves_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves_ax.grid(True, alpha=0.3, which="both")
    curves_ax.legend(fontsize=8, frameon=False)

    names = [s.name for s in result.ranking][::-1]  # best at the top
    means = [s.test_acc_mean * 100 for s in result.ranking][::-1]
    errs = [(s.test_acc_std or 0.0) * 100 for s in result.ranking][::-1]
    ys = list(range(len(names)))
    acc_ax.barh(
        ys, means, xerr=errs, color=[colors.get(n, "grey") for n in names], alpha=0.85, error_kw={"capsize": 3, "lw": 1}
    )
    acc_ax.set_yticks(ys, names, fontsize=9)
    low, high = accuracy_axis(result)
    acc_ax.set_xlim(low, high)
    chance = 100.0 / result.n_classes
    acc_ax.axvline(chance, color="grey", lw=1, ls="--")
    acc_ax.text(chance, len(names) - 0.45, f" chance {chance:.0f}%", fontsize=7, color="grey", va="bottom")
    for y, m in zip(ys, means, strict=True):
        acc_ax.text(low, y, f" {m:.1f}", va="center", ha="left", fontsize=8, color="white")
    acc_ax.set_xlabel("test accuracy % (mean ± sd over seeds)")
    acc_ax.set_title("final test accuracy", fontsize=10)
    acc_ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title(result), fontsize=10)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
