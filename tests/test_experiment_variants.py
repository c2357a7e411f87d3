"""The experiment's variants: where each puts dropout, and the builder shared with the advisor's plan."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import nn

from advisor.errors import UsageError
from advisor.experiment.datasets import Arch
from advisor.experiment.variants import (
    ADVISOR,
    VARIANTS,
    PlanMappingError,
    advisor_spec,
    base_ops,
    build_model,
    hand_blueprint,
    plan_blueprint,
    select_variants,
)
from advisor.plan import Op, Plan, PlanSite

DIGITS = ((1, 8, 8), 10)


def _built(name: str, arch: Arch = "cnn", shape=(1, 8, 8), classes=10) -> nn.Sequential:
    torch.manual_seed(0)
    return build_model(hand_blueprint(VARIANTS[arch][name]), shape, classes)


def _kinds(model: nn.Sequential) -> list[str]:
    return [type(m).__name__ for m in model]


def _after(model: nn.Sequential, cls: type) -> list[str]:
    """The class names of the modules right before each ``cls`` module."""
    mods = list(model)
    return [type(mods[i - 1]).__name__ for i, m in enumerate(mods) if isinstance(m, cls)]


@pytest.mark.parametrize("name", [n for n in VARIANTS["cnn"] if n != ADVISOR])
def test_every_cnn_variant_maps_8x8_digits_to_10_logits(name):
    model = _built(name).eval()
    assert model(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


@pytest.mark.parametrize("name", [n for n in VARIANTS["mlp"] if n != ADVISOR])
def test_every_mlp_variant_maps_features_to_logits(name):
    model = _built(name, "mlp", (30,), 2).eval()
    assert model(torch.zeros(4, 30)).shape == (4, 2)


def test_none_has_no_dropout():
    assert not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in _built("none"))


def test_fc_only_drops_the_head_at_half_and_nothing_in_the_conv_stack():
    model = _built("fc-only")
    drops = [m for m in model if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.5]
    assert _after(model, nn.Dropout) == ["ReLU"]
    assert isinstance(model.output, nn.Linear) and list(model)[-2] is drops[0]


def test_conv_relu_drop_is_conv_relu_drop_pool_at_rising_rates():
    model = _built("conv-relu-drop")
    kinds = _kinds(model)
    assert kinds[:4] == ["Conv2d", "ReLU", "Dropout", "MaxPool2d"]
    assert [m.p for m in model if isinstance(m, nn.Dropout)] == [0.1, 0.2, 0.5]


def test_after_pool_drops_after_each_max_pool():
    model = _built("after-pool")
    assert _after(model, nn.Dropout)[:2] == ["MaxPool2d", "MaxPool2d"]


def test_dropout2d_variant_drops_whole_channels_in_the_conv_stack():
    model = _built("dropout2d")
    assert len([m for m in model if isinstance(m, nn.Dropout2d)]) == 2
    assert _after(model, nn.Dropout2d) == ["ReLU", "ReLU"]


def test_drop_before_bn_drops_right_before_each_batchnorm():
    model = _built("drop-before-bn")
    assert _after(model, nn.BatchNorm2d) == ["Dropout", "Dropout"]


BN_VARIANTS = ("drop-before-bn", "bn-only", "bn-then-drop")


def test_only_drop_before_bn_and_its_two_controls_have_batchnorm():
    with_bn = [n for n in VARIANTS["cnn"] if n != ADVISOR and any(isinstance(m, nn.BatchNorm2d) for m in _built(n))]
    assert sorted(with_bn) == sorted(BN_VARIANTS)


@pytest.mark.parametrize("name", ["bn-only", "bn-then-drop"])
def test_bn_controls_are_in_the_default_variant_list(name):
    from advisor.experiment import VARIANT_NAMES

    assert name in [v.name for v in select_variants("cnn", None)]
    assert name in VARIANT_NAMES["cnn"]


@pytest.mark.parametrize("name", ["bn-only", "bn-then-drop"])
def test_bn_controls_have_a_batchnorm_between_each_conv_and_its_relu(name):
    kinds = _kinds(_built(name))
    convs = [i for i, k in enumerate(kinds) if k == "Conv2d"]
    assert len(convs) == 2
    assert all(kinds[i + 1 : i + 3] == ["BatchNorm2d", "ReLU"] for i in convs)


def test_bn_only_has_no_dropout_in_the_conv_stack_and_half_in_the_head():
    model = _built("bn-only")
    kinds = _kinds(model)
    assert "Dropout" not in kinds[: kinds.index("Flatten")]
    assert [m.p for m in model if isinstance(m, nn.modules.dropout._DropoutNd)] == [0.5]
    assert kinds[-3:] == ["ReLU", "Dropout", "Linear"]


def test_bn_only_differs_from_fc_only_by_the_batchnorms_alone():
    strip = [k for k in _kinds(_built("bn-only")) if k != "BatchNorm2d"]
    assert strip == _kinds(_built("fc-only"))


def test_bn_then_drop_is_conv_bn_relu_drop_pool_in_each_block():
    kinds = _kinds(_built("bn-then-drop"))
    block = ["Conv2d", "BatchNorm2d", "ReLU", "Dropout", "MaxPool2d"]
    assert kinds[:10] == block * 2
    assert kinds[-3:] == ["ReLU", "Dropout", "Linear"]


def test_bn_then_drop_never_puts_dropout_right_before_a_batchnorm():
    model = _built("bn-then-drop")
    mods = list(model)
    assert not any(isinstance(a, nn.Dropout) and isinstance(b, nn.BatchNorm2d) for a, b in pairwise(mods))


def test_every_conv_dropout_of_bn_then_drop_follows_the_relu_after_a_batchnorm():
    mods = list(_built("bn-then-drop"))
    conv_drops = [i for i, m in enumerate(mods) if isinstance(m, nn.Dropout) and isinstance(mods[i + 1], nn.MaxPool2d)]
    assert len(conv_drops) == 2
    assert all(isinstance(mods[i - 1], nn.ReLU) and isinstance(mods[i - 2], nn.BatchNorm2d) for i in conv_drops)


def test_bn_then_drop_uses_the_same_rates_as_drop_before_bn():
    def rates(name: str) -> list[float]:
        return [m.p for m in _built(name) if isinstance(m, nn.Dropout)]

    assert rates("bn-then-drop") == rates("drop-before-bn") == [0.1, 0.2, 0.5]


def _executed(model: nn.Sequential, x: torch.Tensor) -> list[str]:
    """The class names of the leaf modules in the order a forward pass runs them."""
    order: list[str] = []
    handles = [
        m.register_forward_hook(lambda mod, args, out: order.append(type(mod).__name__))
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        model.train()(x)
    finally:
        for h in handles:
            h.remove()
    return order


@pytest.mark.parametrize(("name", "feeds_bn"), [("drop-before-bn", True), ("bn-only", False), ("bn-then-drop", False)])
def test_forward_pass_runs_a_dropout_straight_into_batchnorm_only_in_the_anti_pattern(name, feeds_bn):
    torch.manual_seed(0)
    order = _executed(_built(name), torch.randn(4, 1, 8, 8))
    pairs = list(pairwise(order))
    assert (("Dropout", "BatchNorm2d") in pairs) is feeds_bn


def test_forward_pass_of_bn_then_drop_runs_bn_relu_drop_in_each_conv_block():
    torch.manual_seed(0)
    order = _executed(_built("bn-then-drop"), torch.randn(4, 1, 8, 8))
    drops = [i for i, k in enumerate(order) if k == "Dropout"]
    assert len(drops) == 3
    for i in drops[:2]:
        assert order[i - 2 : i + 2] == ["BatchNorm2d", "ReLU", "Dropout", "MaxPool2d"]


@pytest.mark.parametrize(("name", "flagged"), [("drop-before-bn", 2), ("bn-only", 0), ("bn-then-drop", 0)])
def test_the_auditor_flags_dropout_before_batchnorm_only_in_the_anti_pattern(name, flagged):
    from advisor.audit.api import audit

    torch.manual_seed(0)
    report = audit(_built(name), torch.randn(4, 1, 8, 8))
    assert sum(f.slug == "dropout-before-batchnorm" for f in report.findings) == flagged


def test_mlp_input_hidden_is_srivastavas_0_2_and_0_5():
    model = _built("input-hidden", "mlp", (30,), 2)
    first = model[0]
    assert isinstance(first, nn.Dropout) and first.p == 0.2
    assert [m.p for m in model if isinstance(m, nn.Dropout)] == [0.2, 0.5, 0.5]


def test_mlp_hidden_only_leaves_the_inputs_alone():
    model = _built("hidden-only", "mlp", (30,), 2)
    assert isinstance(model[0], nn.Linear)
    assert [m.p for m in model if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_one_seed_gives_every_variant_the_same_initial_weights():
    ref = _built("none").state_dict()
    for name in ("fc-only", "conv-relu-drop", "dropout2d", "drop-before-bn", "bn-only", "bn-then-drop"):
        sd = _built(name).state_dict()
        for key, value in ref.items():
            assert torch.equal(sd[key], value), (name, key)


def test_select_variants_keeps_the_order_given_and_drops_repeats():
    chosen = select_variants("cnn", ["dropout2d", "none", "dropout2d"])
    assert [v.name for v in chosen] == ["dropout2d", "none"]


def test_no_selection_means_every_variant_of_the_family():
    assert [v.name for v in select_variants("mlp", None)] == list(VARIANTS["mlp"])


def test_unknown_variant_gets_a_close_match():
    with pytest.raises(UsageError, match="did you mean 'fc-only'"):
        select_variants("cnn", ["fc-onyl"])


def test_variant_of_the_other_family_says_so():
    with pytest.raises(UsageError, match="it is a mlp variant"):
        select_variants("cnn", ["input-hidden"])


# ---- the builder against hand-made plans ----


def _site(position: int, ops: list[Op], kind: str, p: float) -> PlanSite:
    a, b = ops[position - 1], ops[position]
    return PlanSite(
        id="S1",
        position=position,
        after=a.kind,
        before=b.kind,
        after_label=a.label,
        before_label=b.label,
        kind=kind,
        module="nn.Dropout",
        p=p,
        p_range=(0.0, 0.5),
        reason="test",
        recommendations=["DRP999"],
        citations=[],
    )


def _plan(ops: list[Op], sites: list[PlanSite]) -> Plan:
    return Plan(spec={"arch": "cnn"}, layers=ops, sites=sites, avoid=[], notes=[])


def test_plan_sites_become_modules_before_the_op_at_their_position():
    ops = base_ops("cnn")
    pool = next(i for i, o in enumerate(ops) if o.kind == "pool")
    out = len(ops) - 1
    plan = _plan(ops, [_site(pool, ops, "dropout2d", 0.15), _site(out, ops, "dropout", 0.4)])
    model = build_model(plan_blueprint(plan), *DIGITS)
    mods = list(model)
    d2 = next(i for i, m in enumerate(mods) if isinstance(m, nn.Dropout2d))
    assert isinstance(mods[d2 + 1], nn.MaxPool2d) and mods[d2].p == 0.15
    assert isinstance(mods[-2], nn.Dropout) and mods[-2].p == 0.4


def test_alpha_dropout_sites_build_alpha_dropout():
    ops = base_ops("mlp")
    model = build_model(plan_blueprint(_plan(ops, [_site(1, ops, "alpha-dropout", 0.05)])), (13,), 3)
    assert isinstance(model[0], nn.AlphaDropout)


def test_a_plan_with_an_unbuildable_operation_is_a_plan_mapping_error():
    ops = [Op(kind="input", label="in"), Op(kind="attention", label="self-attention"), Op(kind="output", label="out")]
    with pytest.raises(PlanMappingError, match="attention"):
        build_model(plan_blueprint(_plan(ops, [])), (13,), 3)


def test_channel_dropout_on_flat_features_is_a_plan_mapping_error():
    ops = base_ops("mlp")
    with pytest.raises(PlanMappingError, match="not feature maps"):
        build_model(plan_blueprint(_plan(ops, [_site(1, ops, "dropout2d", 0.1)])), (13,), 3)


def test_an_unsupported_dropout_kind_is_a_plan_mapping_error():
    ops = base_ops("mlp")
    with pytest.raises(PlanMappingError, match="drop-path"):
        build_model(plan_blueprint(_plan(ops, [_site(1, ops, "drop-path", 0.1)])), (13,), 3)


# ---- the real engine ----


@pytest.mark.parametrize(("arch", "shape", "classes"), [("cnn", (1, 8, 8), 10), ("mlp", (30,), 2)])
def test_advisor_variant_holds_exactly_the_dropout_modules_its_plan_asks_for(arch, shape, classes):
    recommend = pytest.importorskip("advisor.recommend").recommend
    plan = recommend(advisor_spec(arch, samples=1000))
    model = build_model(plan_blueprint(plan), shape, classes)
    classes_by_kind = {"dropout": nn.Dropout, "dropout2d": nn.Dropout2d, "alpha-dropout": nn.AlphaDropout}
    wanted = sorted((s.kind, s.p) for s in plan.sites if s.kind != "none")
    found = sorted((kind, m.p) for m in model for kind, cls in classes_by_kind.items() if type(m) is cls)
    assert found == wanted
    assert model.eval()(torch.zeros(2, *shape)).shape == (2, classes)


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_base_network_has_the_engines_layout_for_the_same_spec(arch):
    recommend = pytest.importorskip("advisor.recommend").recommend
    plan = recommend(advisor_spec(arch, samples=1000))
    assert [o.kind for o in plan.layers] == [o.kind for o in base_ops(arch)]
