"""From a finished study to the report: trial records, re-runs, paired comparisons, importances, files.

An output folder holds ``tune.json`` (the settings, written before the first trial), ``study.db`` (the
default storage), ``trials.json`` and ``trials.csv`` (every trial), ``report.json`` (everything, written
last), and three figures: ``history.png``, ``importance.png`` and ``rates.png``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from advisor import __version__
from advisor.errors import OutputError
from advisor.experiment.results import ALPHA, paired_test, shared_test_set_noise
from advisor.experiment.runner import site_records
from advisor.experiment.variants import VARIANTS, Blueprint, hand_blueprint
from advisor.fileio import write_bytes_atomic, write_text_atomic
from advisor.tune.results import (
    CONFIG_FILE,
    Comparison,
    ConfigResult,
    RerunRun,
    StudySummary,
    TrialRecord,
    TuneConfig,
    TuneReport,
)
from advisor.tune.search import (
    DIVERGED_ATTR,
    INTERRUPTED_ATTR,
    OBJECTIVE,
    RUN_ATTR,
    SAME_AS,
    SURPLUS_ATTR,
    Job,
    Progress,
    Trainer,
    rerun,
    signature,
)
from advisor.tune.space import PLACEMENT_PARAM, SearchSpace

if TYPE_CHECKING:
    import optuna

    from advisor.experiment.results import RunResult

FILES = {
    "report": "report.json",
    "trials": "trials.json",
    "csv": "trials.csv",
    "history": "history.png",
    "importance": "importance.png",
    "rates": "rates.png",
}
COLUMNS = ["#", "configuration", "search val loss", "re-run val loss", "test acc %", "test loss", "vs best"]


# ---- trials ----


def trial_records(study: optuna.Study, space: SearchSpace) -> list[TrialRecord]:
    """Every trial of the study, in number order, with its curves and why it failed if it did."""
    from optuna.trial import TrialState

    names = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }
    out = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        run = t.user_attrs.get(RUN_ATTR) or {}
        note = None
        if t.user_attrs.get(SURPLUS_ATTR):
            note = "surplus"
        elif t.user_attrs.get(INTERRUPTED_ATTR):
            note = "interrupted"
        elif DIVERGED_ATTR in t.user_attrs:
            note = f"diverged (validation loss not finite at epoch {t.user_attrs[DIVERGED_ATTR]})"
        elif t.state == TrialState.FAIL:
            note = "lost: its worker stopped or the trial raised an error"
        elif SAME_AS in run:
            note = f"same network as trial {run[SAME_AS]}: its result, not retrained"
        params = dict(t.params)
        label = space.describe(params) if PLACEMENT_PARAM in params and _known(space, params) else None
        out.append(
            TrialRecord(
                number=t.number,
                state=names[t.state],
                value=t.value if t.state == TrialState.COMPLETE else None,
                params=params,
                label=label,
                seed=run.get("seed"),
                seconds=run.get("seconds"),
                worker=run.get("worker"),
                epochs=int(run.get("epochs", 0)),
                val_loss=list(run.get("val_loss", [])),
                val_acc=list(run.get("val_acc", [])),
                test_acc=list(run.get("test_acc", [])),
                note=note,
            )
        )
    return out


def _known(space: SearchSpace, params: dict[str, Any]) -> bool:
    return any(p.name == params[PLACEMENT_PARAM] for p in space.placements)


def summarize(records: Sequence[TrialRecord]) -> StudySummary:
    def n(state: str) -> int:
        return sum(1 for r in records if r.state == state)

    complete = [r for r in records if r.state == "complete" and r.value is not None]
    best = min(complete, key=lambda r: (r.value, r.number)) if complete else None
    failed = [r for r in records if r.state == "failed"]
    return StudySummary(
        complete=n("complete"),
        pruned=n("pruned"),
        failed=len(failed),
        running=n("running"),
        surplus=sum(1 for r in failed if r.note == "surplus"),
        interrupted=sum(1 for r in failed if r.note == "interrupted"),
        lost=sum(1 for r in failed if r.note is not None and r.note.startswith("lost")),
        best_trial=best.number if best else None,
        best_value=best.value if best else None,
    )


def top_configs(records: Sequence[TrialRecord], k: int) -> list[tuple[dict[str, Any], list[int], float]]:
    """The ``k`` best distinct parameter sets of the complete trials: (params, their trials, best value)."""
    groups: dict[str, tuple[dict[str, Any], list[int], float]] = {}
    for r in sorted(
        (r for r in records if r.state == "complete" and r.value is not None), key=lambda r: (r.value, r.number)
    ):
        key = json.dumps(r.params, sort_keys=True)
        if key in groups:
            groups[key][1].append(r.number)
        else:
            groups[key] = (r.params, [r.number], float(r.value))  # type: ignore[arg-type]
    return list(groups.values())[:k]


def param_importances(study: optuna.Study) -> tuple[dict[str, float] | None, str | None]:
    """Optuna's parameter importances (PED-ANOVA, which handles conditional parameters), or why there are none."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 4:
        return None, f"{len(complete)} complete trial(s): too few to estimate importances (4 or more needed)"
    with warnings.catch_warnings(record=True) as caught:  # Optuna warns about thin data; keep it as a note
        warnings.simplefilter("always")
        try:
            imp = optuna.importance.get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            return None, f"Optuna could not estimate importances: {exc}"
    values = {k: float(v) for k, v in imp.items()}
    if not values or not all(math.isfinite(v) for v in values.values()):
        return None, "Optuna's importances are undefined for these trials (every value the same?)"
    notes = sorted({str(w.message).split(". ")[0] for w in caught if "importance" in str(w.message).lower()})
    return values, ("Optuna: " + "; ".join(notes)) if notes else None


# ---- re-runs and comparisons ----


def _searched(
    records: Sequence[TrialRecord], space: SearchSpace, bp: Blueprint
) -> tuple[dict[str, Any] | None, Blueprint, list[int], float | None]:
    """The complete trials of the search that trained ``bp``: their parameters, ``bp``, their numbers and
    their best value."""
    mine = signature(bp)
    same = [
        r
        for r in records
        if r.state == "complete"
        and r.value is not None
        and r.label is not None
        and signature(space.blueprint(r.params)) == mine
    ]
    if not same:
        return None, bp, [], None
    return same[0].params, bp, [r.number for r in same], min(float(r.value) for r in same if r.value is not None)


def advisor_blueprint(config: TuneConfig) -> Blueprint:
    from advisor.experiment.variants import DropSite

    return Blueprint(
        ops=tuple(config.advisor_ops),
        sites=tuple(
            DropSite(s.position, s.kind, s.p, s.after, s.before, s.id, tuple(s.recommendations))
            for s in config.advisor_sites
        ),
    )


def advisor_label(config: TuneConfig) -> str:
    space = config.space
    if space.advisor is not None and space.advisor_inside:
        return space.describe(space.advisor_params)
    rates = ", ".join(f"{s.kind} {s.p:g}" for s in config.advisor_sites)
    return f"the plan: {rates or 'no dropout'}"


def _mean_sd(xs: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


class _Entry(NamedTuple):
    role: Literal["top", "advisor", "none"]
    label: str
    params: dict[str, Any] | None
    bp: Blueprint
    trials: list[int]
    value: float | None
    rank: int | None


def _config(e: _Entry, runs: Sequence[RunResult]) -> ConfigResult:
    acc_mean, acc_sd = _mean_sd([r.final.test_acc for r in runs])
    return ConfigResult(
        role=e.role,
        rank=e.rank,
        label=e.label,
        params=e.params,
        sites=site_records(e.bp),
        trials=e.trials,
        search_value=e.value,
        runs=[
            RerunRun(
                seed=r.seed,
                test_acc=r.final.test_acc,
                test_loss=r.final.test_loss,
                val_loss=r.final.val_loss,
                val_acc=r.final.val_acc,
                best_epoch=r.best_epoch,
                seconds=r.seconds,
            )
            for r in runs
        ],
        test_acc_mean=acc_mean,
        test_acc_std=acc_sd,
        test_loss_mean=statistics.fmean(r.final.test_loss for r in runs),
        val_loss_mean=statistics.fmean(r.final.val_loss for r in runs),
    )


def compare(other: ConfigResult, best: ConfigResult, n_test: int) -> Comparison:
    """``other`` against ``best``, seed by seed on test accuracy, with experiment's within-noise rule
    (:data:`advisor.experiment.results.NOISE_RULE`): a paired t-test over the shared seeds, and the shared
    test set's sampling error."""
    mine = {r.seed: r.test_acc for r in other.runs}
    theirs = {r.seed: r.test_acc for r in best.runs}
    seeds = sorted(set(mine) & set(theirs))
    paired = paired_test(mine, theirs)
    test_term = shared_test_set_noise(other.test_acc_mean, best.test_acc_mean, n_test)
    delta = paired.mean_diff
    verdict: Literal["same", "within-noise", "worse", "better"]
    # A real difference: beyond the test set's sampling error, and the seeds agree (or there is one seed).
    real = abs(delta) > test_term and (paired.p_value is None or paired.p_value < ALPHA)
    if other.sites == best.sites:
        verdict = "same"
    elif real:
        verdict = "worse" if delta < 0 else "better"
    else:
        verdict = "within-noise"
    return Comparison(
        role=other.role,
        label=other.label,
        against=best.label,
        delta_mean=delta,
        deltas=[mine[s] - theirs[s] for s in seeds],
        p_value=paired.p_value,
        ci95=(delta - paired.half_width, delta + paired.half_width) if paired.n > 1 else None,
        noise=max(paired.half_width, test_term),
        verdict=verdict,
    )


def build_report(
    config: TuneConfig,
    study: optuna.Study,
    job: Job,
    trainer: Trainer,
    *,
    workers: int,
    search_s: float = 0.0,
    progress: Progress | None = None,
    warnings: Sequence[str] = (),
) -> TuneReport:
    """Collect the trials, re-run the top configurations, the plan and no dropout, compare, and assemble."""
    space = config.space
    records = trial_records(study, space)
    summary = summarize(records)
    top = top_configs(records, config.top)

    entries = [
        _Entry("top", space.describe(params), params, space.blueprint(params), trials, value, rank)
        for rank, (params, trials, value) in enumerate(top, start=1)
    ]
    advisor_bp = advisor_blueprint(config)
    entries.append(_Entry("advisor", advisor_label(config), *_searched(records, space, advisor_bp), None))
    none_bp = hand_blueprint(VARIANTS[config.arch]["none"])
    entries.append(_Entry("none", "no dropout", *_searched(records, space, none_bp), None))

    seeds = config.rerun_seeds
    unique: dict[str, tuple[str, Blueprint]] = {}
    for e in entries:
        unique.setdefault(signature(e.bp), (e.label, e.bp))
    tasks = [(label, bp, seed) for label, bp in unique.values() for seed in seeds]
    timed = [r.seconds for r in records if r.state == "complete" and r.seconds]
    expected = statistics.median(timed) if timed else float("inf")
    started = time.perf_counter()
    results = rerun(job, trainer, tasks, workers=workers, expected_s=expected, progress=progress)
    rerun_s = time.perf_counter() - started
    by_key = {(signature(bp), seed): r for (_, bp, seed), r in zip(tasks, results, strict=True)}

    configs = [_config(e, [by_key[(signature(e.bp), s)] for s in seeds]) for e in entries]
    tops = [c for c in configs if c.role == "top"]
    comparisons: list[Comparison] = []
    n_test = len(trainer.split.y_test)
    if tops:
        best = min(tops, key=lambda c: (c.val_loss_mean, c.rank or 0))
        configs = [c.model_copy(update={"best": c is best}) for c in configs]
        best = next(c for c in configs if c.best)
        comparisons = [compare(c, best, n_test) for c in configs if c.role in ("advisor", "none")]
    importances, note = param_importances(study)
    return TuneReport(
        tool_version=__version__,
        config=config,
        objective=OBJECTIVE,
        study=summary,
        importances=importances,
        importance_note=note,
        configs=configs,
        comparisons=comparisons,
        trials=records,
        n_test=n_test,
        warnings=list(warnings),
        search_s=round(search_s, 2),
        rerun_s=round(rerun_s, 2),
    )


# ---- text ----


def _pp(x: float) -> str:
    return f"{x * 100:+.1f} pp".replace("-", "−")


def _vs_best(c: ConfigResult, report: TuneReport) -> str:
    if c.best:
        return "best"
    cmp = next((x for x in report.comparisons if x.role == c.role and c.role != "top"), None)
    best = report.best
    if best is None:
        return ""
    if cmp is None:  # a top configuration: the same within-noise rule as the plan's and no dropout's rows
        cmp = compare(c, best, report.n_test)
    if cmp.verdict == "same":
        return "= best"
    p = f", p={cmp.p_value:.2f}" if cmp.p_value is not None else ""
    if cmp.verdict == "within-noise":
        return f"≈ {_pp(cmp.delta_mean)} (noise{p})"
    return f"{_pp(cmp.delta_mean)} ({cmp.verdict}{p})"


def _pm(mean: float, sd: float | None, scale: float, digits: int) -> str:
    value = f"{mean * scale:.{digits}f}"
    return value if sd is None else f"{value} ± {sd * scale:.{digits}f}"


def rows(report: TuneReport) -> list[list[str]]:
    """One row of display strings per re-run configuration (columns: :data:`COLUMNS`)."""
    out = []
    for c in report.configs:
        mark = str(c.rank) if c.rank is not None else {"advisor": "plan", "none": "none"}[c.role]
        out.append(
            [
                mark,
                c.label,
                f"{c.search_value:.4f}" if c.search_value is not None else "–",
                f"{c.val_loss_mean:.4f}",
                _pm(c.test_acc_mean, c.test_acc_std, 100, 1),
                f"{c.test_loss_mean:.3f}",
                _vs_best(c, report),
            ]
        )
    return out


def title(report: TuneReport) -> str:
    c = report.config
    s = report.study
    failed = s.failed - s.surplus
    return (
        f"{c.data.dataset} · {c.arch} · {s.complete + s.pruned} trials ({s.complete} complete, {s.pruned} pruned"
        + (f", {failed} failed" if failed else "")
        + f") · {c.epochs} epochs · re-runs on {c.seeds} seed{'s' if c.seeds != 1 else ''} · "
        f"search {report.search_s:.0f} s, re-runs {report.rerun_s:.0f} s"
    )


def verdict_lines(report: TuneReport) -> list[str]:
    out = []
    for cmp in report.comparisons:
        who = "the advisor's plan" if cmp.role == "advisor" else "no dropout"
        stat = ""
        if cmp.p_value is not None and cmp.ci95 is not None:
            stat = f"; paired t-test p = {cmp.p_value:.3f}, 95% CI {_pp(cmp.ci95[0])} to {_pp(cmp.ci95[1])}"
        if cmp.verdict == "same":
            out.append(f"{who} is the best configuration itself")
        elif cmp.verdict == "within-noise":
            out.append(
                f"{who} is within noise of the best ({_pp(cmp.delta_mean)} test accuracy, noise ±"
                f"{cmp.noise * 100:.1f} pp{stat})"
            )
        else:
            out.append(
                f"{who} is {cmp.verdict} than the best by {abs(cmp.delta_mean) * 100:.1f} pp test accuracy "
                f"(noise ±{cmp.noise * 100:.1f} pp{stat})"
            )
    return out


def footnotes(report: TuneReport) -> list[str]:
    c = report.config
    s = report.study
    notes = verdict_lines(report)
    if report.importances:
        notes.append(
            "parameter importance (Optuna, PED-ANOVA): "
            + ", ".join(f"{k} {v:.2f}" for k, v in report.importances.items())
        )
    if report.importance_note:
        notes.append(f"parameter importance: {report.importance_note}")
    extra = []
    if s.surplus:
        extra.append(f"{s.surplus} surplus (raced past the target, never trained)")
    if s.interrupted:
        extra.append(f"{s.interrupted} interrupted")
    if s.lost:
        extra.append(f"{s.lost} lost (worker stopped or error)")
    if s.running:
        extra.append(f"{s.running} still running elsewhere")
    notes.append(
        f"search: study '{c.study}' in {c.storage}; objective: {report.objective} under training seed {c.seed}"
        + (f"; {', '.join(extra)}" if extra else "")
    )
    notes.append(
        f"re-runs: seeds {', '.join(map(str, c.rerun_seeds))}, paired; best = the lowest mean re-run validation "
        "loss among the top configurations; ≈ (noise): experiment's within-noise rule"
    )
    return notes


def text_report(report: TuneReport, files: dict[str, Path] | None = None) -> str:
    from advisor.experiment.report import text_table

    parts = [title(report), "", text_table(COLUMNS, rows(report)), ""]
    parts += footnotes(report)
    if files:
        parts.append("")
        parts += [f"{key}: {path}" for key, path in files.items()]
    return "\n".join(parts) + "\n"


# ---- JSON, CSV, files ----


def report_json(report: TuneReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def trials_json(report: TuneReport) -> str:
    return json.dumps([t.model_dump(mode="json") for t in report.trials], indent=2, ensure_ascii=False) + "\n"


def trials_csv(report: TuneReport) -> str:
    groups = [g.param for g in report.config.space.groups]
    fields = [
        "number",
        "state",
        "value",
        PLACEMENT_PARAM,
        *groups,
        "seed",
        "epochs",
        "val_acc",
        "test_acc",
        "seconds",
        "worker",
        "note",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for t in report.trials:
        writer.writerow(
            [
                t.number,
                t.state,
                "" if t.value is None else f"{t.value:.6g}",
                t.params.get(PLACEMENT_PARAM, ""),
                *("" if g not in t.params else f"{t.params[g]:.6g}" for g in groups),
                "" if t.seed is None else t.seed,
                t.epochs,
                f"{t.val_acc[-1]:.6g}" if t.val_acc else "",
                f"{t.test_acc[-1]:.6g}" if t.test_acc else "",
                "" if t.seconds is None else t.seconds,
                t.worker or "",
                t.note or "",
            ]
        )
    return buf.getvalue()


def config_json(config: TuneConfig) -> str:
    return json.dumps(config.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def write_config(config: TuneConfig, out_dir: Path) -> Path:
    """Write ``tune.json`` (creating the folder); the first file of a run, so ``--resume`` can find it."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / CONFIG_FILE
        write_text_atomic(path, config_json(config), force=True)
    except OSError as exc:
        raise OutputError(f"cannot write to {out_dir}: {exc.strerror or exc}", hint="choose another --out") from None
    return path


def save(report: TuneReport, out_dir: Path) -> dict[str, Path]:
    """Write the trials, the figures and then ``report.json`` (last: a report.json means the set is whole)."""
    from advisor.tune.figures import history_png, importance_png, rates_png

    out_dir = Path(out_dir)
    paths = {key: out_dir / name for key, name in FILES.items()}
    try:
        write_text_atomic(paths["trials"], trials_json(report), force=True)
        write_text_atomic(paths["csv"], trials_csv(report), force=True)
        write_bytes_atomic(paths["history"], history_png(report), force=True)
        write_bytes_atomic(paths["importance"], importance_png(report), force=True)
        write_bytes_atomic(paths["rates"], rates_png(report), force=True)
        write_text_atomic(paths["report"], report_json(report), force=True)
    except OSError as exc:
        raise OutputError(f"cannot write to {out_dir}: {exc.strerror or exc}", hint="choose another --out") from None
    return {k: paths[k] for k in ("report", "trials", "csv", "history", "importance", "rates")}


def summary_payload(report: TuneReport, files: dict[str, Path]) -> dict[str, Any]:
    """What ``--format json`` prints: the report without the per-trial curves (those are in trials.json)."""
    data = report.model_dump(mode="json", exclude={"trials"})
    data["files"] = {k: str(v) for k, v in files.items()}
    return data
