"""`generate --base NAME`: code for every reference recipe a template can write, with only the recipe's sites.

Each recipe's file passes ruff under the common configurations, its own smoke test, and an audit through
the CLI with no warnings; its dropout modules are exactly the plan's sites. Recipes no template can write
(encoder-decoder Transformers) are refused with exit 2 and the reason.
"""

from __future__ import annotations

import json
import shlex

import pytest
from codegen_helpers import RUFF_CONFIGS, dropout_sites, import_file, ruff, ruff_format_check

from advisor.cli import app
from advisor.knowledge import default_kb
from advisor.recommend import recommend
from advisor.spec import build_spec

torch = pytest.importorskip("torch")

KB = default_kb()
RECIPES = sorted(KB.recipes)
WRITTEN = [key for key in RECIPES if KB.recipe(key).spec.get("transformer") != "encoder-decoder"]
REFUSED = [key for key in RECIPES if key not in WRITTEN]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from typer.testing import CliRunner

    folder = tmp_path_factory.mktemp("recipes")
    runner = CliRunner()
    out = {}
    for key in WRITTEN:
        path = folder / f"{key.replace('-', '_').replace('.', '_')}.py"
        result = runner.invoke(app, ["generate", "--base", key, "-o", str(path)])
        assert result.exit_code == 0, f"{key}: {result.stderr}"
        out[key] = (path, result.stderr)
    return folder, out


def test_every_recipe_but_the_encoder_decoders_is_written():
    assert len(WRITTEN) >= 20
    assert all(KB.recipe(key).spec["transformer"] == "encoder-decoder" for key in REFUSED)


@pytest.mark.parametrize("key", REFUSED)
def test_encoder_decoder_recipes_are_refused_with_the_reason(key, runner, tmp_path):
    result = runner.invoke(app, ["generate", "--base", key, "-o", str(tmp_path / "model.py")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: generate has no template for an encoder-decoder Transformer")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "model.py").exists()


@pytest.mark.parametrize("config", sorted(RUFF_CONFIGS))
def test_recipe_files_pass_ruff(config, files):
    result = ruff(config, files[0])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_recipe_files_are_formatted(files):
    result = ruff_format_check(files[0])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


@pytest.mark.parametrize("key", WRITTEN)
def test_recipe_files_have_exactly_the_recipes_sites(key, files):
    module = import_file(files[1][key][0])
    plan = recommend(build_spec({"base": key, **KB.recipe(key).spec}))
    assert dropout_sites(module.build_model(module.smoke_config())) == [(s.kind, s.p) for s in plan.sites]


@pytest.mark.slow
@pytest.mark.parametrize("key", WRITTEN)
def test_recipe_files_pass_their_smoke_test(key, files):
    module = import_file(files[1][key][0])
    measured = module.smoke_test(device="cpu", verbose=False)
    assert measured["end_loss"] <= measured["start_loss"] / 2


@pytest.mark.slow
@pytest.mark.parametrize("key", WRITTEN)
def test_recipe_files_audit_clean_with_the_command_generate_printed(key, files, runner):
    path, stderr = files[1][key]
    printed = next(line for line in stderr.splitlines() if line.startswith("audit its dropout: "))
    args = shlex.split(printed.removeprefix("audit its dropout: "))
    assert args[:3] == ["dropout-advisor", "audit", f"{path}:build_model"]
    audit = runner.invoke(app, [*args[1:], "--format", "json"])
    assert audit.exit_code == 0, audit.stdout + audit.stderr
    warnings = [f for f in json.loads(audit.stdout)["findings"] if f["severity"] in ("warning", "error")]
    assert warnings == []


def test_llama_style_files_use_rotary_positions_and_no_embedding_sum(files):
    path, _ = files[1]["llama-2-7b"]
    code = path.read_text(encoding="utf-8")
    assert "class Rotary(nn.Module)" in code
    assert "pos_embed" not in code
    assert "Dropout" not in code.split("# ---- dropout bookkeeping")[0].split('"""', 2)[2]  # no dropout layer


def test_rotary_scores_depend_only_on_the_offset_between_positions(files):
    module = import_file(files[1]["llama-2-7b"][0])
    rotary = module.Rotary(8, 10000.0)
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    at = lambda x, t: torch.cat([torch.zeros(1, 1, t, 8), x], dim=2)  # noqa: E731 -- x at position t
    scores = []
    for shift in (0, 5):
        rq, _ = rotary(at(q, 3 + shift), at(q, 3 + shift))
        _, rk = rotary(at(k, 1 + shift), at(k, 1 + shift))
        scores.append((rq[0, 0, 3 + shift] * rk[0, 0, 1 + shift]).sum())
    assert torch.allclose(scores[0], scores[1], atol=1e-5)


def test_bert_style_files_norm_the_embedding_sum_before_its_dropout(files):
    code = files[1]["bert-base"][0].read_text(encoding="utf-8")
    forward = code.split("self.pos_embed(positions)")[1]
    assert forward.index("self.embed_norm(x)") < forward.index("self.embed_dropout(x)")
