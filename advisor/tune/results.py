"""What a tune run records: its settings (``tune.json``), every trial, the re-runs and the comparisons.

Re-runs and comparisons. The search ranks configurations by one training seed's validation loss; the
report re-trains the best ``--top`` distinct configurations, the advisor's own plan and the network without
dropout under ``--seeds`` fresh seeds (the study seed + 1, + 2, ...), all with the same seeds, so the runs
are paired (same initial weights, same batches). The *best* configuration is the top one with the lowest
mean validation loss over those re-runs (chosen on validation, never on test). The advisor's plan and no
dropout are then compared with it on test accuracy, seed by seed, with experiment's within-noise rule
(:data:`advisor.experiment.results.NOISE_RULE`: a paired t-test, ``scipy.stats.ttest_rel``, over the shared
seeds, and the shared test set's sampling error), so that ``tune`` and ``experiment`` agree on what
"within noise" means.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from advisor.experiment.results import NOISE_RULE, SiteRecord
from advisor.plan import Op
from advisor.tune.data import DataRef
from advisor.tune.space import SearchSpace

REPORT_SCHEMA_VERSION = 1
CONFIG_FILE = "tune.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TuneConfig(_Model):
    """The settings of a run, written to ``tune.json`` before the first trial; ``--resume`` reads them."""

    tool_version: str
    data: DataRef
    arch: Literal["cnn", "mlp"]
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    lr: float = Field(gt=0)
    device: str
    seed: int
    trials: int = Field(ge=1)
    seeds: int = Field(ge=1)
    top: int = Field(ge=1)
    study: str
    storage: str  # as shown: the password hidden (never written)
    storage_default: bool  # the SQLite study.db of the output folder
    heartbeat_s: int = Field(ge=1)
    workers: int = Field(ge=1)
    spec: dict[str, Any]  # the spec the advisor's plan was made for
    space: SearchSpace
    space_file: str | None = None
    advisor_ops: list[Op]
    advisor_sites: list[SiteRecord]

    @property
    def rerun_seeds(self) -> list[int]:
        return [self.seed + 1 + i for i in range(self.seeds)]


class TrialRecord(_Model):
    number: int
    state: Literal["complete", "pruned", "failed", "running", "waiting"]
    value: float | None  # the objective: last epoch's validation loss (complete trials)
    params: dict[str, Any]
    label: str | None  # "advisor conv=0.25 fc=0.5"
    seed: int | None = None
    seconds: float | None = None
    worker: str | None = None
    epochs: int = 0  # epochs trained (fewer when pruned)
    val_loss: list[float] = Field(default_factory=list)
    val_acc: list[float] = Field(default_factory=list)
    test_acc: list[float] = Field(default_factory=list)
    note: str | None = None  # surplus, interrupted, diverged, or why a trial failed


class StudySummary(_Model):
    complete: int
    pruned: int
    failed: int
    running: int
    surplus: int  # failed on purpose: raced past the target; never sampled or trained
    interrupted: int
    lost: int  # failed without a record: the worker died (heartbeat) or the trial errored
    best_trial: int | None
    best_value: float | None


class RerunRun(_Model):
    seed: int
    test_acc: float
    test_loss: float
    val_loss: float
    val_acc: float
    best_epoch: int
    seconds: float


class ConfigResult(_Model):
    role: Literal["top", "advisor", "none"]
    rank: int | None = None  # 1.. for the top configurations, by search value
    label: str
    params: dict[str, Any] | None
    sites: list[SiteRecord]
    trials: list[int]  # the search trials with these parameters
    search_value: float | None  # the best of those trials' validation losses
    runs: list[RerunRun]
    test_acc_mean: float
    test_acc_std: float | None
    test_loss_mean: float
    val_loss_mean: float
    best: bool = False


class Comparison(_Model):
    role: Literal["advisor", "none", "top"]  # report.comparisons holds the plan and no dropout; rows judge tops too
    label: str
    against: str  # the best configuration's label
    delta_mean: float  # mean over seeds of (this - best) test accuracy
    deltas: list[float]
    p_value: float | None  # paired t-test; None with one seed, 1.0 when every seed gives the same difference 0
    ci95: tuple[float, float] | None  # of the mean difference, from the paired t distribution (2+ seeds)
    noise: float  # the larger of the interval's half-width and the shared test set's sampling error
    verdict: Literal["same", "within-noise", "worse", "better"]


class TuneReport(_Model):
    schema_version: int = REPORT_SCHEMA_VERSION
    tool_version: str
    config: TuneConfig
    objective: str
    noise_rule: str = NOISE_RULE
    study: StudySummary
    importances: dict[str, float] | None
    importance_note: str | None = None
    configs: list[ConfigResult]
    comparisons: list[Comparison]
    trials: list[TrialRecord]
    n_test: int
    warnings: list[str] = Field(default_factory=list)
    search_s: float = 0.0
    rerun_s: float = 0.0

    @property
    def best(self) -> ConfigResult | None:
        return next((c for c in self.configs if c.best), None)
