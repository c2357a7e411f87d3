"""tune's throughput with one and two workers on one study, and the storage's overhead per trial.

    python bench/bench_tune.py [--trials 12] [--epochs 15] [--storage URL]

Phase 1: one worker (this process, as ``dropout-advisor tune`` runs it) runs ``--trials`` trials of the
digits CNN. Phase 2: ``--workers`` local worker processes (as ``--workers 2``) add ``--trials`` more trials to
the same study. Throughput is trials per minute from the first trial's start to the last trial's end in
each phase, as the storage recorded them (process start-up is not counted). Targets on this 2-core
machine: 2 workers >= 1.7x one worker.

Storage overhead: during phase 1 every method of Optuna's storage is timed (creating the trial, its
parameters, the per-epoch reports, pruning checks, its attributes, completion); the overhead per trial
is set against the trial's training time (the objective's time minus the storage and sampler calls in
it). Target: < 2 %.

Every trial does the same work: the space is narrowed to the advisor's placement (continuous rates, so no
two trials train the same network) and the median pruner never prunes (its start-up count is out of reach,
so it still reads the study at every check, as in a real run). The load average is printed before and after: on a
shared machine other processes slow either phase down. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SPEEDUP_TARGET = 1.7
OVERHEAD_TARGET = 0.02


class Meter:
    """Wall time spent in the storage's and the sampler's methods, on this thread, inside and outside the
    objective."""

    def __init__(self) -> None:
        self.inside = False
        self.storage_in = self.storage_out = self.sampler_in = self.objective = 0.0
        self.calls = 0
        self.other_threads = 0.0  # the heartbeat thread's writes, running beside training
        self._main = threading.get_ident()
        self._depth = threading.local()

    def wrap(self, obj: Any, kind: str, names: list[str]) -> None:
        for name in names:
            method = getattr(obj, name)
            setattr(obj, name, self._timed(method, kind))

    def _timed(self, method: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if getattr(self._depth, "n", 0):  # a call made by a timed call: counted in the outer one
                return method(*args, **kwargs)
            self._depth.n = 1
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._depth.n = 0
                elapsed = time.perf_counter() - started
                if threading.get_ident() != self._main:
                    self.other_threads += elapsed
                elif kind == "sampler":
                    self.sampler_in += elapsed if self.inside else 0.0
                else:
                    self.calls += 1
                    if self.inside:
                        self.storage_in += elapsed
                    else:
                        self.storage_out += elapsed

        return timed


def _methods(cls: type) -> list[str]:
    # Private ones too: Optuna's cache layer calls some of them directly.
    return [n for n in dir(cls) if not n.startswith("__") and callable(getattr(cls, n))]


def _span(trials: list[Any]) -> float:
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    return (end - start).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials per phase")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per trial (digits CNN; tune's default)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes in phase 2")
    parser.add_argument("--storage", help="an Optuna storage URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()

    import optuna
    from optuna.storages import RDBStorage
    from optuna.trial import TrialState

    from advisor.tune.search import Stop, join_study, make_trainer, run_local_workers, run_trials, setup_process
    from advisor.tune.setup import NewRun, make_job, new_config
    from advisor.tune.storage import open_storage, parse_storage

    print(f"cpus: {os.cpu_count()}  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "space.toml"
        space.write_text('placements = ["advisor"]\n')
        run = NewRun(
            dataset="digits", data=None, target=None, arch="cnn", trials=args.trials, epochs=args.epochs,
            batch_size=64, lr=5e-3, train_fraction=1.0, seed=0, seeds=1, top=1, space=space, answers=None,
            spec_flags={}, storage=args.storage, study=f"bench-{os.getpid()}", workers=1, heartbeat_s=10,
            device="cpu", out=Path(tmp) / "out", force=False,
        )  # fmt: skip
        config, split, out, _ = new_config(run)
        ref = parse_storage(args.storage, out)
        out.mkdir(parents=True, exist_ok=True)
        # The median pruner asks the storage as in a real run, but never prunes: every trial trains fully.
        job = dataclasses.replace(make_job(config, ref), split=split, pruner_startup=10**9)

        # ---- phase 1: one worker, this process, storage and sampler timed ----
        meter = Meter()
        storage = open_storage(ref, heartbeat_s=job.heartbeat_s)
        assert isinstance(storage, RDBStorage)
        meter.wrap(storage, "storage", _methods(RDBStorage))
        setup_process(job.threads, "cpu")
        trainer = make_trainer(job, stop=Stop())
        study, _ = join_study(job, storage)
        meter.wrap(study.sampler, "sampler", ["infer_relative_search_space", "sample_relative", "sample_independent"])
        objective = trainer.objective

        def timed_objective(trial: optuna.Trial) -> float:
            meter.inside = True
            started = time.perf_counter()
            try:
                return objective(trial)
            finally:
                meter.objective += time.perf_counter() - started
                meter.inside = False

        trainer.objective = timed_objective  # type: ignore[method-assign]
        run_trials(study, trainer, args.trials)
        one = [t for t in study.get_trials(states=(TrialState.COMPLETE,))]

        # ---- phase 2: N worker processes on the same study ----
        job2 = dataclasses.replace(job, target=2 * args.trials, enqueue=None)
        exits = run_local_workers(job2, args.workers, Stop())
        if any(e.code != 0 for e in exits):
            print(f"a worker failed: {exits}")
            return 1
        done = study.get_trials(states=(TrialState.COMPLETE,))
        two = [t for t in done if t.number >= args.trials]
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    n = args.trials
    rate1 = len(one) / _span(one) * 60
    rate2 = len(two) / _span(two) * 60
    speedup = rate2 / rate1
    storage_per_trial = (meter.storage_in + meter.storage_out) / n
    training_per_trial = (meter.objective - meter.storage_in - meter.sampler_in) / n
    overhead = storage_per_trial / training_per_trial
    print(
        f"study: digits CNN, {args.epochs} epochs a trial, {config.storage}, "
        "the median pruner asked but never pruning, advisor's placement only"
    )
    print(f"1 worker : {len(one)} trials in {_span(one):.1f} s = {rate1:.1f} trials/min")
    print(f"{args.workers} workers: {len(two)} trials in {_span(two):.1f} s = {rate2:.1f} trials/min")
    print(f"{args.workers} workers / 1 worker: {speedup:.2f}x (target >= {SPEEDUP_TARGET}x)")
    print(
        f"storage per trial: {storage_per_trial * 1000:.1f} ms in {meter.calls / n:.0f} calls "
        f"({meter.storage_in / n * 1000:.1f} ms inside the objective, "
        f"{meter.storage_out / n * 1000:.1f} ms around it); "
        f"heartbeat thread {meter.other_threads / n * 1000:.1f} ms (beside training)"
    )
    print(f"training per trial: {training_per_trial:.2f} s (sampler {meter.sampler_in / n * 1000:.1f} ms)")
    print(f"storage / training: {overhead * 100:.2f} % (target < {OVERHEAD_TARGET * 100:.0f} %)")
    missed = []
    if speedup < SPEEDUP_TARGET:
        missed.append(f"speed-up {speedup:.2f}x < {SPEEDUP_TARGET}x")
    if overhead >= OVERHEAD_TARGET:
        missed.append(f"storage overhead {overhead * 100:.2f} % >= {OVERHEAD_TARGET * 100:.0f} %")
    if missed:
        print("MISSED: " + "; ".join(missed))
        return 1
    print("targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
