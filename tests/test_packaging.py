"""The README's generated overview is current, and a built wheel works from outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from advisor.docs import render_readme

REPO = Path(__file__).resolve().parent.parent


def test_readme_knowledge_overview_is_current(kb):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert render_readme(text, kb) == text, "README.md is stale: run 'python -m advisor.docs'"


def test_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "python -m pytest" in readme
    assert ci.rstrip().splitlines()[-1] == "python -m pytest"
    assert ci.index("torch==2.13.0") < ci.index("-e '.[dev]'")


@pytest.mark.slow
def test_wheel_installs_and_runs_from_another_directory(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    wheel = next(dist.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("advisor/knowledge/recommendations/") for n in names)
    assert any(n.startswith("advisor/knowledge/citations/") for n in names)
    assert any(n.startswith("advisor/templates/") for n in names)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))
    where = subprocess.run(
        [sys.executable, "-c", "import advisor; print(advisor.__file__)"],
        cwd=elsewhere,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target))
    result = subprocess.run(
        [sys.executable, "-m", "advisor", "explain", "DRP009", "-f", "markdown"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Wide ResNet" in result.stdout
    plan = subprocess.run(
        [sys.executable, "-m", "advisor", "recommend", "--arch", "cnn", "-f", "json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert plan.returncode == 0 and '"sites"' in plan.stdout
