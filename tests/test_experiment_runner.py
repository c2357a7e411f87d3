"""The seeded training loop: reproducible, identical starts, Ctrl-C keeps finished runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from advisor.errors import DeviceError
from advisor.experiment import runner
from advisor.experiment.results import ExperimentConfig
from advisor.experiment.variants import Blueprint, DropSite, hand_blueprint, select_variants


def _config(**kw) -> ExperimentConfig:
    base = {
        "dataset": "digits",
        "arch": "cnn",
        "variants": ["none", "dropout2d"],
        "seeds": [0],
        "epochs": 2,
        "batch_size": 64,
        "lr": 0.003,
        "train_fraction": 0.2,
        "device": "cpu",
    }
    base.update(kw)
    return ExperimentConfig(**base)


def _numbers(result):
    return [(r.variant, r.seed, [e.model_dump() for e in r.epochs], r.best_epoch) for r in result.runs]


def test_the_same_config_twice_gives_the_same_numbers():
    a = runner.run_experiment(_config())
    b = runner.run_experiment(_config())
    assert _numbers(a) == _numbers(b)
    assert [s.model_dump() for s in a.ranking] == [s.model_dump() for s in b.ranking]


def test_another_seed_gives_other_numbers():
    a = runner.run_experiment(_config(variants=["none"], seeds=[0]))
    b = runner.run_experiment(_config(variants=["none"], seeds=[1]))
    assert a.runs[0].epochs[-1].val_loss != b.runs[0].epochs[-1].val_loss


@pytest.fixture
def one_thread():
    # train_run on its own leaves threads alone (execute sets them); two threads on a busy 2-core box crawl.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_zero_rate_dropout_trains_exactly_like_no_dropout(one_thread):
    # Same initial weights and same batches: a p=0 site must change nothing at all.
    setup = runner.prepare(_config(variants=["none"]))
    none = setup.blueprints["none"]
    zero = Blueprint(
        ops=none.ops,
        sites=tuple(
            DropSite(s.position, "dropout", 0.0, s.after, s.before)
            for s in hand_blueprint(select_variants("cnn", ["conv-relu-drop"])[0]).sites
        ),
    )
    data = runner._tensors(setup.split, "cpu")
    kw: dict[str, Any] = {"seed": 3, "epochs": 2, "batch_size": 64, "lr": 0.003, "device": "cpu"}
    a = runner.train_run("none", none, setup.split, data, **kw)
    b = runner.train_run("zero", zero, setup.split, data, **kw)
    assert [e.model_dump() for e in a.epochs] == [e.model_dump() for e in b.epochs]


def test_every_epoch_is_recorded_with_the_best_validation_epoch():
    result = runner.run_experiment(_config(variants=["none"], epochs=3))
    run = result.runs[0]
    assert [e.epoch for e in run.epochs] == [1, 2, 3]
    assert run.epochs[run.best_epoch - 1].val_loss == min(e.val_loss for e in run.epochs)


def test_thread_count_is_restored_after_the_run():
    before = torch.get_num_threads()
    runner.run_experiment(_config(variants=["none"], epochs=1))
    assert torch.get_num_threads() == before


def test_progress_reports_every_epoch_of_every_run():
    seen = []
    runner.run_experiment(_config(epochs=2), progress=lambda done, total, label: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_ctrl_c_keeps_the_finished_runs(monkeypatch):
    real = runner.train_run
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train_run", flaky)
    with pytest.raises(runner.ExperimentInterrupted) as info:
        runner.run_experiment(_config())
    partial = info.value.partial
    assert not partial.complete
    assert [r.variant for r in partial.runs] == ["none"]
    assert partial.runs_expected == 2
    assert [s.name for s in partial.ranking] == ["none"]
    assert info.value.exit_code == 130


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_device_error():
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        runner.resolve_device("cuda")


def test_auto_device_falls_back_to_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runner.resolve_device("auto") == "cpu"


def test_default_threads_is_one_or_two():
    assert runner.default_threads() in (1, 2)


def test_a_plan_that_matches_a_hand_written_variant_is_marked_as_its_twin(monkeypatch):
    import advisor.recommend
    from advisor.plan import Plan, PlanSite

    hand = hand_blueprint(select_variants("mlp", ["hidden-only"])[0])
    ops = list(hand.ops)
    sites = [
        PlanSite(
            id=f"S{i}",
            position=d.position,
            after=d.after,
            before=d.before,
            after_label="a",
            before_label="b",
            kind=d.kind,
            module="nn.Dropout",
            p=d.p,
            p_range=(0.1, 0.5),
            reason="r",
            recommendations=["DRP001"],
            citations=[],
        )
        for i, d in enumerate(hand.sites)
    ]
    plan = Plan(spec={"arch": "mlp"}, layers=ops, sites=sites, avoid=[], notes=[])
    monkeypatch.setattr(advisor.recommend, "recommend", lambda spec: plan)
    setup = runner.prepare(_config(dataset="wine", arch="mlp", variants=["hidden-only", "input-hidden", "advisor"]))
    same = {i.name: i.same_as for i in setup.infos}
    assert same == {"hidden-only": ["advisor"], "input-hidden": [], "advisor": ["hidden-only"]}
    assert [s.recommendations for s in setup.infos[2].sites] == [["DRP001"], ["DRP001"]]
