"""`dropout-advisor recommend TARGET` and `recommend --hf-config FILE` through CliRunner: output, formats, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.cli import app

ZOO = Path(__file__).parent / "model_advice_zoo.py"


def recommend(runner, *args: str):
    return runner.invoke(app, ["recommend", *args])


def assert_usage_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "\nhint: " in result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# ---- a model file -------------------------------------------------------------------------------


def test_text_plan_shows_what_was_read_the_tree_and_the_changes(runner):
    result = recommend(runner, f"{ZOO}:VGG", "-s", "2,3,32,32", "--samples", "50k")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"Dropout plan for {ZOO}:VGG (VGG; input float32[2, 3, 32, 32]")
    assert "Read as: cnn" in out and "layers = 13" in out
    assert "Reference recipe: vgg16, recognised by the structure" in out
    assert "Layer tree" in out and "─ classifier (Sequential)" in out
    assert "after classifier.1 (ReLU), before classifier.3 (Linear)" in out
    assert result.stderr == ""


def test_json_plan(runner):
    result = recommend(runner, f"{ZOO}:TinyGPT", "-s", "2,8", "--input-dtype", "long", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    assert data["target"] == f"{ZOO}:TinyGPT"
    assert data["inferred"]["spec"]["transformer"] == "decoder"
    assert all({"module_path", "after_path", "before_path"} <= set(s) for s in data["sites"])


def test_markdown_plan(runner):
    result = recommend(runner, f"{ZOO}:MLP", "-s", "4,20", "-f", "markdown")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"# Dropout plan for {ZOO}:MLP")
    assert "## Changes" in result.stdout and "## Layer tree" in result.stdout


def test_flags_override_what_was_read(runner):
    result = recommend(runner, f"{ZOO}:BatchNormMLP", "-s", "4,20", "--no-batch-norm", "--regime", "fine-tuning")
    assert result.exit_code == 0, result.stderr
    assert "batch_norm = False (flag)" in result.stdout
    assert "regime=fine-tuning" in result.stdout


def test_constructor_arguments_come_from_kwargs(runner):
    result = recommend(runner, f"{ZOO}:NeedsDepth", "-s", "4,20", "--kwargs", '{"depth": 2}')
    assert result.exit_code == 0, result.stderr
    assert "layers = 3" in result.stdout or "layers = 2" in result.stdout


def test_the_cpu_device_is_honoured(runner):
    result = recommend(runner, f"{ZOO}:MLP", "-s", "4,20", "--device", "cpu", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["device"] == "cpu"


def test_python_dash_m_advisor_works_too():
    result = subprocess.run(
        [sys.executable, "-m", "advisor", "recommend", f"{ZOO}:MLP", "-s", "4,20", "-f", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model_class"] == "MLP"


# ---- bad input: one error line, a hint, exit 2, no traceback --------------------------------------


def test_a_target_that_does_not_import(runner, tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nraise ValueError('no model here')\n")
    assert_usage_error(recommend(runner, f"{bad}:Net", "-s", "2,3"), "importing", "ValueError: no model here")


def test_a_missing_file(runner, tmp_path):
    assert_usage_error(recommend(runner, f"{tmp_path / 'nope.py'}:Net", "-s", "2,3"), "no such file")


def test_an_unknown_name_suggests_close_ones(runner):
    assert_usage_error(recommend(runner, f"{ZOO}:VGGG", "-s", "2,3,32,32"), "has no 'VGGG'", "VGG")


def test_a_constructor_that_needs_arguments(runner):
    assert_usage_error(recommend(runner, f"{ZOO}:NeedsDepth", "-s", "4,20"), "needs argument depth", "--kwargs")


def test_a_wrong_input_shape(runner):
    assert_usage_error(recommend(runner, f"{ZOO}:VGG", "-s", "2,3"), "forward", "--input-shape")


def test_no_input_shape(runner):
    assert_usage_error(recommend(runner, f"{ZOO}:VGG"), "input shape")


def test_a_bad_input_shape(runner):
    assert_usage_error(recommend(runner, f"{ZOO}:VGG", "-s", "two,3"), "--input-shape")


def test_a_bad_dtype(runner):
    assert_usage_error(recommend(runner, f"{ZOO}:VGG", "-s", "2,3,32,32", "--input-dtype", "int8"), "int8")


def test_target_and_hf_config_together(runner, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text('{"model_type": "bert"}')
    assert_usage_error(recommend(runner, f"{ZOO}:VGG", "-s", "2,3,32,32", "--hf-config", str(cfg)), "not both")


def test_save_answers_with_a_target(runner, tmp_path):
    assert_usage_error(
        recommend(runner, f"{ZOO}:MLP", "-s", "4,20", "--save-answers", str(tmp_path / "a.toml")), "--save-answers"
    )
    assert not (tmp_path / "a.toml").exists()


def test_a_base_of_another_family(runner):
    assert_usage_error(recommend(runner, f"{ZOO}:VGG", "-s", "2,3,32,32", "--base", "gpt2"), "gpt2")


# ---- --hf-config --------------------------------------------------------------------------------

BERT_CONFIG = {
    "architectures": ["BertForSequenceClassification"],
    "model_type": "bert",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "classifier_dropout": None,
}


@pytest.fixture
def bert_config(tmp_path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BERT_CONFIG))
    return path


def test_hf_config_lists_each_field_and_the_lines_that_set_them(runner, bert_config):
    result = recommend(runner, "--hf-config", str(bert_config), "--regime", "fine-tuning", "--samples", "8k")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Reference recipe: bert-base, found by model_type 'bert'" in out
    assert "= hidden_dropout_prob" in out and "= classifier_dropout" in out
    assert "AutoConfig.from_pretrained(" in out and "hidden_dropout_prob=0.1" in out
    assert "BertForSequenceClassification.from_pretrained(" in out


def test_hf_config_json(runner, bert_config):
    result = recommend(runner, "--hf-config", str(bert_config), "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["recipe"] == "bert-base"
    fields = {f["name"]: f for f in data["fields"]}
    assert fields["classifier_dropout"]["recommended"] == 0.1 and fields["classifier_dropout"]["change"] == "keep"


def test_hf_config_that_is_not_json(runner, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{model_type: bert")
    assert_usage_error(recommend(runner, "--hf-config", str(bad)), "not valid JSON")


def test_hf_config_without_model_type(runner, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 8}')
    assert_usage_error(recommend(runner, "--hf-config", str(bad)), "model_type")


def test_hf_config_missing(runner, tmp_path):
    assert_usage_error(recommend(runner, "--hf-config", str(tmp_path / "none.json")), "does not exist")


def test_hf_config_never_imports_torch(bert_config):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from advisor.cli import app\n"
        f"r = CliRunner().invoke(app, ['recommend', '--hf-config', {str(bert_config)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ---- ask: "I already have the model in a file" ------------------------------------------------------


def test_ask_offers_the_model_file_and_plans_for_it(runner):
    answers = "\n".join(["file", f"{ZOO}:MLP", "4,20", "", "scratch", "5k", "strong", "no"]) + "\n"
    result = runner.invoke(app, ["ask"], input=answers)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Dropout plan for {ZOO}:MLP (MLP; input float32[4, 20]")
    assert "or 'file' if you already have it in a Python file" in result.stderr
    assert f"dropout-advisor recommend {ZOO}:MLP -s 4,20 --samples 5000 --overfitting strong" in result.stderr


def test_ask_re_asks_for_a_model_file_that_does_not_exist(runner, tmp_path):
    answers = "\n".join(["file", f"{tmp_path / 'nope.py'}:Net", f"{ZOO}:MLP", "4,20", "", "", "", "", ""]) + "\n"
    result = runner.invoke(app, ["ask"], input=answers)
    assert result.exit_code == 0, result.stderr
    assert "no such file" in result.stderr
    assert result.stdout.startswith(f"Dropout plan for {ZOO}:MLP")
