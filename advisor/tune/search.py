"""The search: Optuna's TPE sampler and median pruner around ``experiment``'s training loop.

One trial picks a placement and a rate per site group (:mod:`.space`), trains ``experiment``'s network
with ``experiment``'s loop under the study's training seed (every trial starts from the same weights and
sees the same batches, so trials differ only by their dropout), reports the validation loss after every
epoch to the pruner, and returns the last epoch's validation loss. Its curves, seed, timing and worker
go into one trial attribute (``run``).

Determinism: the sampler is seeded per trial from the study seed and the trial's number, so one worker
gives the same trials every time, and parallel workers never draw the same random numbers.

Counting: ``--trials`` is the number of finished (complete or pruned) trials the study should hold, shared
by every worker on every machine. A worker starts a trial only while finished + running trials fall short
of it; a trial that finds the target already met when it starts (two workers raced for the last one) is
closed at once as failed with ``surplus`` set, before it samples or trains anything.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import AdvisorError, Interrupted
from advisor.tune.data import DataRef
from advisor.tune.space import PLACEMENT_PARAM, SearchSpace
from advisor.tune.storage import StorageRef, open_storage, open_study

if TYPE_CHECKING:
    import optuna

    from advisor.experiment.datasets import Split
    from advisor.experiment.results import EpochRecord, RunResult
    from advisor.experiment.variants import Blueprint

RUN_ATTR = "run"
SURPLUS_ATTR = "surplus"
INTERRUPTED_ATTR = "interrupted"
DIVERGED_ATTR = "diverged"
SAME_AS = "same_as"  # in the run attribute: the trial whose result this one reuses
PRUNER_STARTUP_TRIALS = 5
ORPHAN_MARGIN_S = 5.0
NEAR_TARGET = 2  # within this many trials of the target, count the study's trials before each new one
POOL_WORTH_S = 30.0  # below this much training, re-runs stay in this process (a worker takes seconds to start)
OBJECTIVE = "validation loss (cross-entropy) at the last epoch"

Progress = Callable[[int, int], None]  # (finished trials, target)


class Surplus(Exception):
    """The target was met while this trial was being created."""


class Diverged(Exception):
    """The validation loss is not finite."""


class TuneInterrupted(Interrupted):
    """Ctrl-C during the search; the study keeps every finished trial."""


@dataclass(frozen=True)
class Settings:
    """What a trial needs besides its parameters; identical in every worker of a study."""

    data: DataRef
    arch: str
    epochs: int
    batch_size: int
    lr: float
    device: str
    seed: int

    def key(self, space: SearchSpace) -> dict[str, Any]:
        """The study's key: everything that makes two trials comparable (JSON-shaped, as stored)."""
        import json

        key = {
            "tool": "dropout-advisor tune",
            "objective": OBJECTIVE,
            "data": self.data.model_dump(mode="json", exclude={"file"}),  # by content: paths differ per machine
            "arch": self.arch,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "space": space.model_dump(mode="json"),
        }
        loaded: dict[str, Any] = json.loads(json.dumps(key))
        return loaded


@dataclass(frozen=True)
class Job:
    """Everything one worker process needs to join the study (pickled for ``spawn``)."""

    settings: Settings
    space: SearchSpace
    storage_url: str
    storage_kind: str
    storage_display: str
    study: str
    target: int
    heartbeat_s: int
    threads: int
    data_file: str | None = None
    target_column: str | None = None
    enqueue: dict[str, Any] | None = field(default=None)
    split: Split | None = None  # the data, already split: local workers skip loading it (and scikit-learn)
    pruner_startup: int = PRUNER_STARTUP_TRIALS  # finished trials before pruning starts (the benchmark: never)

    @property
    def storage(self) -> StorageRef:
        return StorageRef(url=self.storage_url, kind=self.storage_kind, display=self.storage_display)  # type: ignore[arg-type]


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number`` of a study seeded with ``seed``."""
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    """TPE (Optuna's default sampler), re-seeded for every trial from ``seed`` and the trial number."""
    import optuna

    class TrialSeededTPE(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self._by_trial: dict[int, optuna.samplers.TPESampler] = {}

        def _tpe(self, trial: optuna.trial.FrozenTrial) -> optuna.samplers.TPESampler:
            tpe = self._by_trial.get(trial.number)
            if tpe is None:
                tpe = self._by_trial[trial.number] = optuna.samplers.TPESampler(seed=trial_seed(seed, trial.number))
            return tpe

        def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            self._tpe(trial).before_trial(study, trial)

        def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
            return self._tpe(trial).infer_relative_search_space(study, trial)

        def sample_relative(
            self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, Any]
        ) -> dict[str, Any]:
            return self._tpe(trial).sample_relative(study, trial, search_space)

        def sample_independent(
            self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str, param_distribution: Any
        ) -> Any:
            return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

        def after_trial(
            self,
            study: optuna.Study,
            trial: optuna.trial.FrozenTrial,
            state: optuna.trial.TrialState,
            values: Sequence[float] | None,
        ) -> None:
            tpe = self._by_trial.pop(trial.number, None)
            if tpe is not None:
                tpe.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:  # every trial is seeded from its number; nothing to reseed
            pass

    return TrialSeededTPE()


def warmup_epochs(epochs: int) -> int:
    return max(1, epochs // 3)


def pruning_epochs(epochs: int) -> set[int]:
    """The three epochs whose validation loss goes to the pruner: a third of the run, then evenly before its
    end (15 epochs: 5, 8, 11; 60 epochs: 20, 33, 46). Each report and each pruner check is a round trip to
    the storage: reporting every epoch of experiment's small networks cost several times the 2 % storage
    budget (bench/bench_tune.py). The whole per-epoch curve is kept in the trial's ``run`` attribute."""
    warmup = warmup_epochs(epochs)
    step = max(1, (epochs - warmup) // 3)
    return {e for e in (warmup, warmup + step, warmup + 2 * step) if e < epochs} or {warmup}


def make_pruner(epochs: int, startup: int = PRUNER_STARTUP_TRIALS) -> optuna.pruners.BasePruner:
    """Median pruning on the validation loss at :func:`pruning_epochs`, after ``startup`` finished trials."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup_epochs(epochs), interval_steps=1)


def quiet_optuna() -> None:
    """Optuna logs every trial on stderr; tune reports through its own progress bar and report."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=ExperimentalWarning)


# ---- one trial ----


def _finished_states() -> tuple[Any, ...]:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def counts(study: optuna.Study) -> tuple[int, int]:
    """(finished, running) trials of the study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    return len(trials) - running, running


def _is_surplus(others: Sequence[optuna.trial.FrozenTrial], number: int, target: int, count_running: bool) -> bool:
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED) + ((TrialState.RUNNING,) if count_running else ())
    return sum(1 for t in others if t.number < number and t.state in states) >= target


@dataclass
class Trainer:
    """The data as tensors, built once per process, and the objective over it."""

    settings: Settings
    space: SearchSpace
    split: Split
    tensors: Any
    target: int
    count_running: bool = True
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    heartbeat_s: int = 10
    last_seen: tuple[int, int] | None = None  # (finished, running elsewhere) when the last trial started
    stop: Stop = field(default_factory=lambda: Stop())

    def run(
        self, name: str, bp: Blueprint, seed: int, on_record: Callable[[EpochRecord], None] | None = None
    ) -> RunResult:
        """Train ``bp`` under ``seed`` with experiment's loop and this study's settings."""
        from advisor.experiment.runner import train_run

        def record(rec: EpochRecord) -> None:
            self.stop.check()
            if on_record is not None:
                on_record(rec)

        s = self.settings
        return train_run(
            name,
            bp,
            self.split,
            self.tensors,
            seed=seed,
            epochs=s.epochs,
            batch_size=s.batch_size,
            lr=s.lr,
            device=s.device,
            on_record=record,
        )

    def _twin(self, trials: Sequence[optuna.trial.FrozenTrial], bp: Blueprint) -> optuna.trial.FrozenTrial | None:
        """A complete trial that trained exactly this network, if any."""
        from optuna.trial import TrialState

        mine = signature(bp)
        names = {p.name for p in self.space.placements}
        for t in trials:
            if (
                t.state == TrialState.COMPLETE
                and t.params.get(PLACEMENT_PARAM) in names
                and signature(self.space.blueprint(t.params)) == mine
            ):
                return t
        return None

    def objective(self, trial: optuna.Trial) -> float:
        import optuna
        from optuna.trial import TrialState

        # One read of the study serves the target check and the twin check (each read costs a query).
        others = trial.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        )
        finished = sum(1 for t in others if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
        self.last_seen = (finished, len(others) - finished - 1)  # the running ones, less this trial
        if _is_surplus(others, trial.number, self.target, self.count_running):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise Surplus
        name = trial.suggest_categorical(PLACEMENT_PARAM, [p.name for p in self.space.placements])
        for g in self.space.placement(str(name)).groups:
            group = self.space.group(g)
            trial.suggest_float(group.param, group.low, group.high, step=group.step)
        params = dict(trial.params)
        bp = self.space.blueprint(params)
        twin = self._twin(others, bp)
        if twin is not None:  # training is deterministic: the same network under the same seed, same result
            run = {**twin.user_attrs.get(RUN_ATTR, {}), "seconds": 0.0, "worker": self.worker, SAME_AS: twin.number}
            trial.set_user_attr(RUN_ATTR, run)
            return float(twin.value)  # type: ignore[arg-type]
        records: list[EpochRecord] = []
        started = time.perf_counter()
        checkpoints = pruning_epochs(self.settings.epochs)

        def save(state: str) -> None:
            trial.set_user_attr(
                RUN_ATTR, run_attr(records, self.settings.seed, time.perf_counter() - started, self.worker, state)
            )

        def on_record(rec: EpochRecord) -> None:
            records.append(rec)
            if not math.isfinite(rec.val_loss):
                trial.set_user_attr(DIVERGED_ATTR, rec.epoch)
                raise Diverged
            if rec.epoch in checkpoints:  # each report and each pruner check is a round trip to the storage
                trial.report(rec.val_loss, rec.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"validation loss {rec.val_loss:.4g} at epoch {rec.epoch}")

        try:
            result = self.run(self.space.describe(params), bp, self.settings.seed, on_record)
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            raise
        except optuna.TrialPruned:
            save("pruned")
            raise
        save("complete")
        return float(result.final.val_loss)


def signature(bp: Blueprint) -> str:
    """Two blueprints with the same signature build the same network with the same dropout."""
    import json

    return json.dumps([[o.kind for o in bp.ops], [(s.position, s.kind, s.p) for s in bp.sites]])


def run_attr(records: Sequence[EpochRecord], seed: int, seconds: float, worker: str, state: str) -> dict[str, Any]:
    """One trial's curves, seed, time and worker, as the JSON stored in its ``run`` attribute."""
    return {
        "seed": seed,
        "seconds": round(seconds, 3),
        "worker": worker,
        "state": state,
        "epochs": len(records),
        "val_loss": [round(r.val_loss, 6) for r in records],
        "val_acc": [round(r.val_acc, 6) for r in records],
        "train_loss": [round(r.train_loss, 6) for r in records],
        "test_acc": [round(r.test_acc, 6) for r in records],
    }


def load_split(job: Job) -> Split:
    """The job's data, checked against the study's checksum."""
    from advisor.errors import UsageError
    from advisor.tune.data import load_data

    ref = job.settings.data
    split, loaded = load_data(
        dataset=None if job.data_file else ref.dataset,
        file=None if job.data_file is None else Path(job.data_file),
        target=job.target_column,
        arch=job.settings.arch,
        train_fraction=ref.train_fraction,
        seed=ref.split_seed,
    )
    if loaded.sha256 != ref.sha256:
        raise UsageError(
            f"{job.data_file} changed since the study started", hint="tune the study on the data it began with"
        )
    return split


def setup_process(threads: int, device: str) -> None:
    """Torch threads and deterministic kernels for this process; Optuna quiet."""
    import torch

    if device == "cpu":
        torch.set_num_threads(threads)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    quiet_optuna()


def make_trainer(job: Job, stop: Stop | None = None) -> Trainer:
    from advisor.experiment.runner import _tensors

    split = job.split or load_split(job)
    return Trainer(
        settings=job.settings,
        space=job.space,
        split=split,
        tensors=_tensors(split, job.settings.device),
        target=job.target,
        count_running=job.storage.heartbeat,
        heartbeat_s=job.heartbeat_s,
        stop=stop or Stop(),
    )


def join_study(job: Job, storage: optuna.storages.BaseStorage | None = None) -> tuple[optuna.Study, bool]:
    """Open the storage (unless given) and create or join the job's study (see
    :func:`advisor.tune.storage.open_study`)."""

    return open_study(
        storage or open_storage(job.storage, heartbeat_s=job.heartbeat_s),
        job.storage,
        job.study,
        job.settings.key(job.space),
        sampler=make_sampler(job.settings.seed),
        pruner=make_pruner(job.settings.epochs, job.pruner_startup),
        enqueue=job.enqueue,
    )


def run_trials(
    study: optuna.Study,
    trainer: Trainer,
    target: int,
    *,
    progress: Progress | None = None,
    poll_s: float = 1.0,
) -> None:
    """Run trials in this process until the study holds ``target`` finished trials.

    While the remaining trials are all running elsewhere, wait for them (a stale one, whose worker died, is
    marked failed after the heartbeat's grace period, and then this worker runs its replacement).
    """
    import optuna

    while True:
        trainer.stop.check()
        seen = trainer.last_seen
        if seen is not None and seen[0] + seen[1] + 1 < target - NEAR_TARGET:
            # Far from the target by what the last trial saw of the study: no need to read it again.
            finished, running = seen[0] + 1, seen[1]
            trainer.last_seen = None
            if progress is not None:
                progress(finished, target)
            study.optimize(trainer.objective, n_trials=1, catch=(Surplus, Diverged))
            continue
        finished, running = counts(study)
        if progress is not None:
            progress(finished, target)
        if finished >= target:
            return
        if trainer.count_running and finished + running >= target:
            optuna.storages.fail_stale_trials(study)
            fail_orphans(study, older_than_s=2 * trainer.heartbeat_s + ORPHAN_MARGIN_S)
            time.sleep(poll_s)
            continue
        study.optimize(trainer.objective, n_trials=1, catch=(Surplus, Diverged))


def fail_orphans(study: optuna.Study, *, older_than_s: float) -> list[int]:
    """Mark failed the running trials that never started training: no parameters for ``older_than_s``.

    Optuna's heartbeat check skips a trial that has no heartbeat yet, so a worker killed between creating a
    trial and its first heartbeat (a few milliseconds) would leave it running forever. A live trial has its
    parameters within milliseconds of starting. Returns the numbers of the trials failed.
    """
    import datetime

    import optuna
    from optuna.trial import TrialState

    now = datetime.datetime.now()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.params or t.datetime_start is None or (now - t.datetime_start).total_seconds() < older_than_s:
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        failed.append(t.number)
    return failed


# ---- stopping cleanly ----


class Stop:
    """A request to stop: Ctrl-C (SIGINT), or SIGTERM from a local worker's parent.

    The first signal only sets a flag, which training checks after every epoch and the worker loop between
    trials, raising :class:`KeyboardInterrupt` there (Optuna then marks the trial failed and tune marks it
    interrupted). Raising straight from the signal handler is not safe: the exception can land inside a
    finaliser, where Python prints and ignores it, and the run goes on. A second Ctrl-C stops at once.
    A worker also stops when its parent has died.
    """

    def __init__(self, parent_pid: int | None = None) -> None:
        self.requested = False
        self.parent_pid = parent_pid

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested or (self.parent_pid is not None and os.getppid() != self.parent_pid):
            raise KeyboardInterrupt

    @contextmanager
    def installed(self, *signums: int) -> Iterator[Stop]:
        """Handle ``signums`` with this flag while inside (only the main thread may handle signals)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {n: signal.getsignal(n) for n in signums}
        for n in signums:
            signal.signal(n, self._handle)
        try:
            yield self
        finally:
            for n, handler in previous.items():
                signal.signal(n, handler)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Start child processes with Ctrl-C ignored (an ignored signal stays ignored across exec), so that the
    terminal's Ctrl-C reaches only the parent, which stops them in order."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- worker processes ----


def worker_main(job: Job, index: int, parent_pid: int) -> None:
    """Entry point of one local worker process (``--workers N``): join the study, run trials, exit.

    SIGTERM (sent by the parent on Ctrl-C) stops it after the current epoch. Exit status: 0 done,
    130 stopped, 2 a usage or storage error (printed as ``error:``), 1 anything else.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = 0
    try:
        with Stop(parent_pid).installed(signal.SIGTERM) as stop:
            setup_process(job.threads, job.settings.device)
            trainer = make_trainer(job, stop=stop)
            study, _ = join_study(job)
            run_trials(study, trainer, job.target)
    except KeyboardInterrupt:
        code = 130
    except AdvisorError as exc:
        sys.stderr.write(f"error: worker {index + 1}: {exc.message}\n")
        code = exc.exit_code
    except Exception as exc:  # reported by the parent as a failed worker; the study stays usable
        from advisor.tune.storage import redact

        sys.stderr.write(f"error: worker {index + 1}: {type(exc).__name__}: {redact(str(exc), job.storage)}\n")
        code = 1
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: torch's thread pools can stall a spawned child's exit


@dataclass
class WorkerExit:
    index: int
    code: int | None  # None: still running when abandoned


def run_local_workers(
    job: Job, n: int, stop: Stop, *, progress: Progress | None = None, poll_s: float = 1.0, grace_s: float = 120.0
) -> list[WorkerExit]:
    """Start ``n`` worker processes on this machine, wait for them, and return how each ended.

    The parent creates the study first (so only one process creates it and enqueues the plan), then
    polls the storage for the progress bar. On ``stop`` (Ctrl-C) it sends the workers SIGTERM, waits for
    them to mark their trials interrupted, and raises :class:`KeyboardInterrupt`; a second Ctrl-C kills them.
    """
    import multiprocessing

    study, _ = join_study(job)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=worker_main, args=(job, i, os.getpid()), name=f"tune-worker-{i + 1}") for i in range(n)]
    with sigint_ignored():
        for p in procs:
            p.start()
    try:
        while any(p.is_alive() for p in procs) and not stop.requested:
            if progress is not None:
                progress(counts(study)[0], job.target)
            time.sleep(poll_s)
        if stop.requested:
            for p in procs:
                if p.is_alive():
                    p.terminate()  # SIGTERM: the worker's Stop flag
            deadline = time.monotonic() + grace_s
            while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
                time.sleep(0.1)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(timeout=10)
        raise
    if progress is not None:
        progress(counts(study)[0], job.target)
    return [WorkerExit(i, p.exitcode) for i, p in enumerate(procs)]


# ---- re-runs of chosen configurations ----

_RERUN_TRAINER: Trainer | None = None


def _rerun_init(job: Job, threads: int) -> None:
    global _RERUN_TRAINER
    setup_process(threads, job.settings.device)
    _RERUN_TRAINER = make_trainer(job)


def _rerun_one(name: str, bp: Blueprint, seed: int) -> RunResult:
    assert _RERUN_TRAINER is not None
    return _RERUN_TRAINER.run(name, bp, seed)


def rerun(
    job: Job,
    trainer: Trainer,
    tasks: Sequence[tuple[str, Blueprint, int]],
    *,
    workers: int,
    expected_s: float = float("inf"),
    progress: Progress | None = None,
) -> list[RunResult]:
    """Train each ``(name, blueprint, seed)`` task; in ``workers`` processes when more than one and the
    work (``expected_s`` per task) outweighs starting them.

    Results come back in the order of ``tasks``; runs are deterministic, so the order of execution does
    not change them.
    """
    results: list[RunResult | None] = [None] * len(tasks)
    if progress is not None:
        progress(0, len(tasks))
    if workers <= 1 or len(tasks) * expected_s < POOL_WORTH_S:
        for i, (name, bp, seed) in enumerate(tasks):
            results[i] = trainer.run(name, bp, seed)
            if progress is not None:
                progress(i + 1, len(tasks))
    else:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_rerun_init, initargs=(job, job.threads)
        )
        try:
            with sigint_ignored():  # the pool starts its processes as tasks arrive
                futures = {pool.submit(_rerun_one, name, bp, seed): i for i, (name, bp, seed) in enumerate(tasks)}
            pending = set(futures)
            while pending:
                trainer.stop.check()
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    results[futures[fut]] = fut.result()
                if progress is not None:
                    progress(len(tasks) - len(pending), len(tasks))
        except BaseException:
            for proc in list(getattr(pool, "_processes", {}).values()):  # re-runs keep nothing: stop them now
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    return [r for r in results if r is not None]
