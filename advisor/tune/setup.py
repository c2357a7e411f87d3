"""A tune run from start to report: settings from flags (or ``tune.json`` on ``--resume``), the storage, the
search in one or several processes, the report and its files. The CLI calls :func:`new_config` or
:func:`resume_config`, then :func:`execute`.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor import __version__
from advisor.errors import AdvisorError, OutputError, UsageError
from advisor.tune.results import CONFIG_FILE, TuneConfig, TuneReport
from advisor.tune.search import Job, Progress, TuneInterrupted
from advisor.tune.storage import DEFAULT_FILE, StorageRef, display_url, parse_storage

if TYPE_CHECKING:
    from advisor.experiment.datasets import Split
    from advisor.spec import Spec

# Spec fields the user may set for the plan; the others describe the network and data tune trains.
ADJUSTABLE = ("regime", "overfitting", "underfitting", "uncertainty", "base")
DATA_FIELDS = ("samples", "params", "modality")
MAX_WORKERS = 256


@dataclass(frozen=True)
class NewRun:
    """The flags of a new run (None: not given)."""

    dataset: str | None
    data: Path | None
    target: str | None
    arch: str | None
    trials: int
    epochs: int | None
    batch_size: int
    lr: float
    train_fraction: float
    seed: int
    seeds: int
    top: int
    space: Path | None
    answers: Path | None
    spec_flags: dict[str, Any]
    storage: str | None
    study: str | None
    workers: int
    heartbeat_s: int
    device: str
    out: Path | None
    force: bool


# ---- the spec, the plan, the space ----


def tune_spec(
    arch: str,
    split: Split,
    params: int,
    answers: dict[str, Any] | None,
    answers_path: Path | None,
    flags: dict[str, Any],
) -> tuple[Spec, list[str]]:
    """The spec of the network tune trains, with the plan-shaping answers and flags applied.

    Answers that describe another network are an error (tune trains experiment's networks); answers about
    the data (samples, params, modality) give way to the data tune trains on, with a warning.
    """
    from advisor.experiment.variants import advisor_spec
    from advisor.spec import FIELDS, build_spec

    base = advisor_spec(arch, samples=len(split.y_train), params=params)  # type: ignore[arg-type]
    fixed = base.resolved().model_dump()
    values = base.model_dump(exclude_none=True)
    notes: list[str] = []
    source = str(answers_path) if answers_path is not None else "answers"
    for key, value in (answers or {}).items():
        if key in ADJUSTABLE:
            values[key] = value
        elif key not in FIELDS:
            build_spec({**values, key: value}, source=source)  # raises the spec's own error, with a close match
        elif key in DATA_FIELDS:
            if value != fixed.get(key):
                notes.append(f"{source}: {key} = {value!r} is replaced by the data tune trains on ({fixed.get(key)!r})")
        elif value != fixed.get(key):
            raise UsageError(
                f"{source}: {key} = {value!r}, but tune trains experiment's {arch.upper()} "
                f"with {key} = {fixed.get(key)!r}",
                hint="remove it: tune searches the network experiment trains; answers may set "
                + ", ".join(a for a in ADJUSTABLE if a in FIELDS),
            )
    values.update({k: v for k, v in flags.items() if v is not None})
    origins = dict.fromkeys(answers or {}, source)
    spec: Spec = build_spec(values, source=origins or "flags")
    return spec, notes


def _check_buildable(config: TuneConfig, split: Split) -> None:
    """Every placement of the space builds (PlanMappingError otherwise), before any trial runs."""
    import torch

    from advisor.experiment.variants import build_model
    from advisor.tune.report import advisor_blueprint

    space = config.space
    with torch.random.fork_rng(devices=[]):
        for p in space.placements:
            params = {"placement": p.name, **{space.group(g).param: space.group(g).high for g in p.groups}}
            build_model(space.blueprint(params), split.input_shape, split.n_classes)
        build_model(advisor_blueprint(config), split.input_shape, split.n_classes)


def default_study(config_data: str, arch: str) -> str:
    return f"dropout-advisor-{Path(config_data).stem}-{arch}"


def new_config(run: NewRun) -> tuple[TuneConfig, Split, Path, list[str]]:
    """Validate a new run's flags, load the data, plan, derive the space; nothing is written yet."""
    import torch

    from advisor.experiment import DEFAULT_EPOCHS
    from advisor.experiment.report import default_out_dir
    from advisor.experiment.runner import resolve_device, site_records
    from advisor.experiment.variants import VARIANTS, build_model, count_params, hand_blueprint, plan_blueprint
    from advisor.recommend import recommend
    from advisor.spec import load_answers
    from advisor.tune.data import load_data
    from advisor.tune.space import apply_space_file, derive_space, load_space_file

    if not 1 <= run.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be 1 to {MAX_WORKERS}, got {run.workers}", hint="e.g. --workers 2")
    device = resolve_device(run.device)
    dataset = run.dataset if run.dataset is not None or run.data is not None else "digits"
    split, ref = load_data(
        dataset=dataset, file=run.data, target=run.target, arch=run.arch, train_fraction=run.train_fraction
    )
    arch = split.arch
    space_file = load_space_file(run.space) if run.space is not None else None  # bad files fail before the plan
    answers = load_answers(run.answers) if run.answers is not None else None
    with torch.random.fork_rng(devices=[]):
        base = build_model(hand_blueprint(VARIANTS[arch]["none"]), split.input_shape, split.n_classes)
    spec, notes = tune_spec(arch, split, count_params(base), answers, run.answers, run.spec_flags)
    plan = recommend(spec)
    space = derive_space(plan, arch)
    if space_file is not None and run.space is not None:
        space = apply_space_file(space, space_file, run.space)
    if not space.advisor_inside:
        notes.append("the --space file leaves out the advisor's plan; it is still re-run for the comparison")
    advisor_bp = plan_blueprint(plan)
    out = run.out if run.out is not None else default_out_dir(f"tune-{Path(ref.dataset).stem}", arch)
    storage = parse_storage(run.storage, out)
    config = TuneConfig(
        tool_version=__version__,
        data=ref,
        arch=arch,
        epochs=run.epochs or DEFAULT_EPOCHS[arch],
        batch_size=run.batch_size,
        lr=run.lr,
        device=device,
        seed=run.seed,
        trials=run.trials,
        seeds=run.seeds,
        top=run.top,
        study=run.study or default_study(ref.dataset, arch),
        storage=storage.display,
        storage_default=run.storage is None,
        heartbeat_s=run.heartbeat_s,
        workers=run.workers,
        spec=spec.model_dump(exclude_none=True),
        space=space,
        space_file=str(run.space) if run.space is not None else None,
        advisor_ops=list(advisor_bp.ops),
        advisor_sites=site_records(advisor_bp),
    )
    _check_buildable(config, split)
    return config, split, out, notes


# ---- output folder ----


OUR_FILES = (
    CONFIG_FILE,
    DEFAULT_FILE,
    f"{DEFAULT_FILE}-journal",
    f"{DEFAULT_FILE}-wal",
    f"{DEFAULT_FILE}-shm",
    "report.json",
    "trials.json",
    "trials.csv",
    "history.png",
    "importance.png",
    "rates.png",
)


def check_out_dir(out: Path, *, force: bool) -> None:
    """A new run's folder must be absent or empty, unless ``force``; checked before any work."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder", hint="give --out a folder path")
    if force or not any(out.iterdir()):
        return
    holds = (out / CONFIG_FILE).is_file()
    raise OutputError(
        f"output folder {out} already {'holds a tune run' if holds else 'exists and is not empty'}",
        hint=(f"continue it with --resume --out {out}, " if holds else "")
        + "pass --force to start over in it, or choose another --out",
    )


def clear_out_dir(out: Path) -> None:
    """``--force``: remove a previous run's files from ``out`` (only those, and only regular files)."""
    for name in OUR_FILES:
        path = Path(out) / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise OutputError(f"{path} is not a regular file; --force replaces only regular files", hint="move it away")
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot remove {path}: {exc.strerror or exc}", hint="check its permissions") from None


# ---- resume ----


def read_config(out: Path) -> TuneConfig:
    from pydantic import ValidationError

    path = Path(out) / CONFIG_FILE
    if not Path(out).is_dir():
        raise UsageError(f"--resume: {out} is not a folder", hint="give --out the folder of the run to continue")
    try:
        return TuneConfig.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"--resume: {out} holds no tune run ({CONFIG_FILE} is missing)", hint="check the --out folder"
        ) from None
    except (OSError, UnicodeDecodeError, ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"--resume: {path} is not a readable tune settings file: {first}", hint="start a new run with --force"
        ) from None


def resume_storage(config: TuneConfig, out: Path, url: str | None) -> StorageRef:
    """The storage of a run being resumed; a URL whose password was hidden must be given again."""
    if config.storage_default:
        if url is not None:
            raise UsageError("--storage: this run's study is in its folder's study.db", hint="drop --storage")
        return parse_storage(None, out)
    if url is None:
        if "***" in config.storage:
            raise UsageError(
                f"the study's storage {config.storage} needs its password, which tune never saves",
                hint="pass --storage URL again, or leave the password out of the URL and set PGPASSWORD or ~/.pgpass",
            )
        return parse_storage(config.storage, out)
    ref = parse_storage(url, out)
    if display_url(ref.url) != config.storage:
        raise UsageError(
            f"--storage {ref.display} is not where this run's study lives ({config.storage})",
            hint="give the run's own storage URL, or start a new run",
        )
    return ref


def resume_config(
    out: Path, *, trials: int | None, seeds: int | None, top: int | None, workers: int | None, heartbeat_s: int | None
) -> TuneConfig:
    config = read_config(out)
    update: dict[str, Any] = {}
    for name, value in (
        ("trials", trials),
        ("seeds", seeds),
        ("top", top),
        ("workers", workers),
        ("heartbeat_s", heartbeat_s),
    ):
        if value is not None:
            update[name] = value
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be 1 to {MAX_WORKERS}, got {workers}", hint="e.g. --workers 2")
    return config.model_copy(update=update)


# ---- running ----


def threads_per_worker(workers: int) -> int:
    from advisor.experiment.runner import default_threads

    cores = os.cpu_count() or 1
    return max(1, min(default_threads(), cores // workers))


def make_job(config: TuneConfig, storage: StorageRef) -> Job:
    """The worker's job; the plan's own point is enqueued as the first trial when the study is created."""
    from advisor.tune.search import Settings

    space = config.space
    enqueue = space.advisor_params if space.advisor is not None and space.advisor_inside else None
    return Job(
        settings=Settings(
            data=config.data,
            arch=config.arch,
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            device=config.device,
            seed=config.seed,
        ),
        space=space,
        storage_url=storage.url,
        storage_kind=storage.kind,
        storage_display=storage.display,
        study=config.study,
        target=config.trials,
        heartbeat_s=config.heartbeat_s,
        threads=threads_per_worker(config.workers),
        data_file=config.data.file,
        target_column=config.data.target,
        enqueue=enqueue,
    )


@contextmanager
def _process_state() -> Iterator[None]:
    """Leave the caller's torch threads, cuDNN flags and warning filters as they were."""
    import torch

    threads = torch.get_num_threads()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    with warnings.catch_warnings():
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def resume_hint(out: Path, storage: StorageRef, default: bool) -> str:
    command = f"dropout-advisor tune --resume --out {out}"
    if not default and storage.password:
        command += " --storage URL"
    return f"continue with: {command}"


def execute(
    config: TuneConfig,
    storage: StorageRef,
    out: Path,
    *,
    split: Split | None = None,
    search_progress: Progress | None = None,
    rerun_progress: Progress | None = None,
    notes: list[str] | None = None,
) -> tuple[TuneReport, dict[str, Path]]:
    """Search until the study holds ``config.trials`` finished trials, then re-run, compare and save.

    Ctrl-C raises :class:`TuneInterrupted` (exit 130) saying how to resume; the study keeps every
    finished trial and marks the interrupted ones failed.
    """
    import dataclasses

    from advisor.tune.report import build_report, save, write_config
    from advisor.tune.search import (
        Stop,
        counts,
        join_study,
        load_split,
        make_trainer,
        run_local_workers,
        run_trials,
        setup_process,
    )

    warnings_out = list(notes or [])
    job = make_job(config, storage)
    job = dataclasses.replace(job, split=split or load_split(job))
    write_config(config, out)
    with _process_state(), Stop().installed(signal.SIGINT) as stop:
        setup_process(job.threads, config.device)
        trainer = make_trainer(job, stop=stop)
        study, _ = join_study(job)
        started = time.perf_counter()
        try:
            if config.workers == 1:
                run_trials(study, trainer, config.trials, progress=search_progress)
            else:
                exits = run_local_workers(job, config.workers, stop, progress=search_progress)
                failed = [e for e in exits if e.code not in (0, None)]
                for e in failed:
                    what = (
                        f"killed by signal {-e.code}" if e.code is not None and e.code < 0 else f"exit status {e.code}"
                    )
                    warnings_out.append(
                        f"local worker {e.index + 1} stopped early ({what}); its running trial was marked failed"
                    )
        except KeyboardInterrupt:
            finished, _ = counts(study)
            raise TuneInterrupted(
                f"interrupted: {finished} of {config.trials} trials finished; the study is kept in {storage.display}",
                hint=resume_hint(out, storage, config.storage_default),
            ) from None
        search_s = time.perf_counter() - started
        finished, running = counts(study)
        if finished < config.trials:
            raise AdvisorError(
                f"the search stopped with {finished} of {config.trials} trials finished"
                + (f" ({running} still running elsewhere)" if running else ""),
                hint="see the worker errors above; " + resume_hint(out, storage, config.storage_default),
                exit_code=1,
            )
        try:
            report = build_report(
                config,
                study,
                job,
                trainer,
                workers=config.workers,
                search_s=search_s,
                progress=rerun_progress,
                warnings=warnings_out,
            )
        except KeyboardInterrupt:
            raise TuneInterrupted(
                f"interrupted during the re-runs; the search is complete ({finished} trials in {storage.display})",
                hint=f"make the report with: dropout-advisor tune --resume --out {out}",
            ) from None
    return report, save(report, out)
