"""`dropout-advisor tune` end to end on the embedded SQLite storage: a short study, its report and files,
reproducibility, resuming, and the user errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys

import pytest
from typer.testing import CliRunner

from advisor.cli import app

SHORT = ["--dataset", "wine", "--trials", "6", "--epochs", "4", "--seeds", "2", "--top", "2"]


def _tune(*args: str):
    return CliRunner().invoke(app, ["tune", *args])


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "run"
    return _tune(*SHORT, "--out", str(out)), out


def _report(out):
    return json.loads((out / "report.json").read_text())


def _trials(out):
    return [(t["number"], t["state"], t["params"], t["value"]) for t in json.loads((out / "trials.json").read_text())]


def test_short_study_succeeds_quietly_on_stderr(short_run):
    result, _ = short_run
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # no progress bar and no Optuna log lines when stderr is not a terminal


def test_short_study_prints_a_table_of_the_top_configurations_the_plan_and_no_dropout(short_run):
    result, _ = short_run
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#"))
    marks = [line.split()[0] for line in lines[header + 2 : header + 6]]
    assert marks[-2:] == ["plan", "none"] and marks[0] == "1"
    assert "test acc %" in lines[header] and "vs best" in lines[header]
    assert any(line.startswith("the advisor's plan ") for line in lines)
    assert any(line.startswith("no dropout ") for line in lines)


def test_every_row_is_judged_against_the_best_with_the_same_rule(short_run):
    # the top configurations get the paired within-noise verdict the plan's and no dropout's rows get, so a
    # top row identical to the plan reads the same as the plan's row
    from advisor.tune.report import rows
    from advisor.tune.results import TuneReport

    _, out = short_run
    report = TuneReport.model_validate_json((out / "report.json").read_text())
    verdict = re.compile(r"= best|≈ \S+ pp \(noise.*\)|\S+ pp \((worse|better).*\)")
    for config, row in zip(report.configs, rows(report), strict=True):
        assert row[-1] == "best" if config.best else verdict.fullmatch(row[-1]), row[-1]


def test_short_study_writes_every_file(short_run):
    _, out = short_run
    for name in ("tune.json", "study.db", "report.json", "trials.json", "trials.csv"):
        assert (out / name).is_file(), name
    for name in ("history.png", "importance.png", "rates.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_the_study_holds_exactly_the_trials_asked_for(short_run):
    _, out = short_run
    study = _report(out)["study"]
    assert study["complete"] + study["pruned"] == 6
    assert study["failed"] == 0 and study["running"] == 0


def test_the_first_trial_is_the_advisors_plan(short_run):
    _, out = short_run
    report = _report(out)
    first = report["trials"][0]
    assert first["params"] == report["config"]["space"]["advisor_params"]
    assert first["params"]["placement"] == "advisor"


def test_each_trial_stores_its_seed_and_curves(short_run):
    _, out = short_run
    for t in json.loads((out / "trials.json").read_text()):
        assert t["seed"] == 0
        if t["state"] == "complete":
            assert len(t["val_loss"]) == len(t["val_acc"]) == 4


def test_trials_csv_has_a_row_per_trial_and_a_column_per_group(short_run):
    _, out = short_run
    lines = (out / "trials.csv").read_text().splitlines()
    assert lines[0].startswith("number,state,value,placement,p_input,p_hidden,seed")
    assert len(lines) == 1 + 6


def test_reruns_use_fresh_paired_seeds_for_every_configuration(short_run):
    _, out = short_run
    report = _report(out)
    assert [r["seed"] for c in report["configs"] for r in c["runs"]] == [1, 2] * len(report["configs"])
    roles = [c["role"] for c in report["configs"]]
    assert roles.count("advisor") == 1 and roles.count("none") == 1
    assert sum(c["best"] for c in report["configs"]) == 1
    assert {c["role"] for c in report["comparisons"]} == {"advisor", "none"}


def test_comparisons_are_paired_seed_by_seed(short_run):
    _, out = short_run
    report = _report(out)
    best = next(c for c in report["configs"] if c["best"])
    for cmp in report["comparisons"]:
        other = next(c for c in report["configs"] if c["role"] == cmp["role"])
        expected = [a["test_acc"] - b["test_acc"] for a, b in zip(other["runs"], best["runs"], strict=True)]
        assert cmp["deltas"] == pytest.approx(expected)
        assert cmp["verdict"] in ("same", "within-noise", "worse", "better")


def test_same_command_and_seed_give_the_same_trials_and_numbers(short_run, tmp_path):
    _, out = short_run
    again = tmp_path / "again"
    result = _tune(*SHORT, "--out", str(again))
    assert result.exit_code == 0, result.stderr
    assert _trials(again) == _trials(out)
    runs = [[r["test_acc"] for r in c["runs"]] for c in _report(out)["configs"]]
    assert [[r["test_acc"] for r in c["runs"]] for c in _report(again)["configs"]] == runs


def test_an_existing_output_folder_needs_force_or_resume(short_run):
    _, out = short_run
    result = _tune(*SHORT, "--out", str(out))
    assert result.exit_code == 2
    assert "error: output folder" in result.stderr and "already holds a tune run" in result.stderr
    assert "--resume" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_adds_trials_to_the_same_study(short_run, tmp_path):
    _, out = short_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = _tune("--resume", "--out", str(copy), "--trials", "8")
    assert result.exit_code == 0, result.stderr
    trials = _trials(copy)
    assert [t[0] for t in trials] == list(range(8))
    assert trials[:6] == _trials(out)  # the finished trials are kept as they were


def test_resume_refuses_flags_that_would_change_the_search(short_run):
    _, out = short_run
    result = _tune("--resume", "--out", str(out), "--epochs", "9", "--dataset", "wine")
    assert result.exit_code == 2
    assert "drop --dataset, --epochs" in result.stderr


def test_resume_of_a_folder_without_a_run(tmp_path):
    result = _tune("--resume", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "holds no tune run (tune.json is missing)" in result.stderr


def test_force_starts_a_new_study_in_the_folder(short_run, tmp_path):
    _, out = short_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "notes.txt").write_text("mine")
    result = _tune(
        "--dataset",
        "wine",
        "--trials",
        "2",
        "--epochs",
        "2",
        "--seeds",
        "1",
        "--top",
        "1",
        "--out",
        str(copy),
        "--force",
    )
    assert result.exit_code == 0, result.stderr
    assert [t[0] for t in _trials(copy)] == [0, 1]
    assert (copy / "notes.txt").read_text() == "mine"  # --force touches only a run's own files


def test_format_json_prints_the_report_without_per_trial_curves(tmp_path):
    result = _tune(
        "--dataset",
        "wine",
        "--trials",
        "2",
        "--epochs",
        "2",
        "--seeds",
        "1",
        "--top",
        "1",
        "--out",
        str(tmp_path / "j"),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert "trials" not in payload
    assert payload["files"]["report"].endswith("report.json")
    assert payload["study"]["complete"] + payload["study"]["pruned"] == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_storage_exits_2_without_printing_the_password(tmp_path):
    url = f"postgresql://tuner:Very-Secret-1@127.0.0.1:{_closed_port()}/studies"
    result = _tune(*SHORT, "--out", str(tmp_path / "o"), "--storage", url)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot reach the storage postgresql+psycopg://tuner:***@127.0.0.1")
    assert "hint:" in result.stderr
    assert "Very-Secret-1" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_study_searched_with_a_different_space_exits_2(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    common = [
        "--dataset",
        "wine",
        "--trials",
        "1",
        "--epochs",
        "2",
        "--seeds",
        "1",
        "--top",
        "1",
        "--storage",
        storage,
        "--study",
        "s",
    ]
    assert _tune(*common, "--out", str(tmp_path / "a")).exit_code == 0
    space = tmp_path / "space.toml"
    space.write_text("[rates.hidden]\nhigh = 0.3\n")
    result = _tune(*common, "--out", str(tmp_path / "b"), "--space", str(space))
    assert result.exit_code == 2
    assert "study 's'" in result.stderr and "was created with a different search space" in result.stderr


def test_a_second_run_with_the_same_settings_joins_the_shared_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    common = ["--dataset", "wine", "--epochs", "2", "--seeds", "1", "--top", "1", "--storage", storage, "--study", "s"]
    assert _tune(*common, "--trials", "2", "--out", str(tmp_path / "a")).exit_code == 0
    result = _tune(*common, "--trials", "3", "--out", str(tmp_path / "b"))
    assert result.exit_code == 0, result.stderr
    assert [t[0] for t in _trials(tmp_path / "b")] == [0, 1, 2]  # one more trial, not three new ones


def test_without_optuna_the_command_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    result = _tune(*SHORT, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "error: 'tune' needs optuna" in result.stderr
    assert "hint: pip install 'dropout-advisor[experiment]'" in result.stderr


def test_without_psycopg_a_postgresql_storage_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    result = _tune(*SHORT, "--out", str(tmp_path / "o"), "--storage", "postgresql://tuner@127.0.0.1/x")
    assert result.exit_code == 2
    assert "needs the psycopg driver" in result.stderr
    assert "dropout-advisor[distributed]" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers must be 1 to 256"),
        (["--data", "nope.npz"], "give either --dataset or --data"),
        (["--target", "label"], "--target is for --data FILE.csv"),
        (["--arch", "cnn"], "'wine' is tabular; a CNN needs images"),
        (["--train-fraction", "1.5"], "'--train-fraction': must be a number in (0, 1], got 1.5"),
        (["--train-fraction", "nan"], "'--train-fraction': must be a number in (0, 1], got nan"),
        (["--trials", "0"], "Invalid value for '--trials'"),
        (["--seeds", "0"], "Invalid value for '--seeds'"),
        (["--base", "nosuchnet"], "nosuchnet"),
        (["--base", "bert-base"], "but --arch gives 'mlp'"),
        (["--out", "existing.txt"], "existing.txt exists and is not a folder"),
        (["--out", "/dev/null"], "/dev/null exists and is not a folder"),
        (["--storage", "ftp://host/x"], "unknown storage URL"),
        (["--space", "nope.toml"], "space file nope.toml does not exist"),
        (["--device", "tpu"], "Invalid value for '--device'"),
        (["--heartbeat", "0"], "Invalid value for '--heartbeat'"),
    ],
)
def test_bad_inputs_exit_2_with_an_error_and_a_hint(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing.txt").write_text("keep me\n")
    result = _tune(*SHORT, "--out", str(tmp_path / "o"), *args)
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and "\nhint: " in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()  # nothing written
    assert (tmp_path / "existing.txt").read_text() == "keep me\n"


def test_answers_describing_another_network_are_refused(tmp_path):
    answers = tmp_path / "a.toml"
    answers.write_text('arch = "mlp"\nlayers = 4\n')
    result = _tune(*SHORT, "--out", str(tmp_path / "o"), "--answers", str(answers))
    assert result.exit_code == 2
    assert "layers = 4, but tune trains experiment's MLP with layers = 2" in result.stderr


def test_answers_and_flags_shape_the_plan(tmp_path):
    from advisor.tune import setup

    answers = tmp_path / "a.toml"
    answers.write_text('arch = "mlp"\nregime = "pretraining"\nsamples = 50000\n')
    run = setup.NewRun(
        dataset="wine",
        data=None,
        target=None,
        arch=None,
        trials=1,
        epochs=2,
        batch_size=64,
        lr=5e-3,
        train_fraction=1.0,
        seed=0,
        seeds=1,
        top=1,
        space=None,
        answers=answers,
        spec_flags={"overfitting": "strong"},
        storage=None,
        study=None,
        workers=1,
        heartbeat_s=10,
        device="cpu",
        out=tmp_path / "o",
        force=False,
    )
    config, _, _, notes = setup.new_config(run)
    assert config.spec["regime"] == "pretraining" and config.spec["overfitting"] == "strong"
    assert [s.before for s in config.advisor_sites] == ["linear", "output"]  # pretraining: no input dropout
    assert "samples = 50000 is replaced by the data tune trains on" in notes[0]


@pytest.mark.slow
def test_on_a_terminal_it_shows_progress_bars_and_a_rich_table(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    args = ["-m", "advisor", "tune", "--dataset", "wine", "--trials", "2", "--epochs", "2", "--seeds", "1",
            "--top", "1", "--out", str(tmp_path / "o")]  # fmt: skip
    child = pexpect.spawn(sys.executable, args, dimensions=(40, 200), encoding="utf-8", timeout=180,
                          env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", child.before)
    assert re.search(r"search\s.*\d/2 trials", screen)  # the search's progress bar, on stderr
    assert re.search(r"re-runs\s.*\d/\d runs", screen)
    assert "┃ configuration" in screen  # rich's table header
