"""What an experiment produces: per-epoch records, per-run results, per-variant summaries, the ranking.

The within-noise rule (also written into every results.json as ``noise_rule``):

    A variant is *within noise* of the best when the difference of their mean test accuracies is at most
    twice the combined standard error of that difference,
        2 * sqrt(sd_a^2/n_a + sd_b^2/n_b + p_a(1-p_a)/n_test + p_b(1-p_b)/n_test),
    where sd and n are the standard deviation over seeds and the number of seeds (the seed terms are 0
    with a single seed), and p(1-p)/n_test is the sampling variance of an accuracy measured on the n_test
    examples of the test set, which every run shares and which more seeds cannot shrink.

Twice the standard error is roughly a 95% interval; the test-set term keeps a difference of one or two
test examples from looking real when the seeds happen to agree closely.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RESULTS_SCHEMA_VERSION = 1

NOISE_RULE = (
    "within noise of the best when |mean test accuracy difference| <= 2 * sqrt(sd_a^2/n_a + sd_b^2/n_b "
    "+ p_a(1-p_a)/n_test + p_b(1-p_b)/n_test): sd over seeds (0 with one seed) plus the test set's "
    "sampling error of an accuracy"
)


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


def noise_threshold(
    acc_a: float, sd_a: float | None, n_a: int, acc_b: float, sd_b: float | None, n_b: int, n_test: int
) -> float:
    """Twice the combined standard error of a difference of mean accuracies (see the module docstring)."""
    var = 0.0
    if sd_a is not None and n_a > 1:
        var += sd_a**2 / n_a
    if sd_b is not None and n_b > 1:
        var += sd_b**2 / n_b
    if n_test > 0:
        var += acc_a * (1 - acc_a) / n_test + acc_b * (1 - acc_b) / n_test
    return 2.0 * math.sqrt(var)


def rank(runs: Sequence[RunResult], order: Sequence[str], n_test: int) -> list[VariantSummary]:
    """One summary per variant with runs, ranked by mean test accuracy (then lower test loss, then
    the order the variants were asked for), each marked against the best."""
    stats = []
    for name in order:
        mine = [r for r in runs if r.variant == name]
        if not mine:
            continue
        acc = [r.final.test_acc for r in mine]
        loss = [r.final.test_loss for r in mine]
        stats.append(
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
    stats.sort(key=lambda s: (-s.test_acc_mean, s.test_loss_mean, order.index(s.name)))
    out: list[VariantSummary] = []
    for i, s in enumerate(stats):
        top = stats[0]
        delta = s.test_acc_mean - top.test_acc_mean
        noise = noise_threshold(
            s.test_acc_mean, s.test_acc_std, s.n_seeds, top.test_acc_mean, top.test_acc_std, top.n_seeds, n_test
        )
        verdict: Literal["best", "within-noise", "worse"]
        if i == 0:
            verdict = "best"
        else:
            verdict = "within-noise" if abs(delta) <= noise else "worse"
        out.append(s.model_copy(update={"rank": i + 1, "delta_to_best": delta, "noise": noise, "verdict": verdict}))
    return out
