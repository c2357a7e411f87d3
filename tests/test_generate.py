"""Code generation: every template and every option that changes its shape, tested four ways.

For each case: the render matches its golden file (UPDATE_GOLDEN=1 rewrites them), compiles, passes
`ruff check` under common configurations (tests/codegen_helpers.py) and `ruff format --check`, imports
from tmp_path, runs its own smoke test on the CPU, and the dropout modules of the built model are exactly
the plan's sites (kind, p, order).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from codegen_helpers import RUFF_CONFIGS, dropout_sites, import_file, ruff, ruff_format_check

from advisor.errors import TemplateError, UsageError
from advisor.generate import TEMPLATES, Generated, generate, template_root
from advisor.plan import Plan
from advisor.recommend import recommend
from advisor.spec import Spec

torch = pytest.importorskip("torch")
nn = torch.nn


pytestmark = pytest.mark.usefixtures("one_torch_thread")


GOLDEN = Path(__file__).parent / "golden" / "generated"


def _awd_plan() -> Plan:
    """An AWD-LSTM-style plan, as a user would edit it: locked dropout everywhere and weight drop."""
    plan = recommend(Spec(arch="rnn", layers=2, width=400))
    sites = []
    for site in plan.sites:
        if site.kind == "dropout":
            p = 0.3 if site.after == "rnn-layer" and site.before == "rnn-layer" else 0.4
            site = site.model_copy(update={"kind": "locked-dropout", "module": "LockedDropout", "p": p})
        sites.append(site)
        if site.before == "rnn-layer":
            weight = {"kind": "weight-drop", "module": "WeightDrop", "p": 0.5, "recommendations": ["DRP014"]}
            sites.append(site.model_copy(update=weight))
    sites = [s.model_copy(update={"id": f"S{i + 1}"}) for i, s in enumerate(sites)]
    return plan.model_copy(update={"sites": sites})


def _cnn_partial_plan() -> Plan:
    """A plan with a site removed from one block: that block's rate becomes None (no module)."""
    plan = recommend(Spec(arch="cnn", layers=3, fc_layers=1))
    sites = [s for s in plan.sites if not (s.kind == "dropout2d" and s.block == 1)]
    sites = [s.model_copy(update={"id": f"S{i + 1}"}) for i, s in enumerate(sites)]
    return plan.model_copy(update={"sites": sites})


# name -> (spec or plan, mc_dropout). Small layer counts keep the smoke tests fast.
CASES: dict[str, tuple[Spec | Plan, bool | None]] = {
    "mlp": (Spec(arch="mlp"), None),
    "mlp_batchnorm": (Spec(arch="mlp", batch_norm=True, layers=3), None),
    "mlp_early_dropout": (Spec(arch="mlp", underfitting=True), None),
    "mlp_mc_dropout": (Spec(arch="mlp", uncertainty=True), None),
    "selu_mlp": (Spec(arch="mlp", activation="selu", layers=3), None),
    "cnn": (Spec(arch="cnn", layers=3), None),
    "cnn_batchnorm_gap": (Spec(arch="cnn", layers=2, batch_norm=True, head="gap"), None),
    "cnn_no_pooling": (Spec(arch="cnn", layers=2, pooling="none"), None),
    "cnn_avgpool_no_fc": (Spec(arch="cnn", layers=2, pooling="avg", fc_layers=0), None),
    "cnn_partial_plan": (_cnn_partial_plan(), None),
    "resnet_head_dropout": (Spec(arch="resnet", layers=4, overfitting="strong"), None),
    "resnet_drop_path": (Spec(arch="resnet", layers=54), None),  # Huang et al.'s 110-layer depth (DRP010)
    "wrn": (Spec(arch="resnet", wide=True, layers=4), None),
    "wrn_mc_dropout": (Spec(arch="resnet", wide=True, layers=2), True),
    "lstm_lm": (Spec(arch="rnn", layers=2, width=650), None),
    "gru_lm_one_layer": (Spec(arch="rnn", cell="gru", layers=1), None),
    "lstm_classifier_bidirectional": (Spec(arch="rnn", rnn_task="classifier", bidirectional=True), None),
    "lstm_classifier_features": (Spec(arch="rnn", rnn_task="classifier", embeddings=False), None),
    "lstm_tagger": (Spec(arch="rnn", embeddings=False, layers=1), None),
    "awd_lstm": (_awd_plan(), None),
    "transformer_encoder": (Spec(arch="transformer", layers=2), None),
    "transformer_encoder_post_norm": (Spec(arch="transformer", layers=2, norm="post"), None),
    "transformer_decoder": (Spec(arch="transformer", transformer="decoder", layers=2), None),
    "transformer_decoder_post_norm": (Spec(arch="transformer", transformer="decoder", norm="post", layers=2), None),
    "vit_drop_path": (Spec(arch="transformer", modality="image", layers=2), None),
    "transformer_no_dropout": (
        Spec(arch="transformer", transformer="decoder", layers=2, regime="pretraining", params=7_000_000_000),
        None,
    ),
    "mlp_deep_residual": (Spec(arch="mlp", layers=14), None),
    "cnn_deep_residual": (Spec(arch="cnn", layers=14, pooling="none", head="gap"), None),
    "lstm_tagger_deep_residual": (Spec(arch="rnn", layers=6, embeddings=False), None),
    "gcn_deep_residual": (Spec(arch="gnn", layers=14), None),
    "gcn": (Spec(arch="gnn"), None),
    "gat": (Spec(arch="gnn", gnn="gat"), None),
    "gat_mc_dropout": (Spec(arch="gnn", gnn="gat", layers=3, width=64), True),
}

RATE_FIELDS = {
    "input_dropout",
    "hidden_dropout",
    "conv_dropout",
    "head_dropout",
    "fc_dropout",
    "block_dropout",
    "drop_path",
    "embed_dropout",
    "output_dropout",
    "weight_drop",
    "attn_dropout",
    "attn_resid_dropout",
    "ffn_dropout",
    "ffn_resid_dropout",
    "drop_path_attn",
    "drop_path_ffn",
    "feature_dropout",
    "value_dropout",
}


def _plan(case: str) -> Plan:
    source, _ = CASES[case]
    return source if isinstance(source, Plan) else recommend(source)


def _render(case: str) -> Generated:
    source, mc = CASES[case]
    spec = source if isinstance(source, Spec) else None
    return generate(_plan(case), spec, mc_dropout=mc, output="model.py")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, tuple[Generated, Path]]:
    folder = tmp_path_factory.mktemp("generated")
    out = {}
    for case in CASES:
        result = _render(case)
        path = folder / f"{case}.py"
        path.write_text(result.code, encoding="utf-8")
        out[case] = (result, path)
    return out


@pytest.fixture(scope="module")
def folder(rendered) -> Path:
    return next(iter(rendered.values()))[1].parent


_modules: dict[Path, ModuleType] = {}


def _import(path: Path) -> ModuleType:
    if path not in _modules:
        _modules[path] = import_file(path)
    return _modules[path]


# ---- four ways, per case ----


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_render(case, rendered):
    result, _ = rendered[case]
    path = GOLDEN / f"{case}.py"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.code, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert result.code == path.read_text(encoding="utf-8"), f"{case} changed; review it and run with UPDATE_GOLDEN=1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiles(case, rendered):
    result, _ = rendered[case]
    compile(result.code, f"{case}.py", "exec")


@pytest.mark.parametrize("config", sorted(RUFF_CONFIGS))
def test_ruff_check_passes_under_common_configurations(config, folder):
    result = ruff(config, folder)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_the_files_as_they_are(folder):
    result = ruff_format_check(folder)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_dropout_modules_match_the_plan(case, rendered):
    result, path = rendered[case]
    module = _import(path)
    want = [(s.kind, s.p) for s in _plan(case).sites]
    small = getattr(module, result.model_class)(module.smoke_config())
    assert dropout_sites(small) == want
    with torch.device("meta"):  # the full-size Config, without allocating it
        full = getattr(module, result.model_class)(module.Config())
    assert dropout_sites(full) == want


@pytest.mark.parametrize("case", sorted(CASES))
def test_smoke_test_passes_on_cpu(case, rendered):
    _, path = rendered[case]
    module = _import(path)
    measured = module.smoke_test(device="cpu", verbose=False)
    assert measured["end_loss"] <= measured["start_loss"] / 2
    assert measured["dropout_sites"] == len(_plan(case).sites)  # one rate per site


@pytest.mark.parametrize("case", ["mlp_batchnorm", "cnn", "wrn", "lstm_lm", "awd_lstm", "transformer_decoder", "gat"])
def test_zero_rates_make_train_mode_deterministic(case, rendered):
    result, path = rendered[case]
    module = _import(path)
    cfg = module.smoke_config()
    zero = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in RATE_FIELDS:
            zero[f.name] = tuple(0.0 for _ in value) if isinstance(value, tuple) else 0.0
    torch.manual_seed(0)
    model = getattr(module, result.model_class)(dataclasses.replace(cfg, **zero)).train()
    inputs, _ = module.make_batch(cfg, torch.device("cpu"))
    with torch.no_grad():
        assert torch.equal(model(*inputs), model(*inputs))


# ---- options and details ----


def test_mc_predict_keeps_batchnorm_in_eval_and_shows_spread(rendered):
    result, path = rendered["wrn_mc_dropout"]
    module = _import(path)
    torch.manual_seed(0)
    model = getattr(module, result.model_class)(module.smoke_config()).train()
    inputs, _ = module.make_batch(module.smoke_config(), torch.device("cpu"))
    stats = [b.clone() for b in model.buffers()]
    mean, std = module.mc_predict(model, *inputs, samples=8)
    assert mean.shape == std.shape == (inputs[0].shape[0], module.smoke_config().num_classes)
    assert torch.allclose(mean.sum(-1), torch.ones(mean.shape[0]), atol=1e-5)  # class probabilities
    assert (std > 0).any()
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))
    assert model.training  # the mode it had before


def test_mc_dropout_only_when_asked(rendered):
    assert "def mc_predict(" in rendered["mlp_mc_dropout"][0].code  # --uncertainty asks for it
    assert "def mc_predict(" in rendered["gat_mc_dropout"][0].code  # --mc-dropout
    assert "def mc_predict(" not in rendered["mlp"][0].code


def test_rising_rates_are_constants_per_block_with_their_sites(rendered):
    code = rendered["cnn"][0].code
    assert "conv_dropout: tuple[float, ...] = (0.01, 0.1, 0.1)" in code
    assert "S1 p=0.01, S2 p=0.1, S3 p=0.1 (DRP005)" in code  # DRP004 (element-wise) is a note, not these sites
    assert "rises with depth" in code


def test_early_dropout_schedule_is_commented(rendered):
    code = rendered["mlp_early_dropout"][0].code
    assert "Scheduled (early dropout, DRP202): this file keeps the rate constant." in code
    assert "over the first 50 of 300 epochs" in code  # Liu et al. 2023's cutoff, not an uncited share
    assert "hidden_dropout: float = 0.1" in code


def test_each_site_carries_its_recommendation_and_rate(rendered):
    code = rendered["transformer_decoder"][0].code
    assert "# S2, S6 (DRP018): p=0.1, Config.attn_dropout" in code
    assert "dropout_p=p, is_causal=True" in code
    assert "p = self.attn_p if self.training else 0.0" in code


def test_header_records_version_command_and_answers(rendered):
    from advisor import __version__

    code = rendered["cnn"][0].code
    assert f"Generated by dropout-advisor {__version__}." in code
    assert "dropout-advisor generate --arch cnn --layers 3 -o model.py" in code
    assert 'arch = "cnn"\n    layers = 3\n' in code


def test_lstm_dropout_argument_only_with_two_layers(rendered):
    assert "dropout=cfg.hidden_dropout," in rendered["lstm_lm"][0].code
    one = rendered["gru_lm_one_layer"][0].code
    assert "dropout=" not in one.split("self.rnn = nn.GRU(")[1].split(")")[0]


def test_every_template_is_covered():
    covered = {_render(case).template for case in CASES}
    assert covered == set(TEMPLATES)


def test_templates_are_found_in_the_checkout():
    root = template_root()
    assert all((root / f"{name}.py.j2").is_file() for name in TEMPLATES)


def test_templates_render_with_strict_undefined():
    import jinja2

    from advisor.generate import _environment

    env = _environment()
    assert env.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()


def test_a_missing_template_variable_is_a_template_error(monkeypatch):
    import advisor.generate as gen

    real = gen._layout

    def broken(plan, spec):
        layout = real(plan, spec)
        layout.context.pop("width")
        return layout

    monkeypatch.setattr(gen, "_layout", broken)
    with pytest.raises(TemplateError) as info:
        generate(recommend(Spec(arch="mlp")))
    assert "width" in str(info.value) and info.value.exit_code == 3


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (Spec(arch="rnn", rnn_task="seq2seq"), "seq2seq"),
        (Spec(arch="rnn", bidirectional=True), "bidirectional"),
        (Spec(arch="transformer", transformer="encoder-decoder"), "encoder-decoder"),
    ],
)
def test_unsupported_networks_are_usage_errors(spec, words):
    with pytest.raises(UsageError, match=words):
        generate(recommend(spec), spec)


def test_a_kind_the_place_cannot_take_is_named_with_the_kinds_it_can():
    plan = recommend(Spec(arch="mlp"))
    edited = plan.sites[0].model_copy(update={"kind": "dropout2d", "module": "nn.Dropout2d"})  # on (B, F)
    plan = plan.model_copy(update={"sites": [edited, *plan.sites[1:]]})
    with pytest.raises(UsageError, match=r"site S1: field 'kind' is 'dropout2d'") as info:
        generate(plan)
    assert info.value.hint == "kinds that fit there: dropout, alpha-dropout, feature-alpha-dropout"


def test_edited_layers_are_rejected():
    plan = recommend(Spec(arch="mlp"))
    plan = plan.model_copy(update={"layers": plan.layers[:-1]})
    with pytest.raises(UsageError, match="layers do not match"):
        generate(plan)


def test_generate_is_deterministic():
    spec = Spec(arch="transformer", layers=3)
    assert generate(recommend(spec), spec).code == generate(recommend(spec), spec).code


def test_rendering_does_not_import_torch():
    code = (
        "import sys\n"
        "from advisor.generate import generate\n"
        "from advisor.recommend import recommend\n"
        "from advisor.spec import Spec\n"
        "for arch in ('mlp', 'cnn', 'resnet', 'rnn', 'transformer', 'gnn'):\n"
        "    generate(recommend(Spec(arch=arch)))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_generated_models_audit_clean(rendered):
    audit_api = pytest.importorskip("advisor.audit.api")
    for case, (result, path) in rendered.items():
        module = _import(path)
        torch.manual_seed(0)
        model = getattr(module, result.model_class)(module.smoke_config())
        inputs, _ = module.make_batch(module.smoke_config(), torch.device("cpu"))
        report = audit_api.audit(model, inputs)
        bad = [(f.severity, f.slug, f.module) for f in report.findings if f.severity in ("warning", "error")]
        assert not bad, f"{case}: {bad}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_audit_command_generate_prints_audits_the_file_clean(case, rendered, runner):
    from advisor.cli import app

    result, path = rendered[case]
    command, options = result.audit_command.split(":build_model ", 1)
    assert command == "dropout-advisor audit model.py"
    assert _import(path).audit_options(_import(path).Config()) == options  # what the smoke test prints
    audit = runner.invoke(app, ["audit", f"{path}:build_model", *shlex.split(options), "--format", "json"])
    assert audit.exit_code == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    warnings = [f for f in report["findings"] if f["severity"] in ("warning", "error")]
    assert warnings == [], warnings
    assert len(report["sites"]) >= len(_plan(case).sites)
