"""Installation: torch is optional and never capped; without it, the torch commands say what to install."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]

# Runs the CLI with every import of torch failing as it does where torch is not installed.
NO_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
sys.argv = ["dropout-advisor", *sys.argv[1:]]
from advisor.cli import main

main()
"""


def _no_torch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def _torch_requirements(requirements: list[str]) -> list[Requirement]:
    return [r for r in map(Requirement, requirements) if r.name == "torch"]


def test_torch_is_not_a_base_requirement():
    assert _torch_requirements(PYPROJECT["dependencies"]) == []


@pytest.mark.parametrize("extra", ["torch", "experiment", "dev"])
def test_extras_that_run_tensors_bring_torch(extra):
    assert _torch_requirements(PYPROJECT["optional-dependencies"][extra])


def test_torch_has_no_upper_bound_anywhere():
    every = list(PYPROJECT["dependencies"]) + [r for reqs in PYPROJECT["optional-dependencies"].values() for r in reqs]
    for req in _torch_requirements(every):
        operators = {spec.operator for spec in req.specifier}
        assert operators <= {">=", ">", "!="}, f"{req}: an upper bound would downgrade the user's torch"


def test_metadata_names_python_3_11_to_3_14_and_the_license():
    classifiers = set(PYPROJECT["classifiers"])
    for minor in (11, 12, 13, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert PYPROJECT["requires-python"] == ">=3.11"
    assert PYPROJECT["license"] == "MIT"
    assert "MIT License" in (REPO / "LICENSE").read_text(encoding="utf-8")
    assert {"Homepage", "Repository", "Issues"} <= set(PYPROJECT["urls"])


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["audit", "model.py:Net", "-s", "2,4"], "pip install 'dropout-advisor[torch]'"),
        (["smoke", "model.py"], "pip install 'dropout-advisor[torch]'"),
        (["experiment", "--seeds", "1"], "pip install 'dropout-advisor[experiment]'"),
    ],
)
def test_torch_commands_without_torch_say_what_to_install(tmp_path, args, hint):
    result = _no_torch(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"error: '{args[0]}' needs PyTorch, which is not installed", f"hint: {hint}"]
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["recommend", "--arch", "cnn"],
        ["explain", "DRP001"],
        ["refs", "bibtex", "srivastava2014"],
        ["generate", "--arch", "transformer", "-o", "model.py"],
        ["ask", "should dropout go before batch norm?"],
    ],
)
def test_knowledge_and_code_commands_work_without_torch(tmp_path, args):
    result = _no_torch(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
