"""Help as a manual (clig.dev): examples everywhere, exit codes at the root, real metavars, whole names."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer

from advisor import __version__
from advisor.cli import app
from advisor.errors import EXIT_CODES


def _commands() -> list[list[str]]:
    """Every command path, e.g. ['audit'], ['refs', 'show']."""
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(group, prefix):
        for name, command in group.commands.items():
            paths.append([*prefix, name])
            if hasattr(command, "commands"):
                walk(command, [*prefix, name])

    walk(root, [])
    return paths


COMMANDS = _commands()
GROUPS = [c for c in COMMANDS if any(other[: len(c)] == c and other != c for other in COMMANDS)]
LEAVES = [c for c in COMMANDS if c not in GROUPS]


def _help(runner, path: list[str]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("path", LEAVES, ids=[" ".join(c) for c in LEAVES])
def test_every_command_help_has_examples_of_itself(runner, path):
    text = _help(runner, path)
    assert "Examples:" in text
    examples = text.split("Examples:")[1].split("\n\n")[0].strip().splitlines()
    assert examples and all(line.strip().startswith(f"dropout-advisor {' '.join(path)}") for line in examples)


@pytest.mark.parametrize("path", [[], *COMMANDS], ids=["root", *(" ".join(c) for c in COMMANDS)])
def test_help_fits_80_columns_with_real_metavars_and_whole_names(runner, path):
    text = _help(runner, path)
    for line in text.splitlines():
        assert len(line) <= 80, line
    assert not re.search(r"<(bool|str|int|float|path|list\[[^>]*)>", text), text
    assert "…" not in text
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    for param in command.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert re.search(rf"(^|[\s,/]){re.escape(opt)}([\s,]|$)", text, re.M), f"{opt} is cut or missing"


def test_no_name_is_split_at_a_hyphen(runner):
    text = _help(runner, ["experiment"])
    for name in ("conv-relu-drop", "drop-before-bn", "bn-then-drop", "input-hidden"):
        assert name in text


def test_root_help_lists_every_exit_code(runner):
    text = _help(runner, [])
    codes = text.split("Exit codes:")[1]
    for code in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+\S", codes, re.M), code


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(runner, flag):
    result = runner.invoke(app, [flag])
    assert result.exit_code == 0
    assert result.stdout == f"dropout-advisor {__version__}\n"


def test_shell_completion_completes_commands_and_options(runner):
    # The protocol the installed completion script speaks (--show-completion's script would detect the
    # parent shell, which depends on how the tests are launched).
    env = {"_DROPOUT_ADVISOR_COMPLETE": "complete_bash", "COMP_CWORD": "1", "COMP_WORDS": "dropout-advisor re"}
    result = runner.invoke(app, [], prog_name="dropout-advisor", env=env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["recommend", "refs", "recipes"]
    env.update(COMP_CWORD="2", COMP_WORDS="dropout-advisor recommend --ar")
    result = runner.invoke(app, [], prog_name="dropout-advisor", env=env)
    assert result.stdout.split() == ["--arch"]


def test_root_help_offers_completion(runner):
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


@pytest.mark.parametrize(
    "args",
    [["--help"], ["audit", "--help"], ["refs", "--help"], ["explain", "--all", "-f", "markdown"], ["refs", "bibtex"]],
)
def test_a_reader_that_goes_away_ends_the_command_quietly(args):
    """`dropout-advisor --help | head -1`: exit 0 and nothing on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "advisor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first write
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert stderr == ""
