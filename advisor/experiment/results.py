"""What an experiment produces: per-epoch records, per-run results, per-variant summaries, the ranking.

The within-noise rule (also written into every results.json as ``noise_rule``):

    The runs are paired: under each seed every variant starts from the same weights, sees the same batches
    and is scored on the same test set. A variant is *within noise* of the best when either
    (1) a paired t-test over the seeds they share (``scipy.stats.ttest_rel`` on the final test accuracies)
        does not reject equal means at the 5% level, two-sided; equivalently, the mean paired difference
        lies inside its 95% confidence interval t(0.975, n-1) * sd_diff / sqrt(n); or
    (2) the difference is at most twice the standard error with which the shared test set of n_test
        examples measures an accuracy, 2 * sqrt(p_a(1-p_a)/n_test + p_b(1-p_b)/n_test), which more seeds
        cannot shrink.
    With fewer than two shared seeds only (2) applies.

Pairing removes the seed-to-seed spread that both variants share (an easy or hard initialisation moves
both), so a consistent difference is found with fewer seeds than unpaired standard errors need; the
test-set term keeps a difference of a few test examples from looking real when the seeds agree closely.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RESULTS_SCHEMA_VERSION = 1

NOISE_RULE = (
    "within noise of the best when a paired t-test over the shared seeds (scipy.stats.ttest_rel on the final "
    "test accuracies; same initial weights, batches and test set per seed) does not reject equal means at "
    "p < 0.05, or when |mean difference| <= 2 * sqrt(p_a(1-p_a)/n_test + p_b(1-p_b)/n_test), the shared test "
    "set's sampling error of an accuracy; with one shared seed only the test-set term applies"
)
ALPHA = 0.05


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperimentConfig(_Model):
    dataset: str
    arch: Literal["cnn", "mlp"]
    variants: list[str]
    seeds: list[int]
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    train_fraction: float = Field(gt=0, le=1)
    device: str = "auto"
    split_seed: int = 0


class EpochRecord(_Model):
    epoch: int  # 1-based
    fit_loss: float  # mean minibatch loss in train mode (dropout on)
    train_loss: float  # eval mode on the whole training part
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float


class RunResult(_Model):
    variant: str
    seed: int
    epochs: list[EpochRecord]
    best_epoch: int  # epoch of the lowest validation loss (the first, on ties)
    seconds: float  # wall time; not part of the reproducible numbers

    @property
    def final(self) -> EpochRecord:
        return self.epochs[-1]

    @property
    def at_best(self) -> EpochRecord:
        return self.epochs[self.best_epoch - 1]


class SiteRecord(_Model):
    position: int
    kind: str
    p: float
    after: str
    before: str
    id: str | None = None
    recommendations: list[str] = Field(default_factory=list)


class VariantInfo(_Model):
    name: str
    summary: str
    source: str
    sites: list[SiteRecord]
    modules: list[str]  # the built nn.Sequential, one line per module
    params: int
    same_as: list[str] = Field(default_factory=list)  # other variants with exactly this network and dropout


class VariantSummary(_Model):
    rank: int
    name: str
    n_seeds: int
    test_acc_mean: float
    test_acc_std: float | None  # None with a single seed
    test_loss_mean: float
    test_loss_std: float | None
    train_acc_mean: float
    gap_mean: float  # train accuracy - test accuracy, final epoch
    gap_loss_mean: float  # test loss - train loss, final epoch
    best_epoch_mean: float
    best_epochs: list[int]
    test_acc_at_best_mean: float  # what early stopping on validation loss would have given
    delta_to_best: float  # mean test accuracy minus the best variant's
    noise: float  # the within-noise threshold against the best (see NOISE_RULE)
    p_value: float | None = None  # paired t-test against the best; None for the best or < 2 shared seeds
    verdict: Literal["best", "within-noise", "worse"]


class ExperimentResult(_Model):
    schema_version: int = RESULTS_SCHEMA_VERSION
    tool_version: str
    config: ExperimentConfig
    device: str
    threads: int
    sizes: dict[str, int]
    n_classes: int
    input_shape: list[int]
    complete: bool
    runs_expected: int
    noise_rule: str = NOISE_RULE
    advisor_spec: dict[str, object] | None = None
    variants: list[VariantInfo]
    ranking: list[VariantSummary]
    runs: list[RunResult]
    warnings: list[str] = Field(default_factory=list)
    elapsed_s: float = 0.0


def best_epoch(val_losses: Sequence[float]) -> int:
    """1-based epoch of the lowest validation loss; the earliest on ties."""
    best = min(range(len(val_losses)), key=lambda i: (val_losses[i], i))
    return best + 1


def _mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs)


def _std(xs: Sequence[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) > 1 else None


def shared_test_set_noise(acc_a: float, acc_b: float, n_test: int) -> float:
    """Twice the standard error with which a test set of ``n_test`` examples measures the two accuracies."""
    if n_test <= 0:
        return 0.0
    return 2.0 * math.sqrt(acc_a * (1 - acc_a) / n_test + acc_b * (1 - acc_b) / n_test)


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of one variant against another over the seeds both ran (see NOISE_RULE)."""

    n: int  # shared seeds
    mean_diff: float  # mean of (a - b) over the shared seeds
    half_width: float  # of the 95% confidence interval of the mean difference; 0 with one seed
    p_value: float | None  # None with fewer than 2 shared seeds; 1.0 when every difference is 0


def paired_test(a: dict[int, float], b: dict[int, float]) -> PairedTest:
    """``scipy.stats.ttest_rel`` on the accuracies of the seeds in both ``a`` and ``b`` (seed -> accuracy)."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    mean = statistics.fmean(diffs) if diffs else 0.0
    if len(seeds) < 2:
        return PairedTest(len(seeds), mean, 0.0, None)
    from scipy import stats

    sd = statistics.stdev(diffs)
    if sd == 0.0:  # identical runs, or a difference that no seed varies: the t statistic is 0/0 or infinite
        return PairedTest(len(seeds), mean, 0.0, 1.0 if mean == 0.0 else 0.0)
    result = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    half = float(stats.t.ppf(1 - ALPHA / 2, len(seeds) - 1)) * sd / math.sqrt(len(seeds))
    return PairedTest(len(seeds), mean, half, float(result.pvalue))


def rank(runs: Sequence[RunResult], order: Sequence[str], n_test: int) -> list[VariantSummary]:
    """One summary per variant with runs, ranked by mean test accuracy (then lower test loss, then
    the order the variants were asked for), each marked against the best."""
    summaries = []
    for name in order:
        mine = [r for r in runs if r.variant == name]
        if not mine:
            continue
        acc = [r.final.test_acc for r in mine]
        loss = [r.final.test_loss for r in mine]
        summaries.append(
            VariantSummary(
                rank=0,
                name=name,
                n_seeds=len(mine),
                test_acc_mean=_mean(acc),
                test_acc_std=_std(acc),
                test_loss_mean=_mean(loss),
                test_loss_std=_std(loss),
                train_acc_mean=_mean([r.final.train_acc for r in mine]),
                gap_mean=_mean([r.final.train_acc - r.final.test_acc for r in mine]),
                gap_loss_mean=_mean([r.final.test_loss - r.final.train_loss for r in mine]),
                best_epoch_mean=_mean([r.best_epoch for r in mine]),
                best_epochs=[r.best_epoch for r in mine],
                test_acc_at_best_mean=_mean([r.at_best.test_acc for r in mine]),
                delta_to_best=0.0,
                noise=0.0,
                verdict="best",
            )
        )
    summaries.sort(key=lambda s: (-s.test_acc_mean, s.test_loss_mean, order.index(s.name)))
    finals = {name: {r.seed: r.final.test_acc for r in runs if r.variant == name} for name in order}
    out: list[VariantSummary] = []
    for i, s in enumerate(summaries):
        top = summaries[0]
        delta = s.test_acc_mean - top.test_acc_mean
        test_term = shared_test_set_noise(s.test_acc_mean, top.test_acc_mean, n_test)
        verdict: Literal["best", "within-noise", "worse"]
        p_value = None
        if i == 0:
            verdict, noise = "best", test_term
        else:
            paired = paired_test(finals[s.name], finals[top.name])
            p_value = paired.p_value
            noise = max(paired.half_width, test_term)
            seeds_agree = p_value is not None and p_value < ALPHA
            verdict = "worse" if seeds_agree and abs(delta) > test_term else "within-noise"
            if p_value is None:
                verdict = "within-noise" if abs(delta) <= test_term else "worse"
        update = {"rank": i + 1, "delta_to_best": delta, "noise": noise, "p_value": p_value, "verdict": verdict}
        out.append(s.model_copy(update=update))
    return out
