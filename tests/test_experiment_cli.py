"""`dropout-advisor experiment` end to end: a short run, its table, files and figure, and the user errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from advisor.cli import app
from advisor.experiment import runner as exp_runner
from advisor.experiment.variants import VARIANTS

SHORT = ["--epochs", "2", "--seeds", "1", "--train-fraction", "0.3"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """Every CNN variant, one seed, two epochs on 30% of digits."""
    out = tmp_path_factory.mktemp("exp") / "run"
    result = CliRunner().invoke(app, ["experiment", *SHORT, "--out", str(out)])
    return result, out


def test_short_run_succeeds_quietly_on_stderr(short_run):
    result, _ = short_run
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_short_run_prints_a_table_with_every_cnn_variant(short_run):
    result, _ = short_run
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#  variant"))
    rows = lines[header + 2 : header + 2 + len(VARIANTS["cnn"])]
    assert sorted(r.split()[1] for r in rows) == sorted(VARIANTS["cnn"])
    assert rows[0].rstrip().endswith("best")
    assert "test acc %" in lines[header]


def test_short_run_prints_where_the_files_are(short_run):
    result, out = short_run
    assert f"figure: {out / 'figure.png'}" in result.stdout
    assert f"results: {out / 'results.json'}" in result.stdout


def test_short_run_writes_json_with_every_run_and_the_advisor_sites(short_run):
    _, out = short_run
    data = json.loads((out / "results.json").read_text())
    assert data["complete"] is True
    assert len(data["runs"]) == len(VARIANTS["cnn"])
    assert all(len(r["epochs"]) == 2 for r in data["runs"])
    names = {v["name"]: v for v in data["variants"]}
    assert {"kind", "p", "after", "before"} <= set(names["advisor"]["sites"][0])
    assert data["noise_rule"].startswith("within noise")


def test_default_run_trains_the_batchnorm_controls_as_their_own_networks(short_run):
    _, out = short_run
    data = json.loads((out / "results.json").read_text())
    assert {"drop-before-bn", "bn-only", "bn-then-drop"} <= set(data["config"]["variants"])
    variants = {v["name"]: v for v in data["variants"]}
    for name in ("drop-before-bn", "bn-only", "bn-then-drop"):
        assert any("BatchNorm2d" in m for m in variants[name]["modules"]), name
        assert variants[name]["same_as"] == [], name  # BatchNorm keeps bn-only apart from fc-only
    assert [(s["after"], s["before"]) for s in variants["bn-then-drop"]["sites"]] == [
        ("activation", "pool"),
        ("activation", "pool"),
        ("activation", "output"),
    ]


def test_short_run_writes_a_csv_row_per_epoch(short_run):
    _, out = short_run
    lines = (out / "epochs.csv").read_text().splitlines()
    assert len(lines) == 1 + len(VARIANTS["cnn"]) * 2


def test_short_run_draws_a_png_that_is_not_blank(short_run):
    import matplotlib.image

    _, out = short_run
    png = out / "figure.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert float(pixels[..., :3].var()) > 0.01


def test_same_command_twice_gives_the_same_numbers(tmp_path):
    args = [
        "experiment",
        "--variants",
        "none,conv-relu-drop",
        "--epochs",
        "2",
        "--seeds",
        "1",
        "--train-fraction",
        "0.2",
        "--format",
        "json",
    ]
    a = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    b = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert a.exit_code == b.exit_code == 0
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja["ranking"] == jb["ranking"]
    assert (tmp_path / "a" / "epochs.csv").read_text() == (tmp_path / "b" / "epochs.csv").read_text()


def test_json_format_prints_only_json_with_the_file_paths(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "experiment",
            "--dataset",
            "wine",
            "--variants",
            "none",
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--format",
            "json",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config"]["arch"] == "mlp"
    assert data["files"]["figure"].endswith("figure.png")
    assert "epochs" not in data["runs"][0]


def test_existing_output_folder_is_not_overwritten_without_force(tmp_path):
    (tmp_path / "results.json").write_text("mine")
    result = CliRunner().invoke(
        app, ["experiment", "--variants", "none", "--epochs", "1", "--seeds", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: output folder")
    assert "--force" in result.stderr
    assert (tmp_path / "results.json").read_text() == "mine"


def test_force_writes_into_an_existing_folder(tmp_path):
    (tmp_path / "results.json").write_text("mine")
    result = CliRunner().invoke(
        app,
        [
            "experiment",
            "--dataset",
            "wine",
            "--variants",
            "none",
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--out",
            str(tmp_path),
            "--force",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is True


def test_without_out_it_writes_a_fresh_numbered_folder_under_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["experiment", "--dataset", "wine", "--variants", "none", "--epochs", "1", "--seeds", "1"]
    first = CliRunner().invoke(app, args)
    second = CliRunner().invoke(app, args)
    assert first.exit_code == second.exit_code == 0
    assert (tmp_path / "results" / "wine-mlp" / "results.json").is_file()
    assert (tmp_path / "results" / "wine-mlp-2" / "results.json").is_file()


def test_unknown_variant_gets_a_suggestion_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["experiment", "--variants", "none,dropout-2d", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "did you mean 'dropout2d'" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "o").exists()


def test_unknown_dataset_gets_a_suggestion_and_exit_2():
    result = CliRunner().invoke(app, ["experiment", "--dataset", "breast_cancer"])
    assert result.exit_code == 2
    assert "did you mean 'breast-cancer'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    result = CliRunner().invoke(app, ["experiment"])
    assert result.exit_code == 2
    assert "scikit-learn" in result.stderr
    assert "hint: pip install 'dropout-advisor[experiment]'" in result.stderr


def test_ctrl_c_saves_the_finished_runs_says_where_and_exits_130(tmp_path, monkeypatch):
    real = exp_runner.train_run
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(exp_runner, "train_run", flaky)
    out = tmp_path / "partial"
    result = CliRunner().invoke(
        app,
        [
            "experiment",
            "--dataset",
            "wine",
            "--variants",
            "none,hidden-only",
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 130
    assert f"saved the 1 finished run(s) of 2 to {out}" in result.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["complete"] is False and [r["variant"] for r in data["runs"]] == ["none"]


def test_ctrl_c_before_any_run_writes_nothing(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exp_runner, "train_run", interrupted)
    out = tmp_path / "none"
    result = CliRunner().invoke(
        app,
        ["experiment", "--dataset", "wine", "--variants", "none", "--epochs", "1", "--seeds", "1", "--out", str(out)],
    )
    assert result.exit_code == 130
    assert "nothing was written" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cnn_on_tabular_data_is_a_usage_error():
    result = CliRunner().invoke(app, ["experiment", "--dataset", "wine", "--arch", "cnn"])
    assert result.exit_code == 2
    assert "error: 'wine' is tabular" in result.stderr


def test_importing_the_cli_loads_neither_torch_nor_the_extras():
    code = "import sys, advisor.cli; print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_on_a_terminal_it_shows_a_progress_bar_and_a_rich_table(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    args = ["-m", "advisor", "experiment", "--variants", "none", "--epochs", "2", "--seeds", "1",
            "--train-fraction", "0.2", "--out", str(tmp_path / "o")]  # fmt: skip
    child = pexpect.spawn(sys.executable, args, dimensions=(40, 160), encoding="utf-8", timeout=90,
                          env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", child.before)  # rich still bolds under NO_COLOR
    assert re.search(r"\d+/2 epochs", screen)  # the progress bar's counter, on stderr
    assert "┃ variant" in screen  # rich's table header


def test_the_names_in_the_help_match_the_registries():
    from advisor.experiment import DATASET_NAMES, VARIANT_NAMES
    from advisor.experiment.datasets import DATASETS

    assert tuple(DATASETS) == DATASET_NAMES
    assert {arch: tuple(table) for arch, table in VARIANTS.items()} == VARIANT_NAMES
