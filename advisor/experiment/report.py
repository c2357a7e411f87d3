"""Turning an experiment's result into table rows (no rich here), JSON, CSV, and files on disk.

An output folder holds ``results.json`` (everything, every epoch), ``epochs.csv`` (one row per variant,
seed and epoch) and ``figure.png``. Every file is written through a temporary file and ``os.replace``, and
a folder that already holds something is only written into with ``force``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from advisor.errors import OutputError
from advisor.experiment.results import ExperimentResult, VariantSummary
from advisor.fileio import write_bytes_atomic, write_text_atomic

FILES = {"results": "results.json", "epochs": "epochs.csv", "figure": "figure.png"}
COLUMNS = ["#", "variant", "test acc %", "test loss", "train-test gap", "best val epoch", "vs best"]
CSV_FIELDS = [
    "variant",
    "seed",
    "epoch",
    "fit_loss",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
]


# ---- the table ----


def _pm(mean: float, std: float | None, scale: float, digits: int) -> str:
    floor = 10.0**-digits
    if 0 < mean * scale < floor:
        value = f"<{floor:.{digits}f}"  # a loss that rounds to 0.000 is not zero
    else:
        value = f"{mean * scale:.{digits}f}"
    return value if std is None else f"{value} ± {std * scale:.{digits}f}"


def _vs_best(s: VariantSummary) -> str:
    if s.verdict == "best":
        return "best"
    delta = f"{s.delta_to_best * 100:+.1f} pp".replace("-", "−")
    return f"≈ {delta} (noise)" if s.verdict == "within-noise" else delta


def ranking_rows(result: ExperimentResult) -> list[list[str]]:
    """One row of display strings per variant, best first (columns: :data:`COLUMNS`)."""
    rows = []
    for s in result.ranking:
        rows.append(
            [
                str(s.rank),
                s.name,
                _pm(s.test_acc_mean, s.test_acc_std, 100, 1),
                _pm(s.test_loss_mean, s.test_loss_std, 1, 3),
                f"{s.gap_mean * 100:+.1f} pp".replace("-", "−"),
                f"{s.best_epoch_mean:.1f}" if s.n_seeds > 1 else str(s.best_epochs[0]),
                _vs_best(s),
            ]
        )
    return rows


def title(result: ExperimentResult) -> str:
    c = result.config
    z = result.sizes
    seeds = f"{len(c.seeds)} seed{'s' if len(c.seeds) != 1 else ''}"
    frac = f" ({c.train_fraction:g} of {z['train_full']})" if c.train_fraction < 1 else ""
    return (
        f"{c.dataset} · {c.arch} · {seeds} × {c.epochs} epochs · train {z['train']}{frac} / val {z['val']} / "
        f"test {z['test']} · {result.device} · {result.elapsed_s:.1f} s"
    )


def footnotes(result: ExperimentResult) -> list[str]:
    notes = []
    if not result.complete:
        notes.append(f"partial: {len(result.runs)} of {result.runs_expected} runs finished")
    notes.append("ranked by mean final test accuracy over seeds (± standard deviation); gap = train − test accuracy")
    notes.append(
        "≈ (noise): a paired t-test over the seeds (same weights, batches and test set) finds no difference "
        "from the best at p < 0.05, or the difference is within the test set's sampling error; see noise_rule "
        "in results.json"
    )
    shown: set[str] = set()
    for v in result.variants:
        if v.same_as and v.name not in shown:
            group = [v.name, *v.same_as]
            shown.update(group)
            notes.append(f"{' and '.join(group)} place dropout identically, so their runs are the same")
    if len(result.config.seeds) == 1:
        notes.append("one seed: no spread over seeds; run --seeds 3 or more before trusting a ranking")
    return notes


def text_table(columns: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(col), *(len(r[i]) for r in rows)) if rows else len(col) for i, col in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def text_report(result: ExperimentResult, files: dict[str, Path] | None = None) -> str:
    """The whole plain-text report: title, table, notes, file paths."""
    parts = [title(result), "", text_table(COLUMNS, ranking_rows(result)), ""]
    parts += footnotes(result)
    if files:
        parts.append("")
        parts += [f"{key}: {path}" for key, path in files.items()]
    return "\n".join(parts) + "\n"


# ---- JSON and CSV ----


def results_json(result: ExperimentResult) -> str:
    return json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def summary_payload(result: ExperimentResult, files: dict[str, Path] | None = None) -> dict[str, Any]:
    """What ``--format json`` prints: everything but the per-epoch records (those are in the files)."""
    data = result.model_dump(mode="json", exclude={"runs"})
    data["runs"] = [
        {"variant": r.variant, "seed": r.seed, "best_epoch": r.best_epoch, "final": r.final.model_dump(mode="json")}
        for r in result.runs
    ]
    data["files"] = {k: str(v) for k, v in (files or {}).items()}
    return data


def epochs_csv(result: ExperimentResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for run in result.runs:
        for e in run.epochs:
            writer.writerow([run.variant, run.seed, e.epoch] + [f"{getattr(e, name):.6g}" for name in CSV_FIELDS[3:]])
    return buf.getvalue()


# ---- files ----


def check_out_dir(path: Path, *, force: bool) -> None:
    """Refuse, before any training, a path that is a file or a folder that already holds something."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder", hint="give --out a folder path")
    if not force and any(path.iterdir()):
        raise OutputError(
            f"output folder {path} already exists and is not empty",
            hint="pass --force to overwrite the results in it, or choose another --out",
        )


def default_out_dir(dataset: str, arch: str, root: Path = Path("results")) -> Path:
    """``results/<dataset>-<arch>``, or the first of ``-2``, ``-3`` ... that is free (as YOLO numbers runs)."""
    base = root / f"{dataset}-{arch}"
    candidate, n = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = root / f"{base.name}-{n}"
    return candidate


def save(result: ExperimentResult, out_dir: Path, *, force: bool = False) -> dict[str, Path]:
    """Write the CSV, the figure and then the JSON (last, so a results.json means the set is whole)."""
    from advisor.experiment.figure import render_png

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output folder {out_dir}: {exc.strerror or exc}", hint="choose another --out"
        ) from None
    paths = {key: out_dir / name for key, name in FILES.items()}
    try:
        write_text_atomic(paths["epochs"], epochs_csv(result), force=force)
        write_bytes_atomic(paths["figure"], render_png(result), force=force)
        write_text_atomic(paths["results"], results_json(result), force=force)
    except OSError as exc:
        raise OutputError(f"cannot write to {out_dir}: {exc.strerror or exc}", hint="choose another --out") from None
    return paths
