"""The engine: golden plans for canonical architectures, the literature's rate responses, and
properties that must hold for every valid spec."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from advisor.recommend import recommend
from advisor.spec import Spec

GOLDEN = Path(__file__).parent / "golden" / "plans"

CANONICAL = {
    "vgg_cnn": Spec(arch="cnn", layers=5, pooling="max", head="fc", fc_layers=2, samples=1_200_000),
    "resnet": Spec(arch="resnet", layers=16),
    "wrn": Spec(arch="resnet", layers=12, wide=True, samples=50_000),
    "lstm_lm": Spec(arch="rnn", layers=2, width=650, cell="lstm", rnn_task="lm"),
    "bert_finetune": Spec(
        arch="transformer",
        transformer="encoder",
        norm="post",
        layers=12,
        width=768,
        regime="fine-tuning",
        params=110_000_000,
    ),
    "decoder_pretraining": Spec(
        arch="transformer",
        transformer="decoder",
        layers=32,
        width=4096,
        regime="pretraining",
        params=7_000_000_000,
    ),
    "gcn": Spec(arch="gnn", gnn="gcn", layers=2),
    "selu_mlp": Spec(arch="mlp", layers=3, activation="selu"),
}


@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_golden_plan(name):
    plan = recommend(CANONICAL[name])
    got = json.dumps(plan.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert got == path.read_text(encoding="utf-8"), f"plan for {name} changed; review and UPDATE_GOLDEN=1"


def _sites(plan, kind=None):
    return [s for s in plan.sites if kind is None or s.kind == kind]


def test_vgg_style_cnn_drops_fc_head_at_half_and_conv_stack_lower():
    plan = recommend(CANONICAL["vgg_cnn"])
    head = [s for s in plan.sites if "DRP003" in s.recommendations]
    conv = [s for s in plan.sites if "DRP005" in s.recommendations]
    assert len(head) == 2 and all(s.p == 0.5 for s in head)
    assert conv and max(s.p for s in conv) < min(s.p for s in head)
    # Rates rise with depth in the conv stack.
    assert [s.p for s in conv] == sorted(s.p for s in conv) and conv[0].p < conv[-1].p
    assert all(s.kind == "dropout2d" for s in conv)
    assert plan.sites[-1].before == "output"  # dropout before the last Linear, never after it


def test_resnet_gets_no_dropout_in_blocks_and_warns_before_batchnorm():
    plan = recommend(CANONICAL["resnet"])
    assert all(s.kind == "drop-path" for s in plan.sites)
    assert any("DRP101" in a.recommendations for a in plan.avoid)
    assert any("DRP008" in n.recommendations for n in plan.notes)


def test_shallow_resnet_has_no_sites_until_it_overfits():
    assert recommend(Spec(arch="resnet", layers=8)).sites == []
    overfit = recommend(Spec(arch="resnet", layers=8, overfitting="strong"))
    assert [s.before for s in overfit.sites] == ["output"]


def test_wrn_puts_dropout_between_the_two_convs_and_never_on_identity():
    plan = recommend(CANONICAL["wrn"])
    assert len(plan.sites) == 12
    for s in plan.sites:
        assert (s.after, s.before) == ("activation", "conv") and s.p == 0.3
    assert any("identity" in a.where for a in plan.avoid)


def test_lstm_lm_uses_between_layer_argument_only_with_two_layers():
    plan = recommend(CANONICAL["lstm_lm"])
    between = [s for s in plan.sites if (s.after, s.before) == ("rnn-layer", "rnn-layer")]
    assert len(between) == 1 and between[0].module.startswith("nn.LSTM(")
    single = recommend(Spec(arch="rnn", layers=1, rnn_task="classifier"))
    assert not any("dropout=" in s.module for s in single.sites)
    assert any("DRP304" in n.recommendations for n in single.notes)
    assert any("recurrent" in a.where for a in plan.avoid)


def test_large_pretraining_disables_dropout():
    plan = recommend(CANONICAL["decoder_pretraining"])
    assert plan.sites == []
    assert "DRP022" in plan.notes[0].recommendations


def test_bert_finetuning_keeps_point_one_everywhere():
    plan = recommend(CANONICAL["bert_finetune"])
    kinds = {s.kind for s in plan.sites}
    assert {"dropout", "attention-dropout"} <= kinds
    assert all(s.p == 0.1 for s in plan.sites)
    assert plan.sites[-1].before == "output"


def test_selu_gets_alpha_dropout_only():
    plan = recommend(CANONICAL["selu_mlp"])
    assert plan.sites and all(s.kind == "alpha-dropout" for s in plan.sites)


def test_gcn_drops_the_input_of_each_graph_convolution():
    plan = recommend(CANONICAL["gcn"])
    assert len(plan.sites) == 2 and all(s.p == 0.5 for s in plan.sites)


def test_more_data_lowers_and_strong_overfitting_raises_rates():
    base = Spec(arch="mlp", layers=2)
    small = recommend(base.model_copy(update={"samples": 2_000, "overfitting": "strong"}))
    large = recommend(base.model_copy(update={"samples": 50_000_000}))
    plain = recommend(base)
    for a, b, c in zip(small.sites, plain.sites, large.sites, strict=True):
        assert a.p >= b.p >= c.p
    assert small.sites[-1].p > large.sites[-1].p
    assert "DRP201" in small.sites[-1].recommendations


def test_underfitting_lowers_rates_and_schedules_early_dropout():
    plan = recommend(Spec(arch="mlp", underfitting=True))
    assert all(s.schedule == "early" and s.p == s.p_range[0] for s in plan.sites)
    assert any("DRP202" in n.recommendations for n in plan.notes)


def test_mc_dropout_note_when_uncertainty_wanted():
    plan = recommend(Spec(arch="resnet", layers=8, uncertainty=True))
    assert any("DRP308" in n.recommendations for n in plan.notes)
    assert plan.sites, "MC dropout needs at least one dropout site"


def test_adding_a_recommendation_file_changes_advice(tmp_path):
    import shutil

    from advisor.knowledge import data_root, load

    root = tmp_path / "knowledge"
    shutil.copytree(data_root(), root)
    src = (root / "recommendations" / "DRP020.toml").read_text(encoding="utf-8")
    new = (
        src.replace('id = "DRP020"', 'id = "DRP099"')
        .replace('transformer = ["encoder"]', 'transformer = ["decoder"]')
        .replace('after = "global-pool", before = "output"', 'after = "layernorm", before = "output"')
    )
    assert new.count("DRP099") == 1 and 'after = "layernorm"' in new
    (root / "recommendations" / "DRP099.toml").write_text(new, encoding="utf-8")
    kb = load(root)
    spec = Spec(arch="transformer", transformer="decoder")
    assert "DRP099" not in {r for s in recommend(spec).sites for r in s.recommendations}
    assert "DRP099" in {r for s in recommend(spec, kb).sites for r in s.recommendations}


# ---- properties over valid specs ----

specs = st.builds(
    dict,
    arch=st.sampled_from(["mlp", "cnn", "resnet", "rnn", "transformer", "gnn"]),
    layers=st.integers(1, 40),
    width=st.integers(1, 4096),
    batch_norm=st.none() | st.booleans(),
    activation=st.none() | st.sampled_from(["relu", "gelu", "tanh", "selu", "silu"]),
    pooling=st.none() | st.sampled_from(["max", "avg", "none"]),
    head=st.none() | st.sampled_from(["fc", "gap"]),
    fc_layers=st.none() | st.integers(0, 4),
    wide=st.none() | st.booleans(),
    cell=st.none() | st.sampled_from(["lstm", "gru"]),
    rnn_task=st.none() | st.sampled_from(["lm", "classifier", "seq2seq"]),
    embeddings=st.none() | st.booleans(),
    transformer=st.none() | st.sampled_from(["encoder", "decoder", "encoder-decoder"]),
    norm=st.none() | st.sampled_from(["pre", "post"]),
    gnn=st.none() | st.sampled_from(["gcn", "gat"]),
    samples=st.none() | st.integers(1, 10**10),
    params=st.none() | st.integers(1, 10**11),
    modality=st.none() | st.sampled_from(["tabular", "image", "text", "graph"]),
    regime=st.sampled_from(["scratch", "fine-tuning", "pretraining"]),
    overfitting=st.sampled_from(["none", "mild", "unknown"]),
    uncertainty=st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=specs)
def test_plan_properties(values, kb):
    try:
        spec = Spec(**values)
    except ValidationError:
        assume(False)  # combinations the spec rejects on purpose (e.g. a ResNet without BatchNorm)
    plan = recommend(spec, kb)
    assert plan == recommend(spec, kb), "the plan must be deterministic"
    positions = [s.position for s in plan.sites]
    assert len(positions) == len(set(positions))
    for s in plan.sites:
        assert 0 <= s.p < 1
        assert s.p_range[0] <= s.p_range[1] < 1
        assert plan.layers[s.position].kind != "batchnorm", "no dropout directly before BatchNorm"
        assert plan.layers[s.position - 1].kind != "output", "no dropout after the output layer"
        assert s.recommendations and set(s.recommendations) <= set(kb.recommendations)
        assert s.citations and set(s.citations) <= set(kb.citations)
    for a in plan.avoid:
        assert set(a.citations) <= set(kb.citations)


def test_bigger_model_on_fixed_data_gets_more_dropout():
    small_model = recommend(Spec(arch="cnn", layers=3, samples=50_000, params=1_000_000))
    big_model = recommend(Spec(arch="cnn", layers=3, samples=50_000, params=500_000_000))
    assert sum(s.p for s in big_model.sites) > sum(s.p for s in small_model.sites)
    assert any("parameters per training example" in s.reason for s in big_model.sites)
