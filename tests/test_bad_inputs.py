"""Every command's bad-input battery: each wrong input ends in one ``error:`` line, a ``hint:``, a documented
exit code, and never a traceback (issue 12). Most go through CliRunner; a few through a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from advisor.cli import app

MODELS = Path(__file__).parent / "audit_models"
CASES = Path(__file__).parent / "audit_models"
CLEAN = f"{MODELS / 'clean.py'}:Net"

# (arguments, exit code). Files the arguments name are made by the `files` fixture in the current folder.
BATTERY: dict[str, list[tuple[list[str], int]]] = {
    "root": [
        ([], 0),  # no command: the help, exit 0
        (["nonsense"], 2),
        (["--bogus"], 2),
        (["list", "extra-arg"], 2),
    ],
    "list": [
        (["list", "--category", "nope"], 2),
        (["list", "--format", "yaml"], 2),
        (["list", "-c"], 2),
    ],
    "explain": [
        (["explain"], 2),
        (["explain", "DRP999"], 1),
        (["explain", "not-a-rule"], 1),
        (["explain", "DRP001", "--format", "pdf"], 2),
        (["explain", ""], 1),
    ],
    "refs": [
        (["refs", "show"], 2),
        (["refs", "show", "nobody2099"], 1),
        (["refs", "search"], 2),
        (["refs", "search", "zzzzqqq"], 1),
        (["refs", "search", "dropout", "--limit", "0"], 2),
        (["refs", "search", "dropout", "--limit", "many"], 2),
        (["refs", "bibtex", "nobody2099"], 1),
        (["refs", "bibtex", "-o", "folder"], 2),
        (["refs", "bibtex", "-o", "existing.txt"], 2),
        (["refs", "bibtex", "-o", "missing/refs.bib"], 2),
        (["refs", "nothing"], 2),
    ],
    "recipes": [
        (["recipes", "show"], 2),
        (["recipes", "show", "no-such-net"], 1),
        (["recipes", "show", "bert-base", "--format", "pdf"], 2),
        (["recipes", "list", "--format", "yaml"], 2),
        (["recipes", "nothing"], 2),
    ],
    "recommend": [
        (["recommend"], 2),
        (["recommend", "--arch", "mpl"], 2),
        (["recommend", "--arch", "cnn", "--layers", "0"], 2),
        (["recommend", "--arch", "cnn", "--layers", "-3"], 2),
        (["recommend", "--arch", "cnn", "--layers", "many"], 2),
        (["recommend", "--arch", "cnn", "--layers", "99999999999999999999"], 2),
        (["recommend", "--arch", "mlp", "--width", "0"], 2),
        (["recommend", "--arch", "cnn", "--samples", "lots"], 2),
        (["recommend", "--arch", "cnn", "--samples", "nan"], 2),
        (["recommend", "--arch", "cnn", "--samples", "inf"], 2),
        (["recommend", "--arch", "cnn", "--samples", "-5k"], 2),
        (["recommend", "--arch", "cnn", "--samples", "1e999"], 2),
        (["recommend", "--arch", "cnn", "--params", "0"], 2),
        (["recommend", "--arch", "cnn", "--overfitting", "very"], 2),
        (["recommend", "--arch", "cnn", "--pooling", "median"], 2),
        (["recommend", "--arch", "rnn", "--cell", "transformer"], 2),
        (["recommend", "--answers", "missing.toml"], 2),
        (["recommend", "--answers", "folder"], 2),
        (["recommend", "--answers", "bad.toml"], 2),
        (["recommend", "--answers", "binary.toml"], 2),
        (["recommend", "--answers", "/dev/zero"], 2),
        (["recommend", "--arch", "cnn", "--format", "yaml"], 2),
        (["recommend", "--arch", "cnn", "--save-answers", "existing.txt"], 2),
        (["recommend", "--arch", "cnn", "--save-answers", "folder"], 2),
        (["recommend", "--arch", "cnn", "--save-answers", "/dev/full"], 2),
    ],
    "ask": [
        (["ask", "--arch", "mpl"], 2),
        (["ask", "why?", "--limit", "0"], 2),
        (["ask", "--answers", "missing.toml"], 2),
    ],
    "generate": [
        (["generate"], 2),
        (["generate", "--arch", "mpl"], 2),
        (["generate", "--arch", "mlp", "-o", "existing.txt"], 2),
        (["generate", "--arch", "mlp", "-o", "folder"], 2),
        (["generate", "--arch", "mlp", "-o", "/dev/full"], 2),
        (["generate", "--arch", "mlp", "-o", "missing/model.py"], 2),
        (["generate", "--arch", "mlp", "--mc-samples", "1"], 2),
        (["generate", "--arch", "mlp", "--mc-samples", "x"], 2),
        (["generate", "--arch", "mlp", "-o", "-", "--diff"], 2),
        (["generate", "--arch", "mlp", "--diff", "--dry-run"], 2),
        (["generate", "--plan", "missing.json"], 2),
        (["generate", "--plan", "bad.toml"], 2),
        (["generate", "--plan", "folder"], 2),
        (["generate", "--plan", "plan.json", "--arch", "cnn"], 2),
        (["generate", "--arch", "rnn", "--task", "seq2seq"], 2),
    ],
    "smoke": [
        (["smoke"], 2),
        (["smoke", "missing.py"], 2),
        (["smoke", "folder"], 2),
        (["smoke", "bad.toml"], 2),
        (["smoke", "exits.py"], 2),
        (["smoke", "syntax.py"], 2),
        (["smoke", "no_smoke.py"], 2),
        (["smoke", "model.py", "--device", "tpu"], 2),
        (["smoke", "model.py", "--steps", "0"], 2),
        (["smoke", "model.py", "--steps", "-1"], 2),
        (["smoke", "model.py", "--seed", "-1"], 2),
        (["smoke", "model.py", "--seed", "99999999999999999999999"], 2),
        (["smoke", "model.py", "--format", "xml"], 2),
    ],
    "audit": [
        (["audit"], 2),
        (["audit", CLEAN], 2),
        (["audit", "missing.py:Net", "-s", "2,3"], 2),
        (["audit", "folder:Net", "-s", "2,3"], 2),
        (["audit", "exits.py:Net", "-s", "2,3"], 2),
        (["audit", "syntax.py:Net", "-s", "2,3"], 2),
        (["audit", CLEAN, "-s", "a,b"], 2),
        (["audit", CLEAN, "-s", "0,3"], 2),
        (["audit", CLEAN, "-s", "-2,3"], 2),
        (["audit", CLEAN, "-s", "2,x"], 2),
        (["audit", CLEAN, "-s", "2,3,x"], 2),
        (["audit", CLEAN, "-s", "2,,3"], 2),
        (["audit", CLEAN, "-s", "2,3.5"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--kwargs", "{bad"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--kwargs", "[1]"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--kwargs", '{"nope": 1}'], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--format", "xml"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--fail-on", "panic"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--device", "tpu"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--allow", "no-colon"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--config", "missing.toml"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--config", "bad.toml"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "-o", "existing.txt"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "-o", "folder"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "-o", "/dev/full"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--input-dtype", "int"], 2),
        (["audit", CLEAN, "-s", "2,5,5"], 2),
        (["audit", "no_colon_target", "-s", "2,3"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--baseline", "missing.sarif"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--baseline", "bad.toml"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--baseline", "folder"], 2),
        (["audit", CLEAN, "-s", "2,3,16,16", "--baseline", "plan.json"], 2),
        (["audit", "exits.py:Net", "-s", "2,3", "--format", "sarif"], 2),
        (["audit", "not.a.module:Net", "-s", "2,3"], 2),
    ],
    "experiment": [
        (["experiment", "--train-fraction", "1.5"], 2),
        (["experiment", "--train-fraction", "0"], 2),
        (["experiment", "--train-fraction", "-0.5"], 2),
        (["experiment", "--train-fraction", "nan"], 2),
        (["experiment", "--train-fraction", "inf"], 2),
        (["experiment", "--train-fraction", "-inf"], 2),
        (["experiment", "--train-fraction", "half"], 2),
        (["experiment", "--train-fraction", "0.0001"], 2),
        (["experiment", "--seeds", "0"], 2),
        (["experiment", "--seeds", "1000"], 2),
        (["experiment", "--epochs", "0"], 2),
        (["experiment", "--batch-size", "1"], 2),
        (["experiment", "--dataset", "mnist"], 2),
        (["experiment", "--arch", "rnn"], 2),
        (["experiment", "--dataset", "wine", "--arch", "cnn"], 2),
        (["experiment", "--variants", "nope"], 2),
        (["experiment", "--variants", ""], 2),
        (["experiment", "--variants", ",,"], 2),
        (["experiment", "--out", "existing.txt"], 2),
        (["experiment", "--out", "/dev/null"], 2),
        (["experiment", "--out", "nonempty"], 2),
        (["experiment", "--device", "tpu"], 2),
        (["experiment", "--format", "csv"], 2),
    ],
}

IDS = [(name, i) for name, cases in BATTERY.items() for i in range(len(cases))]


@pytest.fixture
def files(tmp_path, monkeypatch) -> Path:
    """The files the battery names, in a fresh current folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "nonempty").mkdir()
    (tmp_path / "nonempty" / "results.json").write_text("{}")
    (tmp_path / "existing.txt").write_text("keep me\n")
    (tmp_path / "bad.toml").write_text("arch = [unclosed\n")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "plan.json").write_text("{}")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit('bye from the model file')\n")
    (tmp_path / "syntax.py").write_text("def broken(:\n    pass\n")
    (tmp_path / "no_smoke.py").write_text("x = 1\n")
    (tmp_path / "model.py").write_text("def smoke_test(**kwargs):\n    return {}\n")
    return tmp_path


@pytest.mark.parametrize(("command", "index"), IDS, ids=[f"{c}-{i}" for c, i in IDS])
def test_bad_input_is_one_error_line_with_a_hint(runner, files, command, index):
    args, code = BATTERY[command][index]
    before = {p: p.read_bytes() for p in files.rglob("*") if p.is_file()}
    result = runner.invoke(app, args)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    assert result.exit_code == code, (args, result.exit_code, result.stdout[-500:], result.stderr[-1500:])
    if code != 0:
        lines = result.stderr.splitlines()
        assert lines and lines[0].startswith("error: "), result.stderr
        assert any(line.startswith("hint: ") for line in lines), result.stderr
    after = {p: p.read_bytes() for p in files.rglob("*") if p.is_file()}
    assert {p: b for p, b in after.items() if p in before} == before, "a bad input changed a file"


# A few through a real process: the same rules with the real stdout, stderr and exit status.
REAL = [
    ["experiment", "--train-fraction", "nan"],
    ["generate", "--arch", "mlp", "-o", "/dev/full"],
    ["smoke", "exits.py"],
    ["audit", CLEAN, "-s", "2,3,16,16", "-o", "existing.txt"],
    ["recommend", "--answers", "folder"],
    ["explain", "DRP999"],
]


@pytest.mark.parametrize("args", REAL, ids=[" ".join(a[:2]) for a in REAL])
def test_bad_input_in_a_real_process(files, args):
    result = subprocess.run(
        [sys.executable, "-m", "advisor", *args], cwd=files, capture_output=True, text=True, timeout=120, check=False
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode in (1, 2)
    assert result.stderr.startswith("error: ")
    assert "\nhint: " in result.stderr
