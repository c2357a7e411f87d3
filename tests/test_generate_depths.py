"""Every template variant at depths 1, 2, 5, 8 and 12 passes its own smoke test and ruff's checks.

Issue 12: generated models failed their smoke test at ordinary depths (an MLP of 5 layers, a CNN of 7,
an RNN of 8). Each case here is generated from `recommend`'s plan for the spec, as `generate` does.
"""

from __future__ import annotations

import math

import pytest
from codegen_helpers import RUFF_CONFIGS, dropout_sites, import_file, ruff, ruff_format_check

from advisor.generate import (
    RESIDUAL_CNN_DEPTH,
    RESIDUAL_GAT_DEPTH,
    RESIDUAL_GNN_DEPTH,
    RESIDUAL_MLP_DEPTH,
    RESIDUAL_RNN_DEPTH,
    generate,
)
from advisor.recommend import recommend
from advisor.spec import Spec

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


DEPTHS = (1, 2, 5, 8, 12)

# Every family and variant; with and without BatchNorm where the family takes either.
VARIANTS: dict[str, dict[str, object]] = {
    "mlp": {"arch": "mlp"},
    "mlp-batchnorm": {"arch": "mlp", "batch_norm": True},
    "selu-mlp": {"arch": "mlp", "activation": "selu"},
    **{
        f"cnn-{head}-{pooling}{'-batchnorm' if bn else ''}": {
            "arch": "cnn",
            "head": head,
            "pooling": pooling,
            "batch_norm": bn,
        }
        for head in ("fc", "gap")
        for pooling in ("max", "avg", "none")
        for bn in (False, True)
    },
    "resnet": {"arch": "resnet"},
    "wrn": {"arch": "resnet", "wide": True},
    "rnn-lm": {"arch": "rnn"},
    "rnn-classifier": {"arch": "rnn", "rnn_task": "classifier"},
    "rnn-tagger": {"arch": "rnn", "embeddings": False},
    **{
        f"transformer-{kind}-{norm}": {
            "arch": "transformer",
            "transformer": "encoder" if kind == "vit" else kind,
            "norm": norm,
            **({"modality": "image"} if kind == "vit" else {}),
        }
        for kind in ("encoder", "decoder", "vit")
        for norm in ("pre", "post")
    },
    "transformer-decoder-rotary": {"arch": "transformer", "transformer": "decoder", "positions": "rotary"},
    "transformer-encoder-bert": {"arch": "transformer", "norm": "post", "embedding_norm": True},
    "gcn": {"arch": "gnn"},
    "gat": {"arch": "gnn", "gnn": "gat"},
}

CASES = [(variant, depth) for variant in VARIANTS for depth in DEPTHS]

# Deeper than the thresholds where plain stacks get gated residual connections (advisor/generate.py):
# the flags accept up to 1000 layers.
DEEP = [
    *((variant, depth) for variant in ("mlp", "mlp-batchnorm", "selu-mlp", "gcn", "rnn-tagger") for depth in (24, 100)),
    *((variant, 32) for variant in ("cnn-fc-none", "cnn-gap-max-batchnorm", "gat", "rnn-lm", "resnet")),
    *((variant, 32) for variant in ("transformer-encoder-post", "transformer-decoder-pre", "transformer-vit-pre")),
    ("gat", RESIDUAL_GAT_DEPTH),  # the deepest plain GAT stack
]


def _spec(variant: str, depth: int) -> Spec:
    return Spec(layers=depth, **VARIANTS[variant])  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("depths")
    out = {}
    for variant, depth in CASES + DEEP:
        spec = _spec(variant, depth)
        path = folder / f"{variant.replace('-', '_')}_{depth}.py"
        path.write_text(generate(recommend(spec), spec, output=path.name).code, encoding="utf-8")
        out[variant, depth] = path
    return folder, out


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "depth"), CASES + DEEP, ids=[f"{v}-{d}" for v, d in CASES + DEEP])
def test_smoke_test_passes(variant, depth, files):
    module = import_file(files[1][variant, depth])
    measured = module.smoke_test(device="cpu", verbose=False)
    assert measured["end_loss"] <= measured["start_loss"] / 2
    assert measured["steps"] <= module.SMOKE_STEPS
    cfg = module.smoke_config()
    outputs = cfg.num_classes if hasattr(cfg, "num_classes") else cfg.vocab_size
    # A sensible start: a blown-up initialisation would make "the loss halves" trivially true.
    assert measured["start_loss"] < 2 * math.log(outputs)


@pytest.mark.parametrize(("variant", "depth"), CASES, ids=[f"{v}-{d}" for v, d in CASES])
def test_dropout_modules_are_the_plans_sites(variant, depth, files):
    module = import_file(files[1][variant, depth])
    plan = recommend(_spec(variant, depth))
    assert dropout_sites(module.build_model(module.smoke_config())) == [(s.kind, s.p) for s in plan.sites]


@pytest.fixture(scope="module")
def option_files(tmp_path_factory):
    """Every variant with the options that add code: mc_predict, and a long output path in the header."""
    folder = tmp_path_factory.mktemp("options")
    long_output = "experiments/dropout/" + "a_rather_long_folder_name/" * 3 + "my_model_with_dropout.py"
    for variant in VARIANTS:
        spec = _spec(variant, 3).model_copy(update={"overfitting": "strong", "samples": 5000})
        plan = recommend(spec)
        name = variant.replace("-", "_")
        (folder / f"{name}_mc.py").write_text(generate(plan, spec, mc_dropout=True, mc_samples=50).code)
        (folder / f"{name}_long.py").write_text(generate(plan, spec, output=long_output).code)
    return folder


@pytest.mark.parametrize("config", sorted(RUFF_CONFIGS))
def test_ruff_passes_under_common_configurations(config, files, option_files):
    for folder in (files[0], option_files):
        result = ruff(config, folder)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_ruff_format_leaves_every_file_as_it_is(files, option_files):
    for folder in (files[0], option_files):
        result = ruff_format_check(folder)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr


@pytest.mark.parametrize("depth", [5, 10, 12])
def test_a_deep_cnn_stops_pooling_at_1x1_and_says_so(depth):
    spec = Spec(arch="cnn", layers=depth, pooling="max")
    code = generate(recommend(spec), spec).code
    assert "once a map is 1x1 the later blocks keep it" in code
    assert "a 1x1 map is not pooled" in code


def test_a_32x32_input_through_10_max_pooling_blocks_ends_at_1x1(tmp_path):
    spec = Spec(arch="cnn", layers=10, pooling="max")
    path = tmp_path / "model.py"
    path.write_text(generate(recommend(spec), spec).code, encoding="utf-8")
    module = import_file(path)
    cfg = module.Config()
    assert [cfg.size(i) for i in range(11)] == [32, 16, 8, 4, 2, 1, 1, 1, 1, 1, 1]
    model = module.build_model().eval()
    pools = [type(block.pool).__name__ for block in model.blocks]
    assert pools == ["MaxPool2d"] * 5 + ["Identity"] * 5
    convs = [block.conv.kernel_size for block in model.blocks]
    assert convs == [(3, 3)] * 5 + [(1, 1)] * 5  # a 3x3 kernel on a 1x1 map would use its centre only
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("arch", "threshold"),
    [
        ("rnn", RESIDUAL_RNN_DEPTH),
        ("mlp", RESIDUAL_MLP_DEPTH),
        ("cnn", RESIDUAL_CNN_DEPTH),
        ("gnn", RESIDUAL_GNN_DEPTH),
        ("gat", RESIDUAL_GAT_DEPTH),
    ],
)
def test_stacks_deeper_than_the_threshold_get_gated_residual_connections(arch, threshold):
    extra = {"arch": "gnn", "gnn": "gat"} if arch == "gat" else {"arch": arch}
    deep, plain = Spec(**extra, layers=threshold + 1), Spec(**extra, layers=threshold)
    deep_code = generate(recommend(deep), deep).code
    assert "residual: bool = True" in deep_code
    assert "ReZero (Bachlechner et al. 2020)" in deep_code
    assert "gain" in deep_code
    assert "residual" not in generate(recommend(plain), plain).code


def test_a_gated_stack_starts_as_the_identity_and_trains_its_gains(tmp_path):
    spec = Spec(arch="mlp", layers=RESIDUAL_MLP_DEPTH + 2)
    path = tmp_path / "model.py"
    path.write_text(generate(recommend(spec), spec).code, encoding="utf-8")
    module = import_file(path)
    model = module.build_model(module.smoke_config())
    gains = [block.gain for block in model.blocks]
    assert gains[0] is None and all(g.item() == 0.0 for g in gains[1:])
    assert {n for n, _ in model.named_parameters() if n.endswith("gain")} == {f"blocks.{i}.gain" for i in range(1, 14)}
