"""Start-up: what a command must not import or do before its output (bench/bench_cli.py times it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from advisor.knowledge import default_kb

# Run one command in a fresh interpreter, as the console script does, and report what it imported.
_PROBE = """
import json, sys
import pydantic.plugin._loader as loader

scans = []
original = loader.entry_points
loader.entry_points = lambda **kw: scans.append(kw) or original(**kw)
sys.argv = ["dropout-advisor", *json.loads(sys.argv[1])]
from advisor.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "modules": sorted(sys.modules), "scans": len(scans)}))
"""


def _probe(args: list[str], env: dict[str, str] | None = None) -> dict:
    default_kb()  # the knowledge-base cache is warm, as after the first run of an installation
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    report = json.loads(proc.stderr.rsplit("PROBE ", 1)[1])
    assert report["code"] == 0, proc.stderr
    return report


# Modules that cost a knowledge command start-up time and that it has no use for.
NOT_FOR_KNOWLEDGE = {
    "pickle",  # the C unpickler reads the cache
    "advisor.plan",
    "advisor.spec",
    "advisor.search",
    "advisor.cli.advise_cmds",
    "advisor.cli.generate_cmds",
    "advisor.cli.audit_cmd",
    "advisor.cli.experiment_cmd",
    "tomllib",
    "tomli",
    "snowballstemmer",
    "jinja2",
    "rich",  # output to a pipe is plain text
    "torch",
}


@pytest.mark.parametrize(
    "args",
    [["explain", "DRP001"], ["list"], ["refs", "list"], ["refs", "show", "srivastava2014"], ["recipes", "list"]],
    ids=" ".join,
)
def test_a_knowledge_command_imports_only_what_it_uses(args):
    loaded = set(_probe(args)["modules"])
    assert not loaded & NOT_FOR_KNOWLEDGE


def test_recommend_imports_no_template_engine_toml_reader_or_stemmer():
    loaded = set(_probe(["recommend", "--arch", "cnn"])["modules"])
    assert not loaded & {"jinja2", "tomllib", "tomli", "snowballstemmer", "pickle", "rich", "torch"}


def test_a_question_in_known_words_needs_no_stemmer():
    loaded = set(_probe(["ask", "before or after pooling?"])["modules"])
    assert not loaded & {"snowballstemmer", "advisor.spec", "jinja2", "pickle"}


@pytest.mark.parametrize("args", [["recommend", "--arch", "cnn"], ["ask", "before or after pooling?"]], ids=" ".join)
def test_commands_skip_pydantic_plugin_discovery(args):
    assert _probe(args)["scans"] == 0


def test_a_users_own_plugin_setting_is_kept():
    """PYDANTIC_DISABLE_PLUGINS set by the user (here: one plugin by name) is theirs: discovery runs."""
    assert _probe(["recommend", "--arch", "cnn"], env={"PYDANTIC_DISABLE_PLUGINS": "someplugin"})["scans"] == 1


def test_the_plugin_setting_is_restored_after_a_command(runner, monkeypatch):
    from advisor.cli import app

    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    seen = {}
    import advisor.cli.knowledge_cmds as knowledge_cmds

    original = knowledge_cmds._kb

    def spy():
        seen["during"] = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
        return original()

    monkeypatch.setattr(knowledge_cmds, "_kb", spy)
    result = runner.invoke(app, ["explain", "DRP001"])
    assert result.exit_code == 0, result.stderr
    assert seen["during"] == "__all__"
    assert "PYDANTIC_DISABLE_PLUGINS" not in os.environ
