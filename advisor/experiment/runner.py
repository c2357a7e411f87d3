"""The training loop: every variant trained from the same initial weights on the same batches.

For each seed, ``torch.manual_seed(seed)`` comes right before a model is built (so weighted layers, built
in the same order in every variant, start identical) and a separate ``torch.Generator`` seeded with the
same seed draws the epoch permutations (so the data order does not depend on how many random numbers a
variant's dropout consumed). Runs go seed by seed, so a Ctrl-C leaves whole seeds of comparable runs.

Batches are sliced from tensors held in memory instead of going through a ``DataLoader``: the datasets are
a few hundred kilobytes and per-sample collation would cost more than the training itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advisor import __version__
from advisor.errors import DeviceError, Interrupted
from advisor.experiment.datasets import Split, load_split
from advisor.experiment.results import (
    EpochRecord,
    ExperimentConfig,
    ExperimentResult,
    RunResult,
    SiteRecord,
    VariantInfo,
    best_epoch,
    rank,
)
from advisor.experiment.variants import (
    ADVISOR,
    Blueprint,
    Variant,
    advisor_spec,
    build_model,
    count_params,
    hand_blueprint,
    plan_blueprint,
    select_variants,
)

if TYPE_CHECKING:
    import torch

Progress = Callable[[int, int, str], None]  # (epochs done, epochs in total, what is training now)


class ExperimentInterrupted(Interrupted):
    """Ctrl-C during training; ``partial`` holds the runs that finished."""

    def __init__(self, partial: ExperimentResult) -> None:
        super().__init__("interrupted")
        self.partial = partial


def site_records(bp: Blueprint) -> list[SiteRecord]:
    """A blueprint's dropout sites as the results record them (one per site, in network order)."""
    return [
        SiteRecord(
            position=s.position,
            kind=s.kind,
            p=s.p,
            after=s.after,
            before=s.before,
            id=s.id,
            recommendations=list(s.recommendations),
        )
        for s in bp.sites
    ]


def default_threads() -> int:
    # Layers this small gain little from intra-op threads. Two help a little on a quiet machine with cores
    # to spare; on a two-core machine a second OpenMP thread stalls at every barrier as soon as anything
    # else wants a core (epochs measured 5-10x slower), so one thread there.
    cores = os.cpu_count() or 1
    return 2 if cores >= 4 else 1


def resolve_device(name: str) -> str:
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_ok else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is available here", hint="use --device auto or cpu")
    if name == "mps" and not mps_ok:
        raise DeviceError("--device mps: Apple's Metal backend is not available here", hint="use --device auto or cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unknown device '{name}'", hint="choose auto, cpu, cuda or mps")
    return name


@dataclass
class Setup:
    """Everything decided before the first step: data, variants, their blueprints and the device."""

    config: ExperimentConfig
    split: Split
    variants: list[Variant]
    blueprints: dict[str, Blueprint]
    infos: list[VariantInfo]
    device: str
    threads: int
    advisor_spec: dict[str, object] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants if v.name in self.blueprints]

    @property
    def runs_expected(self) -> int:
        return len(self.names) * len(self.config.seeds)


def prepare(config: ExperimentConfig) -> Setup:
    """Load the data, pick the variants, ask the advisor for its plan, build every model once.

    Every user mistake and every unbuildable plan surfaces here, before any training starts.
    """
    import torch

    split = load_split(config.dataset, config.arch, train_fraction=config.train_fraction, seed=config.split_seed)
    variants = select_variants(split.arch, config.variants)
    device = resolve_device(config.device)
    threads = default_threads()
    warnings: list[str] = []
    blueprints: dict[str, Blueprint] = {}
    spec_dump: dict[str, object] | None = None

    with torch.random.fork_rng(devices=[]):  # building here must not move the caller's random state
        base = build_model(hand_blueprint(select_variants(split.arch, ["none"])[0]), split.input_shape, split.n_classes)
    base_shapes = {k: tuple(v.shape) for k, v in base.state_dict().items()}
    for v in variants:
        if v.name != ADVISOR:
            blueprints[v.name] = hand_blueprint(v)
            continue
        spec = advisor_spec(split.arch, samples=len(split.y_train), params=count_params(base))
        spec_dump = spec.model_dump(exclude_none=True)
        try:
            from advisor.recommend import recommend
        except ModuleNotFoundError as exc:
            if exc.name != "advisor.recommend":
                raise
            warnings.append("the 'advisor' variant was skipped: this installation has no recommendation engine")
            continue
        blueprints[v.name] = plan_blueprint(recommend(spec))

    infos: list[VariantInfo] = []
    for v in variants:
        if v.name not in blueprints:
            continue
        bp = blueprints[v.name]
        with torch.random.fork_rng(devices=[]):
            model = build_model(bp, split.input_shape, split.n_classes)
        shapes = {k: tuple(t.shape) for k, t in model.state_dict().items() if not k.startswith("bn")}
        if v.name == ADVISOR and shapes != {k: s for k, s in base_shapes.items() if not k.startswith("bn")}:
            warnings.append(
                "the advisor's plan describes a different network from the base one, so its "
                "'advisor' run does not start from the same weights as the others"
            )
        infos.append(
            VariantInfo(
                name=v.name,
                summary=v.summary,
                source=v.source,
                sites=site_records(bp),
                modules=[f"{name}: {module}" for name, module in model.named_children()],
                params=count_params(model),
            )
        )

    def signature(bp: Blueprint) -> tuple[object, ...]:
        return tuple(o.kind for o in bp.ops), tuple((d.position, d.kind, d.p) for d in bp.sites)

    for info in infos:
        mine = signature(blueprints[info.name])
        info.same_as = [o.name for o in infos if o.name != info.name and signature(blueprints[o.name]) == mine]
    return Setup(
        config=config,
        split=split,
        variants=variants,
        blueprints=blueprints,
        infos=infos,
        device=device,
        threads=threads,
        advisor_spec=spec_dump,
        warnings=warnings,
    )


@dataclass
class _Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _tensors(split: Split, device: str) -> _Data:
    import torch

    def t(a: Any) -> torch.Tensor:
        return torch.from_numpy(a).to(device)

    return _Data(t(split.x_train), t(split.y_train), t(split.x_val), t(split.y_val), t(split.x_test), t(split.y_test))


def _evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, y).item()
        acc = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, acc


def train_run(
    name: str,
    bp: Blueprint,
    split: Split,
    data: _Data,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    device: str,
    on_epoch: Callable[[int], None] | None = None,
    on_record: Callable[[EpochRecord], None] | None = None,
) -> RunResult:
    """Train one variant under one seed; evaluate on train, validation and test after every epoch.

    ``on_record`` sees each epoch's record as soon as it exists (``tune`` reports the validation loss to
    its pruner there, and may stop the run by raising).
    """
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(bp, split.input_shape, split.n_classes).to(device)
    order = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = data.y_train.shape[0]
    records: list[EpochRecord] = []
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=order).to(device)
        total = torch.zeros((), device=device)
        seen = 0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            if idx.numel() < 2 and seen:
                break  # a lone last example would break BatchNorm's batch statistics
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            loss.backward()
            opt.step()
            total += loss.detach() * idx.numel()
            seen += idx.numel()
        train_loss, train_acc = _evaluate(model, data.x_train, data.y_train)
        val_loss, val_acc = _evaluate(model, data.x_val, data.y_val)
        test_loss, test_acc = _evaluate(model, data.x_test, data.y_test)
        records.append(
            EpochRecord(
                epoch=epoch,
                fit_loss=total.item() / max(seen, 1),
                train_loss=train_loss,
                train_acc=train_acc,
                val_loss=val_loss,
                val_acc=val_acc,
                test_loss=test_loss,
                test_acc=test_acc,
            )
        )
        if on_record is not None:
            on_record(records[-1])
        if on_epoch is not None:
            on_epoch(epoch)
    return RunResult(
        variant=name,
        seed=seed,
        epochs=records,
        best_epoch=best_epoch([r.val_loss for r in records]),
        seconds=round(time.perf_counter() - started, 3),
    )


def assemble(setup: Setup, runs: list[RunResult], *, complete: bool, elapsed: float) -> ExperimentResult:
    split = setup.split
    return ExperimentResult(
        tool_version=__version__,
        config=setup.config,
        device=setup.device,
        threads=setup.threads,
        sizes=split.sizes(),
        n_classes=split.n_classes,
        input_shape=list(split.input_shape),
        complete=complete,
        runs_expected=setup.runs_expected,
        advisor_spec=setup.advisor_spec,
        variants=setup.infos,
        ranking=rank(runs, setup.names, n_test=len(split.y_test)),
        runs=runs,
        warnings=setup.warnings,
        elapsed_s=round(elapsed, 2),
    )


def execute(setup: Setup, progress: Progress | None = None) -> ExperimentResult:
    """Train every variant under every seed. Ctrl-C raises :class:`ExperimentInterrupted` with the
    finished runs."""
    import torch

    cfg = setup.config
    started = time.perf_counter()
    runs: list[RunResult] = []
    total = setup.runs_expected * cfg.epochs
    prev_threads = torch.get_num_threads()
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        if setup.device == "cpu":
            torch.set_num_threads(setup.threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        data = _tensors(setup.split, setup.device)
        for s_i, seed in enumerate(cfg.seeds):
            for name in setup.names:
                label = f"{name} · seed {s_i + 1}/{len(cfg.seeds)}"
                done = len(runs) * cfg.epochs

                def tick(epoch: int, done: int = done, label: str = label) -> None:
                    if progress is not None:
                        progress(done + epoch, total, label)

                runs.append(
                    train_run(
                        name,
                        setup.blueprints[name],
                        setup.split,
                        data,
                        seed=seed,
                        epochs=cfg.epochs,
                        batch_size=cfg.batch_size,
                        lr=cfg.lr,
                        device=setup.device,
                        on_epoch=tick,
                    )
                )
    except KeyboardInterrupt:
        raise ExperimentInterrupted(
            assemble(setup, runs, complete=False, elapsed=time.perf_counter() - started)
        ) from None
    finally:
        torch.set_num_threads(prev_threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn
    return assemble(setup, runs, complete=True, elapsed=time.perf_counter() - started)


def run_experiment(config: ExperimentConfig, progress: Progress | None = None) -> ExperimentResult:
    return execute(prepare(config), progress)
