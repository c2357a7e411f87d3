"""Plans edited by hand and plans with only some of a family's sites (as reference recipes have).

Issue 12: hand edits of a site's `after` / `before` / `module` / `kind` / `p` were silently ignored by
`generate --plan`. Each is now honoured or refused with an error naming the site and the field. And a
template renders any subset of its family's sites, including none and sites at p = 0.
"""

from __future__ import annotations

import json

import pytest
from codegen_helpers import dropout_sites, import_file

from advisor.cli import app
from advisor.errors import UsageError
from advisor.generate import generate
from advisor.plan import Plan, PlanSite
from advisor.recommend import recommend
from advisor.spec import Spec

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _edit(plan: Plan, site_id: str, **changes: object) -> Plan:
    sites = [s.model_copy(update=changes) if s.id == site_id else s for s in plan.sites]
    return plan.model_copy(update={"sites": sites})


def _keep(plan: Plan, keep) -> Plan:
    return plan.model_copy(update={"sites": [s for s in plan.sites if keep(s)]})


def _build(plan: Plan, tmp_path, name: str = "model.py"):
    result = generate(plan, output=name)
    path = tmp_path / name
    path.write_text(result.code, encoding="utf-8")
    module = import_file(path)
    return result, module, module.build_model(module.smoke_config())


def _mlp(layers: int, gaps: list[int], p: float = 0.5) -> Plan:
    """An MLP plan with plain dropout (rate p) at the given gap positions, S1, S2, ... in order.

    Built from the engine's layer stack, so the tests do not depend on where the engine puts dropout.
    Positions: 1 is input -> first linear, 3 after hidden layer 1, 5 after hidden layer 2, ...
    """
    plan = recommend(Spec(arch="mlp", layers=layers))
    model = plan.sites[0]
    sites = []
    for n, g in enumerate(gaps, 1):
        a, b = plan.layers[g - 1], plan.layers[g]
        block = a.block if a.block is not None else b.block
        where = {"after": a.kind, "before": b.kind, "after_label": a.label, "before_label": b.label}
        sites.append(model.model_copy(update={"id": f"S{n}", "position": g, "block": block, "p": p, **where}))
    return plan.model_copy(update={"sites": sites})


# ---- p and kind ----


def test_an_edited_rate_is_honoured(tmp_path):
    plan = _edit(_mlp(3, [1, 3, 5, 7]), "S3", p=0.3)
    result, _, model = _build(plan, tmp_path)
    assert "hidden_dropout: tuple[float, ...] = (0.5, 0.3, 0.5)" in result.code
    assert [p for _, p in dropout_sites(model)] == [0.5, 0.5, 0.3, 0.5]


def test_an_edited_kind_is_honoured_where_the_place_takes_it(tmp_path):
    plan = _mlp(2, [1, 3, 5])
    plan = _edit(plan, "S2", kind="alpha-dropout", module="nn.AlphaDropout")
    plan = _edit(plan, "S3", kind="alpha-dropout", module="nn.AlphaDropout")
    _, _, model = _build(plan, tmp_path)
    assert dropout_sites(model) == [("dropout", 0.5), ("alpha-dropout", 0.5), ("alpha-dropout", 0.5)]


def test_residual_dropout_edited_to_drop_path_becomes_drop_path(tmp_path):
    plan = recommend(Spec(arch="transformer", transformer="decoder", layers=2))
    for site in plan.sites:
        if site.before == "residual-add":
            plan = _edit(plan, site.id, kind="drop-path", module="DropPath", p=0.1)
    result, _, model = _build(plan, tmp_path)
    assert "class DropPath(nn.Module)" in result.code
    kinds = [kind for kind, _ in dropout_sites(model)]
    assert kinds.count("drop-path") == 4 and "dropout" in kinds  # the embedding and FFN dropouts stay


def test_a_kind_the_place_cannot_take_is_refused_naming_the_field():
    plan = recommend(Spec(arch="cnn", layers=2))
    first = plan.sites[0].id  # a conv-block site: (B, C, H, W)
    plan = _edit(plan, first, kind="locked-dropout", module="LockedDropout")
    with pytest.raises(UsageError, match=rf"^site {first}: field 'kind' is 'locked-dropout'") as info:
        generate(plan)
    assert "dropout2d" in info.value.hint


def test_a_module_that_contradicts_the_kind_is_refused_naming_the_field():
    plan = _edit(_mlp(2, [3, 5]), "S2", module="nn.AlphaDropout")
    with pytest.raises(UsageError, match=r"^site S2: field 'module' is 'nn.AlphaDropout' \(alpha-dropout\), but"):
        generate(plan)


def test_every_module_recommend_writes_agrees_with_its_kind():
    specs = [
        Spec(arch="mlp"),
        Spec(arch="mlp", activation="selu"),
        Spec(arch="cnn", batch_norm=True, head="gap"),
        Spec(arch="resnet", wide=True, overfitting="strong"),
        Spec(arch="resnet", layers=24),
        Spec(arch="rnn", cell="gru"),
        Spec(arch="rnn", rnn_task="classifier", bidirectional=True),
        Spec(arch="transformer", modality="image"),
        Spec(arch="transformer", transformer="decoder", uncertainty=True),
        Spec(arch="gnn", gnn="gat"),
    ]
    for spec in specs:
        generate(recommend(spec), spec)  # raises on a module/kind disagreement


# ---- where: after / before / block ----


def test_edited_after_and_before_move_the_site_to_the_gap_they_name(tmp_path):
    plan = _mlp(2, [1, 3], p=0.2)  # S1 on the input, S2 after hidden layer 1
    plan = _edit(plan, "S1", after="activation", before="output")  # to the last hidden layer
    result, _, model = _build(plan, tmp_path)
    where = f"{plan.layers[4].label} -> {plan.layers[5].label}"
    assert result.moved == (f"site S1: placed by its after/before at position 5 ({where})",)
    assert "input_dropout" not in result.code
    assert "hidden_dropout: float = 0.2" in result.code
    assert dropout_sites(model) == [("dropout", 0.2), ("dropout", 0.2)]


def test_after_and_before_that_name_no_gap_are_refused():
    plan = _edit(_mlp(2, [3, 5]), "S1", after="pool", before="linear")
    with pytest.raises(UsageError, match=r"^site S1: after 'pool', before 'linear' is no gap") as info:
        generate(plan)
    assert "'layers'" in info.value.hint


def test_after_and_before_that_name_several_gaps_ask_for_the_block():
    plan = _edit(_mlp(3, [1, 7]), "S1", after="activation", before="linear", block=None)
    with pytest.raises(UsageError, match=r"^site S1: after 'activation', before 'linear' matches 2 gaps") as info:
        generate(plan)
    assert info.value.hint == "set the site's 'block' to choose one (0, 1)"


def test_a_block_picks_one_of_several_gaps(tmp_path):
    plan = _edit(_mlp(3, [1, 7], p=0.2), "S1", after="activation", before="linear", block=1)
    result, _, model = _build(plan, tmp_path)
    assert "hidden_dropout: tuple[float | None, ...] = (None, 0.2, 0.2)" in result.code
    assert dropout_sites(model) == [("dropout", 0.2), ("dropout", 0.2)]


def test_a_block_without_the_gap_is_refused_naming_the_blocks_with_it():
    plan = _edit(_mlp(3, [1, 7]), "S1", after="activation", before="linear", block=2)  # block 2 ends in the output
    with pytest.raises(UsageError, match=r"^site S1: after 'activation', before 'linear' is no gap of block 2") as info:
        generate(plan)
    assert info.value.hint == "set the site's 'block' to one that has it (0, 1)"


def test_two_sites_in_one_place_are_refused():
    plan = _edit(_mlp(2, [1, 3]), "S1", after="activation", before="linear", block=0)  # where S2 already is
    with pytest.raises(UsageError, match=r"^site S\d: a second site between"):
        generate(plan)


def test_cli_says_which_sites_it_moved(runner, tmp_path):
    plan = _edit(_mlp(2, [1, 3]), "S1", after="activation", before="output")
    path = tmp_path / "plan.json"
    path.write_text(plan.model_dump_json(), encoding="utf-8")
    result = runner.invoke(app, ["generate", "--plan", str(path), "-o", str(tmp_path / "model.py")])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("note: site S1: placed by its after/before at position 5")


def test_cli_refuses_an_edited_kind_with_one_error_line(runner, tmp_path):
    data = json.loads(recommend(Spec(arch="cnn", layers=2)).model_dump_json())
    data["sites"][0]["kind"] = "locked-dropout"
    data["sites"][0]["module"] = "LockedDropout"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = runner.invoke(app, ["generate", "--plan", str(path), "-o", str(tmp_path / "model.py")])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: site {data['sites'][0]['id']}: field 'kind' is 'locked-dropout'")
    assert lines[1].startswith("hint: kinds that fit there: ")
    assert not (tmp_path / "model.py").exists()


# ---- subsets of a family's sites, and p = 0 ----

FAMILIES = {
    "mlp": Spec(arch="mlp", layers=2),
    "mlp-batchnorm": Spec(arch="mlp", layers=2, batch_norm=True),
    "selu-mlp": Spec(arch="mlp", layers=2, activation="selu"),
    "cnn": Spec(arch="cnn", layers=2),
    "cnn-gap": Spec(arch="cnn", layers=2, head="gap", batch_norm=True),
    "resnet": Spec(arch="resnet", layers=4, overfitting="strong"),
    "wrn": Spec(arch="resnet", layers=2, wide=True),
    "rnn-lm": Spec(arch="rnn", layers=2),
    "rnn-classifier": Spec(arch="rnn", layers=2, rnn_task="classifier", bidirectional=True),
    "rnn-deep": Spec(arch="rnn", layers=5, embeddings=False),
    "transformer-encoder": Spec(arch="transformer", layers=2, norm="post"),
    "transformer-decoder": Spec(arch="transformer", layers=2, transformer="decoder"),
    "vit": Spec(arch="transformer", layers=2, modality="image"),
    "gcn": Spec(arch="gnn", layers=2),
    "gat": Spec(arch="gnn", layers=2, gnn="gat"),
}


def _groups(plan: Plan) -> dict[tuple[str, str, str], list[PlanSite]]:
    """The plan's sites by place (after, before) and kind: one group per Config knob, roughly."""
    out: dict[tuple[str, str, str], list[PlanSite]] = {}
    for site in plan.sites:
        out.setdefault((site.after, site.before, site.kind), []).append(site)
    return out


SUBSETS = [
    (family, key)
    for family, spec in FAMILIES.items()
    for key in ["none", "zero", *(f"only {a}->{b} {k}" for a, b, k in _groups(recommend(spec)))]
]


@pytest.mark.parametrize(("family", "subset"), SUBSETS, ids=[f"{f}-{s}" for f, s in SUBSETS])
def test_any_subset_of_the_sites_renders_and_builds(family, subset, tmp_path):
    plan = recommend(FAMILIES[family])
    if subset == "none":
        plan = _keep(plan, lambda s: False)
    elif subset == "zero":
        plan = plan.model_copy(update={"sites": [s.model_copy(update={"p": 0.0}) for s in plan.sites]})
    else:
        place = subset.removeprefix("only ")
        plan = _keep(plan, lambda s: f"{s.after}->{s.before} {s.kind}" == place)
    _, module, model = _build(plan, tmp_path)
    assert dropout_sites(model) == [(s.kind, s.p) for s in plan.sites]
    inputs, _ = module.make_batch(module.smoke_config(), torch.device("cpu"))
    torch.manual_seed(0)
    with torch.no_grad():
        model.train()
        first, second = model(*inputs), model(*inputs)
    assert torch.isfinite(first).all()
    if all(s.p == 0 for s in plan.sites):
        assert torch.equal(first, second)  # no rate above 0: training mode is deterministic


@pytest.mark.slow
@pytest.mark.parametrize("subset", ["none", "zero"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_smoke_test_passes_without_dropout(family, subset, tmp_path):
    plan = recommend(FAMILIES[family])
    sites = [] if subset == "none" else [s.model_copy(update={"p": 0.0}) for s in plan.sites]
    _, module, _ = _build(plan.model_copy(update={"sites": sites}), tmp_path)
    measured = module.smoke_test(device="cpu", verbose=False)
    assert measured["end_loss"] <= measured["start_loss"] / 2
    assert measured["dropout_sites"] == len(sites)


REFERENCE_STYLE = {
    # BERT-base: post-norm encoder, dropout on the embedding sum, the attention probabilities and both
    # residual branches, none inside the feed-forward network.
    "bert-style": (
        Spec(arch="transformer", layers=2, norm="post"),
        lambda s: not (s.after == "activation" and s.before == "linear"),
    ),
    # LLaMA: no dropout anywhere.
    "llama-style": (Spec(arch="transformer", transformer="decoder", layers=2), lambda s: False),
    # ViT-B/16 (DeiT recipe): drop-path on both residual branches, nothing else.
    "vit-drop-path-only": (Spec(arch="transformer", layers=2, modality="image"), lambda s: s.kind == "drop-path"),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_STYLE))
def test_reference_style_plans_generate_only_their_sites(name, tmp_path):
    spec, keep = REFERENCE_STYLE[name]
    plan = _keep(recommend(spec), keep)
    result, module, model = _build(plan, tmp_path)
    assert dropout_sites(model) == [(s.kind, s.p) for s in plan.sites]
    if not plan.sites:
        assert "(none: the plan puts no dropout in this network; see the notes)" in result.code
        assert "nn.Dropout(" not in result.code and "dropout_p=" not in result.code
    measured = module.smoke_test(device="cpu", verbose=False)
    assert measured["end_loss"] <= measured["start_loss"] / 2
