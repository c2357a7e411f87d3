"""The README's generated overview is current, and a built wheel works from outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    return next(dist.glob("*.whl"))


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(name).decode("utf-8"))


@pytest.mark.slow
def test_wheel_metadata_never_requires_or_caps_torch(wheel):
    meta = _metadata(wheel)
    torch = [Requirement(r) for r in meta.get_all("Requires-Dist", []) if Requirement(r).name == "torch"]
    assert torch, "the torch extra must bring torch"
    for req in torch:
        assert req.marker is not None and "extra" in str(req.marker), f"{req}: torch must stay optional"
        assert {s.operator for s in req.specifier} <= {">=", ">", "!="}, f"{req}: no upper bound on torch"
    assert {"torch", "experiment", "dev"} <= set(meta.get_all("Provides-Extra", []))
    assert meta["License-Expression"] == "MIT"
    assert "Programming Language :: Python :: 3.14" in meta.get_all("Classifier", [])
    with zipfile.ZipFile(wheel) as zf:
        assert any(n.endswith("licenses/LICENSE") for n in zf.namelist())


@pytest.mark.slow
def test_wheel_installs_and_runs_from_another_directory(tmp_path, wheel):
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
