"""list / explain / refs through the CLI: exit codes, stdout and stderr kept apart."""

from __future__ import annotations

import json
import subprocess
import sys

from advisor.cli import app


def test_list_shows_every_active_recommendation(runner, kb):
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.stderr
    for rec in kb.active():
        assert rec.id in result.stdout
    assert result.stderr == ""


def test_list_json_has_schema_version(runner, kb):
    result = runner.invoke(app, ["list", "--format", "json"])
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    assert {r["id"] for r in data["recommendations"]} == {r.id for r in kb.active()}


def test_list_category_filter_and_unknown_category(runner):
    ok = runner.invoke(app, ["list", "-c", "implementation"])
    assert ok.exit_code == 0 and "DRP301" in ok.stdout and "DRP001" not in ok.stdout
    bad = runner.invoke(app, ["list", "-c", "placment"])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: unknown category 'placment'")
    assert "hint: choose one of" in bad.stderr


def test_explain_prints_every_section(runner):
    result = runner.invoke(app, ["explain", "DRP001"])
    assert result.exit_code == 0
    for heading in (
        "## Why",
        "## Where",
        "## Applies to",
        "## Does not apply to",
        "## Example",
        "## Sources",
    ):
        assert heading in result.stdout
    assert "srivastava2014" in result.stdout


def test_explain_by_audit_slug(runner):
    result = runner.invoke(app, ["explain", "dropout-before-batchnorm"])
    assert result.exit_code == 0
    assert "DRP101" in result.stdout


def test_explain_unknown_id_exits_1_with_suggestion(runner):
    result = runner.invoke(app, ["explain", "DRP0012"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: no recommendation with ID or rule 'DRP0012'"
    assert lines[1].startswith("hint: did you mean")


def test_explain_json_and_markdown(runner):
    data = json.loads(runner.invoke(app, ["explain", "DRP001", "-f", "json"]).stdout)
    assert data["recommendations"][0]["id"] == "DRP001"
    md = runner.invoke(app, ["explain", "DRP001", "-f", "markdown"]).stdout
    assert md.startswith("# DRP001:")


def test_explain_without_id_is_a_usage_error(runner):
    result = runner.invoke(app, ["explain"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: give a recommendation ID or --all")


def test_unknown_option_is_one_error_line_with_hint(runner):
    result = runner.invoke(app, ["list", "--bogus"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "error: No such option: --bogus"
    assert result.stderr.splitlines()[1].startswith("hint: run")
    assert "Traceback" not in result.stderr


def test_refs_list_and_show(runner, kb):
    listed = runner.invoke(app, ["refs", "list"])
    assert listed.exit_code == 0
    assert all(key in listed.stdout for key in kb.citations)
    shown = runner.invoke(app, ["refs", "show", "srivastava2014"])
    assert shown.exit_code == 0
    assert "Journal of Machine Learning Research" in shown.stdout
    assert "Placement findings" in shown.stdout
    assert "Cited by" in shown.stdout


def test_refs_show_unknown_key(runner):
    result = runner.invoke(app, ["refs", "show", "srivastava2015"])
    assert result.exit_code == 1
    assert "error: no citation with key 'srivastava2015'" in result.stderr
    assert "srivastava2014" in result.stderr


def test_refs_search_ranks_batchnorm_sources_first(runner):
    result = runner.invoke(app, ["refs", "search", "batch norm", "--format", "json"])
    hits = json.loads(result.stdout)["hits"]
    # Both papers about dropout and BatchNorm lead the ranking.
    assert {h["key"] for h in hits[:2]} == {"li2019", "chen2019"}


def test_refs_search_no_match(runner):
    result = runner.invoke(app, ["refs", "search", "xylophone"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no source matches")


def test_refs_bibtex_to_file_never_overwrites(runner, tmp_path):
    out = tmp_path / "refs.bib"
    first = runner.invoke(app, ["refs", "bibtex", "-o", str(out)])
    assert first.exit_code == 0 and out.read_text().count("@") >= 30
    out.write_text("my own notes\n")
    second = runner.invoke(app, ["refs", "bibtex", "-o", str(out)])
    assert second.exit_code == 2
    assert "already exists" in second.stderr and "--force" in second.stderr
    assert out.read_text() == "my own notes\n"
    forced = runner.invoke(app, ["refs", "bibtex", "-o", str(out), "--force"])
    assert forced.exit_code == 0 and out.read_text().startswith("% Generated")


def test_python_dash_m_works_like_the_script():
    result = subprocess.run(
        [sys.executable, "-m", "advisor", "explain", "DRP001", "-f", "markdown"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("# DRP001:")


def test_knowledge_commands_never_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from advisor.cli import app\n"
        "r = CliRunner()\n"
        "for args in (['list'], ['explain', 'DRP001'], ['refs', 'list'], ['refs', 'search', 'rnn'],"
        " ['refs', 'bibtex'], ['recommend', '--arch', 'cnn'], ['ask', 'before or after pooling']):\n"
        "    assert r.invoke(app, args).exit_code == 0, args\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
