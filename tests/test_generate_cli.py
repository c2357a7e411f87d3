"""`generate` and `smoke` through the CLI: files, exit codes, stdout and stderr kept apart."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.cli import app

CNN = ["generate", "--arch", "cnn", "--layers", "2"]


def _generate(runner, path: Path, *extra: str):
    return runner.invoke(app, [*CNN, "-o", str(path), *extra])


def test_generate_writes_the_file(runner, tmp_path):
    path = tmp_path / "model.py"
    result = _generate(runner, path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"created {path}: CNN image classifier, 4 dropout sites")
    assert "python" in result.stderr
    compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_generate_never_overwrites_without_force(runner, tmp_path):
    path = tmp_path / "model.py"
    _generate(runner, path)
    before = path.read_text(encoding="utf-8")
    result = runner.invoke(app, ["generate", "--arch", "mlp", "-o", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path} already exists")
    assert "hint: pass --force" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_text(encoding="utf-8") == before


def test_generate_force_replaces(runner, tmp_path):
    path = tmp_path / "model.py"
    _generate(runner, path)
    result = runner.invoke(app, ["generate", "--arch", "mlp", "-o", str(path), "--force"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith(f"replaced {path}: MLP for tabular data")
    assert "class MLP(nn.Module)" in path.read_text(encoding="utf-8")


def test_generate_identical_file_is_reported(runner, tmp_path):
    path = tmp_path / "model.py"
    _generate(runner, path)
    mtime = path.stat().st_mtime_ns
    result = _generate(runner, path)
    assert result.exit_code == 0
    assert result.stderr.startswith(f"identical: {path}")
    assert path.stat().st_mtime_ns == mtime


def test_dry_run_writes_nothing(runner, tmp_path):
    path = tmp_path / "model.py"
    result = _generate(runner, path, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"would create {path}: CNN image classifier, 4 dropout sites")
    assert not path.exists()


def test_dry_run_on_an_existing_file_says_it_would_not_write(runner, tmp_path):
    path = tmp_path / "model.py"
    path.write_text("# mine\n", encoding="utf-8")
    result = _generate(runner, path, "--dry-run")
    assert result.exit_code == 0
    assert "would not write" in result.stdout and "--force" in result.stdout
    assert path.read_text(encoding="utf-8") == "# mine\n"


def test_diff_shows_the_change_and_writes_nothing(runner, tmp_path):
    path = tmp_path / "model.py"
    _generate(runner, path)
    before = path.read_text(encoding="utf-8")
    result = runner.invoke(app, ["generate", "--arch", "cnn", "--layers", "3", "-o", str(path), "--diff"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"--- {path} (on disk)\n+++ {path} (generated)\n@@")
    assert "-    layers: int = 2  # conv blocks" in result.stdout
    assert "+    layers: int = 3  # conv blocks" in result.stdout
    assert path.read_text(encoding="utf-8") == before


def test_diff_of_identical_code_is_empty(runner, tmp_path):
    path = tmp_path / "model.py"
    _generate(runner, path)
    result = _generate(runner, path, "--diff")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "identical" in result.stderr


def test_dash_writes_the_code_to_stdout(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*CNN, "-o", "-"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith('"""CNN image classifier')
    compile(result.stdout, "model.py", "exec")
    assert list(tmp_path.iterdir()) == []


def test_mc_dropout_flag_adds_mc_predict(runner):
    result = runner.invoke(app, [*CNN, "-o", "-", "--mc-dropout", "--mc-samples", "12"])
    assert result.exit_code == 0, result.stderr
    assert "samples: int = 12" in result.stdout
    assert "--mc-dropout" in result.stdout.split("Answers used")[0]  # in the regenerate command


def test_answers_file_gives_the_same_code_as_flags(runner, tmp_path):
    answers = tmp_path / "answers.toml"
    answers.write_text('answers_version = 1\narch = "cnn"\nlayers = 2\n', encoding="utf-8")
    from_file = runner.invoke(app, ["generate", "--answers", str(answers), "-o", "-"])
    from_flags = runner.invoke(app, [*CNN, "-o", "-"])
    assert from_file.exit_code == 0, from_file.stderr
    assert from_file.stdout == from_flags.stdout


def test_plan_file_is_a_third_input(runner, tmp_path):
    plan = tmp_path / "plan.json"
    rec = runner.invoke(app, ["recommend", "--arch", "gnn", "--gnn", "gat", "--format", "json"])
    plan.write_text(rec.stdout, encoding="utf-8")
    result = runner.invoke(app, ["generate", "--plan", str(plan), "-o", "-"])
    assert result.exit_code == 0, result.stderr
    header = re.sub(r" \\\n +", " ", result.stdout.split("Answers used")[0])  # join wrapped shell lines
    assert f"dropout-advisor generate --plan {plan}" in header
    assert "class GAT(nn.Module)" in result.stdout


def test_bad_plan_json_names_the_file(runner, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text("{not json", encoding="utf-8")
    result = runner.invoke(app, ["generate", "--plan", str(plan), "-o", "-"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {plan}: not a valid plan")
    assert "hint: write one with 'dropout-advisor recommend" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("name", ["answers.toml", "answers.txt"])
def test_an_answers_file_given_as_a_plan_is_pointed_at_answers(runner, tmp_path, name):
    answers = tmp_path / name
    answers.write_text('arch = "mlp"\nlayers = 2\n', encoding="utf-8")
    result = runner.invoke(app, ["generate", "--plan", str(answers), "-o", "-"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {answers}: not a valid plan: a plan is the JSON")
    assert f"hint: this looks like an answers file: pass it as --answers {answers}" in result.stderr


def test_plan_with_a_missing_field_names_the_field(runner, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema_version": 1, "spec": {"arch": "mlp"}}), encoding="utf-8")
    result = runner.invoke(app, ["generate", "--plan", str(plan), "-o", "-"])
    assert result.exit_code == 2
    assert "field 'layers'" in result.stderr


def test_plan_and_spec_flags_do_not_mix(runner, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text("{}", encoding="utf-8")
    result = runner.invoke(app, ["generate", "--plan", str(plan), "--arch", "mlp", "-o", "-"])
    assert result.exit_code == 2
    assert "--arch cannot be combined with it" in result.stderr


def test_unsupported_network_is_exit_2(runner):
    result = runner.invoke(app, ["generate", "--arch", "rnn", "--task", "seq2seq", "-o", "-"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: generate has no template for a seq2seq RNN")
    assert "hint:" in result.stderr


def test_missing_arch_is_exit_2(runner):
    result = runner.invoke(app, ["generate", "-o", "-"])
    assert result.exit_code == 2
    assert "arch" in result.stderr.splitlines()[0]


def test_generate_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from advisor.cli import app\n"
        f"r = CliRunner().invoke(app, ['generate', '--arch', 'transformer', '-o', {str(tmp_path / 'm.py')!r}])\n"
        "assert r.exit_code == 0, r.stderr\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- smoke ----


@pytest.fixture
def model_file(runner, tmp_path) -> Path:
    path = tmp_path / "model.py"
    result = runner.invoke(app, ["generate", "--arch", "mlp", "--layers", "1", "-o", str(path)])
    assert result.exit_code == 0, result.stderr
    return path


def test_smoke_passes(runner, model_file):
    pytest.importorskip("torch")
    result = runner.invoke(app, ["smoke", str(model_file), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{model_file}: smoke test passed on cpu")
    assert "ms per step" in result.stdout and "parameters:" in result.stdout
    assert result.stderr == ""


def test_smoke_json(runner, model_file):
    pytest.importorskip("torch")
    result = runner.invoke(app, ["smoke", str(model_file), "--device", "cpu", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1  # as every data command's JSON
    assert (
        data["ok"] is True and data["device"] == "cpu" and data["dropout_sites"] == 2
    )  # tabular: input 0.2 (DRP002) and hidden
    assert data["end_loss"] <= data["start_loss"] / 2


def test_smoke_unknown_device_lists_the_available_ones(runner, model_file):
    pytest.importorskip("torch")
    result = runner.invoke(app, ["smoke", str(model_file), "--device", "tpu"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown device 'tpu'")
    assert "available here: cpu" in result.stderr


def test_smoke_unavailable_device_is_exit_2(runner, model_file):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = runner.invoke(app, ["smoke", str(model_file), "--device", "cuda"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: device 'cuda' is not available here")
    assert "hint: available devices: cpu" in result.stderr


def test_smoke_import_failure_shows_the_users_line(runner, tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "broken.py"
    path.write_text("import torch\n\nscale = 1\nsize = scale / 0\n", encoding="utf-8")
    result = runner.invoke(app, ["smoke", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: broken.py failed to import: ZeroDivisionError: division by zero")
    assert "broken.py:4: size = scale / 0" in result.stderr
    assert "Traceback" not in result.stderr and "hint:" in result.stderr


def test_smoke_syntax_error_shows_the_users_line(runner, tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "broken.py"
    path.write_text("def f(:\n    pass\n", encoding="utf-8")
    result = runner.invoke(app, ["smoke", str(path)])
    assert result.exit_code == 2
    assert "broken.py:1: def f(:" in result.stderr


def test_smoke_file_without_a_smoke_test(runner, tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "plain.py"
    path.write_text("x = 1\n", encoding="utf-8")
    result = runner.invoke(app, ["smoke", str(path)])
    assert result.exit_code == 2
    assert "has no smoke_test() function" in result.stderr


def test_smoke_failed_check_is_exit_1(runner, model_file):
    pytest.importorskip("torch")
    code = model_file.read_text(encoding="utf-8").replace("SMOKE_LR = 1e-2", "SMOKE_LR = 0.0")
    model_file.write_text(code, encoding="utf-8")
    result = runner.invoke(app, ["smoke", str(model_file), "--device", "cpu", "--steps", "5"])
    assert result.exit_code == 1
    assert "smoke test FAILED on cpu: the eval loss went from" in result.stdout
    assert "must at least halve" in result.stdout


def test_generated_file_runs_as_a_script(runner, model_file):
    pytest.importorskip("torch")
    out = subprocess.run(
        [sys.executable, str(model_file), "--device", "cpu"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "device: cpu"
    assert lines[1].startswith("parameters: ")
    assert any("ms per step" in line for line in lines)
    assert lines[-2] == "smoke test passed"
    assert lines[-1] == "audit its dropout: dropout-advisor audit model.py:build_model --input-shape 8,32"


def test_generated_file_rejects_an_unavailable_device(model_file):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = subprocess.run(
        [sys.executable, str(model_file), "--device", "cuda"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "error: device 'cuda' is not available; available: cpu"
