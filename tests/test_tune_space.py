"""The search space tune derives from the advisor's plan, and --space files that narrow or widen it."""

from __future__ import annotations

import pytest

from advisor.errors import UsageError
from advisor.experiment.variants import advisor_spec, hand_blueprint, plan_blueprint, select_variants
from advisor.recommend import recommend
from advisor.spec import Spec
from advisor.tune.space import SearchSpace, apply_space_file, derive_space, load_space_file


def _space(arch: str, **spec: object) -> tuple[SearchSpace, object]:
    values = {**advisor_spec(arch, samples=1000).model_dump(exclude_none=True), **spec}  # type: ignore[arg-type]
    plan = recommend(Spec(**values))
    return derive_space(plan, arch), plan  # type: ignore[arg-type]


def _sites(bp):
    return [(s.position, s.kind, s.p) for s in bp.sites]


def test_cnn_space_offers_experiments_placements_and_the_plan():
    space, _ = _space("cnn")
    names = [p.name for p in space.placements]
    assert names == ["none", "advisor", "fc-only", "conv-relu-drop", "after-pool"]


def test_a_placement_identical_to_the_plan_is_one_choice_with_an_alias():
    space, _ = _space("cnn")
    assert space.placement("advisor").aliases == ["dropout2d"]
    mlp, _ = _space("mlp")
    assert mlp.placement("advisor").aliases == ["input-hidden"]


def test_each_group_is_searched_from_zero_to_the_upper_end_of_its_cited_range():
    space, plan = _space("cnn")
    conv, fc = space.group("conv"), space.group("fc")
    cited = {s.id: s.p_range for s in plan.sites}
    assert (conv.low, conv.high) == (0.0, max(cited["S1"][1], cited["S2"][1]))
    assert (fc.low, fc.high) == (0.0, cited["S3"][1])
    assert "DRP005" in conv.recommendations
    assert f"cited range {min(cited['S1'][0], cited['S2'][0]):g}–{conv.high:g}" in conv.source


def test_the_plan_itself_is_a_point_of_the_space():
    space, plan = _space("cnn")
    rates = {s.id: s.p for s in plan.sites}
    assert space.advisor_params == {
        "placement": "advisor",
        "p_conv": max(rates["S1"], rates["S2"]),
        "p_fc": rates["S3"],
    }
    assert _sites(space.blueprint(space.advisor_params)) == _sites(plan_blueprint(plan))


def test_shallower_sites_keep_the_plans_rise_with_depth():
    space, plan = _space("cnn", underfitting=True)  # this plan's conv rates rise with depth
    rates = {s.id: s.p for s in plan.sites}
    assert rates["S1"] < rates["S2"]
    ratio = rates["S1"] / rates["S2"]
    bp = space.blueprint({"placement": "after-pool", "p_conv": 0.2, "p_fc": 0.3})
    assert _sites(bp) == [(4, "dropout", round(0.2 * ratio, 6)), (7, "dropout", 0.2), (10, "dropout", 0.3)]
    assert _sites(space.blueprint(space.advisor_params)) == _sites(plan_blueprint(plan))


def test_the_none_placement_builds_the_network_without_dropout():
    space, _ = _space("mlp")
    assert _sites(space.blueprint({"placement": "none"})) == []
    assert space.blueprint({"placement": "none"}).ops == hand_blueprint(select_variants("mlp", ["none"])[0]).ops


def test_a_group_the_plan_leaves_out_falls_back_to_experiments_cited_rate():
    # DRP002 puts input dropout on real-valued inputs only (not on text features): the input group is left out
    space, plan = _space("mlp", modality="text")
    assert all(s.after != "input" for s in plan.sites)
    group = space.group("input")
    assert group.plan_p is None and group.high == 0.2
    assert "Srivastava et al. 2014" in group.source


def test_the_space_fingerprint_changes_with_the_space():
    a, _ = _space("cnn")
    b, _ = _space("cnn", underfitting=True)  # other rates, the same placements
    assert a.fingerprint() == _space("cnn")[0].fingerprint()
    assert a.fingerprint() != b.fingerprint()


# ---- --space files ----


def _apply(tmp_path, text: str, arch: str = "cnn") -> SearchSpace:
    path = tmp_path / "space.toml"
    path.write_text(text)
    space, _ = _space(arch)
    return apply_space_file(space, load_space_file(path), path)


def test_space_file_narrows_the_placements_by_name_or_alias(tmp_path):
    space = _apply(tmp_path, 'placements = ["dropout2d", "none"]\n')
    assert [p.name for p in space.placements] == ["none", "advisor"]


def test_space_file_widens_a_rate_beyond_the_cited_range(tmp_path):
    space = _apply(tmp_path, "[rates.conv]\nhigh = 0.4\nstep = 0.05\n")
    conv = space.group("conv")
    assert (conv.low, conv.high, conv.step) == (0.0, 0.4, 0.05)
    assert space.advisor_inside  # the plan's 0.1 is on the 0.05 grid
    assert not _apply(tmp_path, "[rates.conv]\nhigh = 0.4\nstep = 0.15\n").advisor_inside


def test_space_file_can_fix_a_rate(tmp_path):
    space = _apply(tmp_path, "[rates.fc]\nvalue = 0.3\n")
    assert (space.group("fc").low, space.group("fc").high) == (0.3, 0.3)
    assert not space.advisor_inside  # the plan's 0.5 is outside


def test_space_file_dropping_placements_drops_their_groups(tmp_path):
    space = _apply(tmp_path, 'placements = ["none", "fc-only"]\n')
    assert [g.name for g in space.groups] == ["fc"]
    assert space.advisor is None and not space.advisor_inside


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('placements = ["fc-onyl"]\n', "unknown placement 'fc-onyl'; did you mean 'fc-only'?"),
        ("[rates.conv2]\nhigh = 0.3\n", "unknown rate group 'conv2'; did you mean 'conv'?"),
        ("[rates.conv]\nhigh = 1.5\n", "'high' = 1.5 is not a drop probability"),
        ("[rates.conv]\nlow = 0.3\nhigh = 0.1\n", "low = 0.3 is above high = 0.1"),
        ("[rates.conv]\nvalue = 0.1\nhigh = 0.2\n", "'value' fixes the rate"),
        ("[rates.conv]\nhihg = 0.2\n", "unknown field; did you mean 'high'?"),
        ("placements = []\n", "'placements' is empty"),
        ("[rates.conv\n", "not valid TOML"),
        ("[rates.conv]\nlow = 0.3\n[rates.fc]\nhigh = -1\n", "'high' = -1 is not a drop probability"),
    ],
)
def test_bad_space_files_are_usage_errors_naming_the_problem(tmp_path, text, message):
    with pytest.raises(UsageError) as err:
        _apply(tmp_path, text)
    assert message in err.value.message
    assert str(tmp_path / "space.toml") in err.value.message


def test_a_low_above_the_cited_high_is_refused(tmp_path):
    high = _space("cnn")[0].group("conv").high
    with pytest.raises(UsageError) as err:
        _apply(tmp_path, "[rates.conv]\nlow = 0.9\n")
    assert f"low 0.9 is above high {high:g}" in err.value.message


def test_a_fine_tuning_plan_without_dropout_is_the_none_placement():
    space, plan = _space("mlp", regime="fine-tuning")
    assert plan.sites == []
    assert space.placement("advisor").sites == [] and "none" in space.placement("advisor").aliases
    assert space.advisor_params == {"placement": "advisor"}


def test_a_base_recipe_shapes_the_space():
    space, plan = _space("cnn", base="alexnet")
    assert [(s.after, s.before) for s in plan.sites] == [("flatten", "linear")]
    head = space.group("head")
    assert head.plan_p == plan.sites[0].p and head.high == plan.sites[0].p_range[1]


def test_a_missing_space_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_space_file(tmp_path / "nope.toml")
