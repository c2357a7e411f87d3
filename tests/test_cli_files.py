"""Every command that writes a file: only regular files (or new paths) are read or replaced, failures are
one error line with a hint and exit 2, and nothing is half-written."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from advisor import fileio
from advisor.cli import app

MODELS = Path(__file__).parent / "audit_models"
GENERATE = ["generate", "--arch", "mlp", "--layers", "2"]


def assert_refused(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert "\nhint: " in result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A real process with a time limit: a command that reads a device or opens a pipe would hang here."""
    return subprocess.run(
        [sys.executable, "-m", "advisor", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.py"
    os.mkfifo(path)
    return path


# ---- devices and pipes, through a real process ---------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--force"], ["--diff"], ["--dry-run"]])
def test_generate_to_dev_full_is_refused_at_once(tmp_path, extra):
    result = _cli(*GENERATE, "-o", "/dev/full", *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0] == "error: /dev/full is a device, not a regular file"
    assert result.stderr.splitlines()[1].startswith("hint: ")


@pytest.mark.parametrize("extra", [[], ["--force"], ["--diff"]])
def test_generate_to_a_named_pipe_does_not_hang(tmp_path, fifo, extra):
    result = _cli(*GENERATE, "-o", str(fifo), *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "is a named pipe, not a regular file" in result.stderr
    assert fifo.is_fifo()


def test_refs_bibtex_to_a_device_is_refused(tmp_path):
    result = _cli("refs", "bibtex", "-o", "/dev/full", "--force", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: /dev/full is a device")


def test_recommend_save_answers_to_a_pipe_is_refused(tmp_path, fifo):
    result = _cli("recommend", "--arch", "cnn", "--save-answers", str(fifo), "--force", cwd=tmp_path)
    assert result.returncode == 2
    assert "is a named pipe" in result.stderr


def test_answers_from_a_device_are_refused(tmp_path):
    result = _cli("recommend", "--answers", "/dev/zero", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: answers file /dev/zero is a device, not a regular file")


# ---- symbolic links and read-only files ----------------------------------------------------------


def test_generate_force_on_a_symlink_writes_through_and_says_so(runner, tmp_path):
    target = tmp_path / "real.py"
    target.write_text("# old\n")
    link = tmp_path / "model.py"
    link.symlink_to(target)
    result = runner.invoke(app, [*GENERATE, "-o", str(link), "--force"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith(f"replaced {link} (through the symbolic link to {target}): MLP")
    assert link.is_symlink()
    assert "class MLP" in target.read_text()


def test_generate_without_force_on_a_symlink_names_its_target(runner, tmp_path):
    target = tmp_path / "real.py"
    target.write_text("# old\n")
    link = tmp_path / "model.py"
    link.symlink_to(target)
    result = runner.invoke(app, [*GENERATE, "-o", str(link)])
    assert_refused(result, f"{link} (a symbolic link to {target}) already exists")
    assert target.read_text() == "# old\n"


def test_generate_force_does_not_replace_a_read_only_file(runner, tmp_path):
    path = tmp_path / "model.py"
    path.write_text("# mine\n")
    path.chmod(0o444)
    result = runner.invoke(app, [*GENERATE, "-o", str(path), "--force"])
    assert_refused(result, "is read-only", "chmod u+w")
    assert path.read_text() == "# mine\n"


def test_generate_on_a_full_disk_writes_nothing(runner, tmp_path, monkeypatch):
    real_write = os.write

    def full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(fileio.os, "write", full)
    result = runner.invoke(app, [*GENERATE, "-o", str(tmp_path / "model.py")])
    monkeypatch.undo()
    assert_refused(result, "No space left on device", "free some space")
    assert list(tmp_path.iterdir()) == []


# ---- audit -o refuses before it spends the audit -------------------------------------------------


def test_audit_output_that_exists_is_refused_before_the_audit(runner, tmp_path, monkeypatch):
    from advisor.audit import load

    out = tmp_path / "report.json"
    out.write_text("{}")
    calls = []
    monkeypatch.setattr(load, "audit_target", lambda *a, **k: calls.append(a))
    result = runner.invoke(app, ["audit", f"{MODELS / 'clean.py'}:Net", "-s", "2,3,16,16", "-o", str(out)])
    assert_refused(result, "already exists", "--force")
    assert calls == []
    assert out.read_text() == "{}"


def test_audit_output_to_a_device_is_refused_before_the_audit(runner, monkeypatch):
    from advisor.audit import load

    calls = []
    monkeypatch.setattr(load, "audit_target", lambda *a, **k: calls.append(a))
    result = runner.invoke(app, ["audit", f"{MODELS / 'clean.py'}:Net", "-s", "2,3,16,16", "-o", "/dev/full"])
    assert_refused(result, "/dev/full is a device")
    assert calls == []


def test_experiment_output_that_is_a_device_is_refused(runner):
    result = runner.invoke(app, ["experiment", "--out", "/dev/null", "--seeds", "1", "--epochs", "1"])
    assert_refused(result, "/dev/null exists and is not a folder")
