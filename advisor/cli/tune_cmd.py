"""``dropout-advisor tune``: search dropout rates and placements with Optuna, from the advisor's plan."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from advisor.cli.common import Format, emit_json, emit_text, finite_in, guarded
from advisor.errors import UsageError
from advisor.experiment import DATASET_NAMES, DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR
from advisor.tune import DEFAULT_HEARTBEAT, DEFAULT_SEED, DEFAULT_SEEDS, DEFAULT_TOP, DEFAULT_TRIALS


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Regime(str, Enum):
    scratch = "scratch"
    fine_tuning = "fine-tuning"
    pretraining = "pretraining"


class Overfitting(str, Enum):
    none = "none"
    mild = "mild"
    strong = "strong"
    unknown = "unknown"


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_cmd)


@guarded
def tune_cmd(
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        metavar="NAME",
        help="A dataset shipped with scikit-learn: " + ", ".join(DATASET_NAMES) + " (default digits).",
    ),
    data: Path | None = typer.Option(
        None, "--data", metavar="FILE", help="Your own data: a .npz with arrays X and y, or a .csv (with --target)."
    ),
    target: str | None = typer.Option(None, "--target", metavar="COLUMN", help="The label column of a --data CSV."),
    arch: str | None = typer.Option(
        None, "--arch", metavar="cnn|mlp", help="The network (default: cnn for images, mlp for tables)."
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        "-n",
        min=1,
        max=100_000,
        metavar="N",
        help=f"Finished trials the study should hold, over every worker (default {DEFAULT_TRIALS}).",
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        min=1,
        max=10_000,
        metavar="N",
        help="Epochs per trial (default: " + ", ".join(f"{n} for {a}" for a, n in DEFAULT_EPOCHS.items()) + ").",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=2, max=100_000, metavar="N", help=f"Minibatch size (default {DEFAULT_BATCH_SIZE})."
    ),
    train_fraction: float | None = typer.Option(
        None,
        "--train-fraction",
        metavar="F",
        callback=finite_in(0.0, 1.0, low_open=True),
        help="Keep this fraction of the training split, in (0, 1].",
    ),
    seed: int | None = typer.Option(
        None, "--seed", min=0, max=2**31 - 1, metavar="N", help=f"Training and sampler seed (default {DEFAULT_SEED})."
    ),
    seeds: int | None = typer.Option(
        None,
        "--seeds",
        min=1,
        max=100,
        metavar="N",
        help=f"Fresh seeds re-running the top configurations (default {DEFAULT_SEEDS}).",
    ),
    top: int | None = typer.Option(
        None, "--top", min=1, max=50, metavar="N", help=f"Top configurations to re-run (default {DEFAULT_TOP})."
    ),
    space: Path | None = typer.Option(
        None, "--space", metavar="FILE", help="A TOML file that narrows or widens the search space."
    ),
    answers: Path | None = typer.Option(
        None, "--answers", metavar="FILE", help="A saved interview: its regime, symptoms and base shape the plan."
    ),
    base: str | None = typer.Option(
        None, "--base", metavar="RECIPE", help="A reference recipe (see 'recipes list') that shapes the plan."
    ),
    regime: Regime | None = typer.Option(None, "--regime", help="Shapes the plan (default scratch)."),
    overfitting: Overfitting | None = typer.Option(None, "--overfitting", help="Shapes the plan (default unknown)."),
    underfitting: bool | None = typer.Option(
        None, "--underfitting/--no-underfitting", help="The model underfits (shapes the plan)."
    ),
    uncertainty: bool | None = typer.Option(
        None, "--uncertainty/--no-uncertainty", help="MC-dropout estimates wanted (shapes the plan)."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        metavar="URL",
        help="Optuna storage shared by every worker: sqlite:///f.db, postgresql://user@host/db, journal:FILE, "
        "grpc://host:port (default: study.db in the output folder).",
    ),
    study: str | None = typer.Option(
        None, "--study", metavar="NAME", help="Study name in the storage (default dropout-advisor-<data>-<arch>)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", "-j", metavar="N", help="Local worker processes, torch threads split (default 1)."
    ),
    heartbeat: int | None = typer.Option(
        None,
        "--heartbeat",
        min=1,
        max=3600,
        metavar="SECONDS",
        help="Between a running trial's heartbeats; a worker silent for twice as long has its trial marked "
        f"failed (default {DEFAULT_HEARTBEAT}).",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", metavar="DIR", help="Output folder (default results/tune-<data>-<arch>, numbered)."
    ),
    force: bool = typer.Option(False, "--force", help="Start over in an output folder that holds a run."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (after Ctrl-C or a crash)."),
    device: Device | None = typer.Option(None, "--device", help="auto uses a GPU when there is one (default)."),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="text (a table) or json."),
) -> None:
    """Search dropout placements and rates on real data with Optuna, from the advisor's plan.

    The plan for the network experiment trains names its site groups; each gets a rate in [0, the upper
    end of its cited range], and the placement is a choice among experiment's placements and the plan's.
    TPE with a fixed seed, median pruning on the validation loss. The top configurations, the plan and
    no dropout are re-run on --seeds fresh seeds and compared on test accuracy. Any number of processes
    on any number of machines can share one study through --storage. Writes tune.json, study.db,
    trials.json, trials.csv, report.json and three PNG figures into the output folder. Ctrl-C marks the
    running trials interrupted and keeps the study; --resume --out DIR continues it.

    \b
    Examples:
      dropout-advisor tune --dataset digits --arch cnn --trials 60
      dropout-advisor tune --dataset breast-cancer --workers 2 --trials 100
      dropout-advisor tune --data my.npz --storage postgresql://tuner@db/studies
      dropout-advisor tune --resume --out results/tune-digits-cnn
    """
    from advisor.tune import require_extras

    require_extras()
    from advisor.tune import setup
    from advisor.tune.storage import parse_storage

    if resume:
        given = {
            "--dataset": dataset,
            "--data": data,
            "--target": target,
            "--arch": arch,
            "--epochs": epochs,
            "--batch-size": batch_size,
            "--train-fraction": train_fraction,
            "--seed": seed,
            "--space": space,
            "--answers": answers,
            "--regime": regime,
            "--overfitting": overfitting,
            "--underfitting": underfitting,
            "--uncertainty": uncertainty,
            "--base": base,
            "--study": study,
            "--device": device,
            "--force": force or None,
        }
        clash = [flag for flag, value in given.items() if value is not None]
        if clash:
            raise UsageError(
                f"--resume continues a run with its own settings; drop {', '.join(clash)}",
                hint="--resume takes --out, --trials, --workers, --seeds, --top, --heartbeat, --storage and --format",
            )
        if out is None:
            raise UsageError(
                "--resume needs --out, the folder of the run to continue",
                hint="e.g. --resume --out results/tune-digits-cnn",
            )
        config = setup.resume_config(out, trials=trials, seeds=seeds, top=top, workers=workers, heartbeat_s=heartbeat)
        ref = setup.resume_storage(config, out, storage)
        split = None
        notes: list[str] = []
        out_dir = out
    else:
        run = setup.NewRun(
            dataset=dataset,
            data=data,
            target=target,
            arch=arch,
            trials=trials or DEFAULT_TRIALS,
            epochs=epochs,
            batch_size=batch_size or DEFAULT_BATCH_SIZE,
            lr=DEFAULT_LR,
            train_fraction=1.0 if train_fraction is None else train_fraction,
            seed=DEFAULT_SEED if seed is None else seed,
            seeds=seeds or DEFAULT_SEEDS,
            top=top or DEFAULT_TOP,
            space=space,
            answers=answers,
            spec_flags={
                "regime": regime.value if regime else None,
                "overfitting": overfitting.value if overfitting else None,
                "underfitting": underfitting,
                "uncertainty": uncertainty,
                "base": base,
            },
            storage=storage,
            study=study,
            workers=1 if workers is None else workers,
            heartbeat_s=heartbeat or DEFAULT_HEARTBEAT,
            device=(device or Device.auto).value,
            out=out,
            force=force,
        )
        if out is not None:
            setup.check_out_dir(out, force=force)  # before any work; cleared only once the new run is valid
        config, split, out_dir, notes = setup.new_config(run)
        setup.check_out_dir(out_dir, force=force)
        if force:
            setup.clear_out_dir(out_dir)
        ref = parse_storage(storage, out_dir)
    for note in notes:
        sys.stderr.write(f"warning: {note}\n")

    with _progress("search", "trials") as search_bar, _progress("re-runs", "runs") as rerun_bar:
        report, files = setup.execute(
            config, ref, out_dir, split=split, search_progress=search_bar, rerun_progress=rerun_bar, notes=notes
        )
    for warning in report.warnings[len(notes) :]:  # what happened during the run (the notes came first)
        sys.stderr.write(f"warning: {warning}\n")
    if fmt is Format.json:
        from advisor.tune.report import summary_payload

        emit_json(summary_payload(report, files))
    elif sys.stdout.isatty():
        _rich_report(report, files)
    else:
        from advisor.tune.report import text_report

        emit_text(text_report(report, files))


@contextmanager
def _progress(label: str, unit: str) -> Iterator[Any]:
    """A progress bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, no_color="NO_COLOR" in os.environ, highlight=False)
    with Progress(
        TextColumn(f"{label:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _rich_report(report: Any, files: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    from advisor.tune.report import COLUMNS, footnotes, rows, title

    console = Console(highlight=False, no_color="NO_COLOR" in os.environ, soft_wrap=False)
    table = Table(title=title(report), header_style="bold", title_justify="left")
    for i, col in enumerate(COLUMNS):
        table.add_column(col, justify="left" if i in (1, 6) else "right")
    for c, row in zip(report.configs, rows(report), strict=True):
        style = "bold green" if c.best else ("" if c.role == "top" else "cyan")
        table.add_row(*row, style=style or None)
    console.print(table)
    for note in footnotes(report):
        console.print(note, style="dim", markup=False)
    console.print()
    for key, path in files.items():
        console.print(f"{key}: {path}", markup=False)
