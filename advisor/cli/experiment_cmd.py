"""``dropout-advisor experiment``: compare dropout placements on a real dataset."""

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
from advisor.errors import Interrupted
from advisor.experiment import (
    DATASET_NAMES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DATASET,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_SEEDS,
    VARIANT_NAMES,
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment_cmd)


_VARIANTS_HELP = "Comma-separated variants to train (default: all of the family). " + " ".join(
    f"{arch}: {', '.join(table)}." for arch, table in VARIANT_NAMES.items()
)


@guarded
def experiment_cmd(
    dataset: str = typer.Option(DEFAULT_DATASET, "--dataset", "-d", help="One of: " + ", ".join(DATASET_NAMES) + "."),
    arch: str | None = typer.Option(None, "--arch", help="cnn or mlp (default: cnn for digits, mlp for the rest)."),
    variants: str | None = typer.Option(None, "--variants", metavar="NAME,NAME...", help=_VARIANTS_HELP),
    seeds: int = typer.Option(DEFAULT_SEEDS, "--seeds", min=1, max=100, help="Training seeds (0 .. N-1) per variant."),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        min=1,
        max=10_000,
        help="Epochs per run (default: " + ", ".join(f"{n} for {a}" for a, n in DEFAULT_EPOCHS.items()) + ").",
    ),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=2, max=100_000, help="Minibatch size."),
    train_fraction: float = typer.Option(
        1.0,
        "--train-fraction",
        metavar="F",
        callback=finite_in(0.0, 1.0, low_open=True),
        help="Keep this fraction of the training split, in (0, 1].",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", metavar="DIR", help="Output folder (default: results/<dataset>-<arch>, numbered if taken)."
    ),
    force: bool = typer.Option(False, "--force", help="Write into an output folder that already holds files."),
    device: Device = typer.Option(Device.auto, "--device", help="auto uses a GPU when there is one."),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="text (a ranked table) or json."),
) -> None:
    """Train one network with several dropout placements on a real dataset and rank them.

    Every variant starts from the same weights and sees the same batches under each seed; the table
    ranks them by test accuracy and marks the differences that are within noise. Writes results.json,
    epochs.csv and figure.png into the output folder. Ctrl-C keeps the finished runs.

    \b
    Examples:
      dropout-advisor experiment
      dropout-advisor experiment --dataset digits --arch cnn --seeds 5
      dropout-advisor experiment --dataset breast-cancer --train-fraction 0.2
      dropout-advisor experiment --variants none,fc-only,advisor --epochs 40
    """
    from advisor.experiment import require_extras

    require_extras()

    from advisor.experiment import runner
    from advisor.experiment.datasets import check_arch, dataset_info
    from advisor.experiment.report import check_out_dir, default_out_dir, save
    from advisor.experiment.results import ExperimentConfig
    from advisor.experiment.variants import select_variants

    info = dataset_info(dataset)
    arch_ = check_arch(info, arch or info.default_arch)
    names = [n.strip() for n in variants.split(",")] if variants is not None else None
    chosen = select_variants(arch_, names)
    out_dir = out if out is not None else default_out_dir(info.name, arch_)
    check_out_dir(out_dir, force=force)

    config = ExperimentConfig(
        dataset=info.name,
        arch=arch_,
        variants=[v.name for v in chosen],
        seeds=list(range(seeds)),
        epochs=epochs or DEFAULT_EPOCHS[arch_],
        batch_size=batch_size,
        lr=DEFAULT_LR,
        train_fraction=train_fraction,
        device=device.value,
    )
    setup = runner.prepare(config)
    for warning in setup.warnings:
        sys.stderr.write(f"warning: {warning}\n")

    try:
        with _progress() as progress:
            result = runner.execute(setup, progress)
    except runner.ExperimentInterrupted as exc:
        partial = exc.partial
        if not partial.runs:
            raise Interrupted(
                "interrupted before the first run finished; nothing was written",
                hint="run the command again when ready",
            ) from None
        paths = save(partial, out_dir, force=force)
        raise Interrupted(
            f"interrupted: saved the {len(partial.runs)} finished run(s) of {partial.runs_expected} to {out_dir}",
            hint=f"the partial results are in {paths['results']}; run again with --force or another --out "
            "for the whole comparison",
        ) from None

    paths = save(result, out_dir, force=force)
    if fmt is Format.json:
        from advisor.experiment.report import summary_payload

        emit_json(summary_payload(result, paths))
        return
    if sys.stdout.isatty():
        _rich_report(result, paths)
    else:
        from advisor.experiment.report import text_report

        emit_text(text_report(result, paths))


@contextmanager
def _progress() -> Iterator[Any]:
    """A progress bar on stderr while training, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True, no_color="NO_COLOR" in os.environ, highlight=False)
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        yield update


def _rich_report(result: Any, paths: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    from advisor.experiment.report import COLUMNS, footnotes, ranking_rows, title

    console = Console(highlight=False, no_color="NO_COLOR" in os.environ, soft_wrap=False)
    table = Table(title=title(result), header_style="bold", title_justify="left")
    for i, col in enumerate(COLUMNS):
        table.add_column(col, justify="left" if i in (1, 6) else "right")
    for summary, row in zip(result.ranking, ranking_rows(result), strict=True):
        style = {"best": "bold green", "within-noise": "", "worse": "dim"}[summary.verdict]
        table.add_row(*row, style=style or None)
    console.print(table)
    for note in footnotes(result):
        console.print(note, style="dim", markup=False)
    console.print()
    for key, path in paths.items():
        console.print(f"{key}: {path}", markup=False)
