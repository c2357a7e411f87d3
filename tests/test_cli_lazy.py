"""Lazy command registration: only the command that runs is imported and built, and nothing else changes."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest
import typer
import typer.main

import advisor.cli
from advisor.cli import COMMANDS, AdvisorGroup, LazyCommands, app, command_modules, new_app, register_all
from advisor.cli.help import HelpGroup


def _eager_app() -> typer.Typer:
    """The same root, with every command registered and built up front (as before lazy registration)."""
    eager = new_app(cls=HelpGroup)
    register_all(eager)
    return eager


def _paths(group, prefix=()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if hasattr(command, "commands"):
            paths.extend(_paths(command, (*prefix, name)))
    return paths


EAGER_PATHS = _paths(typer.main.get_command(_eager_app()))


def _registered_names(module_name: str) -> list[str]:
    collector = typer.Typer()
    importlib.import_module(f"advisor.cli.{module_name}").register(collector)
    commands = [i.name or typer.main.get_command_name(i.callback.__name__) for i in collector.registered_commands]
    return commands + [g.name for g in collector.registered_groups]


def test_the_table_names_every_command_of_every_module_and_no_other():
    for module_name in command_modules():
        assert _registered_names(module_name) == [n for n, m in COMMANDS.items() if m == module_name], module_name


def test_every_cli_module_with_commands_is_in_the_table():
    with_register = [
        info.name
        for info in pkgutil.iter_modules(advisor.cli.__path__)
        if hasattr(importlib.import_module(f"advisor.cli.{info.name}"), "register")
    ]
    assert sorted(with_register) == sorted(command_modules())


def test_commands_are_listed_in_the_order_typer_gives_an_eager_app():
    eager = typer.Typer(cls=HelpGroup)
    register_all(eager)
    assert list(typer.main.get_command(eager).commands) == list(COMMANDS)


@pytest.mark.parametrize("path", [(), *EAGER_PATHS], ids=["root", *(" ".join(p) for p in EAGER_PATHS)])
def test_help_is_the_same_as_with_every_command_built_up_front(runner, path):
    env = {"COLUMNS": "80"}
    lazy = runner.invoke(app, [*path, "--help"], env=env, prog_name="dropout-advisor")
    eager = runner.invoke(_eager_app(), [*path, "--help"], env=env, prog_name="dropout-advisor")
    assert lazy.exit_code == eager.exit_code == 0, lazy.stderr
    assert lazy.stdout == eager.stdout
    assert lazy.stdout.startswith("Usage: dropout-advisor")


def test_the_root_group_builds_no_command_until_one_is_asked_for(monkeypatch):
    built: list[str] = []
    original = advisor.cli._build

    def spy(name):
        built.append(name)
        return original(name)

    monkeypatch.setattr(advisor.cli, "_build", spy)
    group = typer.main.get_command(app)
    assert isinstance(group, AdvisorGroup)
    assert list(group.commands) == list(COMMANDS) and "refs" in group.commands and len(group.commands) == len(COMMANDS)
    assert group.list_commands(None) == list(COMMANDS)  # type: ignore[arg-type]
    assert built == []
    assert group.get_command(None, "explain").name == "explain"  # type: ignore[arg-type, union-attr]
    assert group.get_command(None, "explain") is group.commands["explain"]  # type: ignore[arg-type]
    assert group.get_command(None, "nope") is None  # type: ignore[arg-type]
    assert built == ["explain"]


def test_running_a_command_imports_only_its_own_module():
    code = (
        "import sys\n"
        "from advisor.cli import main\n"
        "sys.argv = ['dropout-advisor', 'explain', 'DRP001', '--format', 'json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "sys.stderr.write(' '.join(sorted(m for m in sys.modules if m.startswith('advisor.cli.'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stderr.split())
    assert "advisor.cli.knowledge_cmds" in loaded
    others = {f"advisor.cli.{m}" for m in command_modules()} - {"advisor.cli.knowledge_cmds"}
    assert not loaded & others
    assert '"schema_version"' in proc.stdout


def test_a_misspelt_command_still_gets_close_matches(runner):
    result = runner.invoke(app, ["expain"])
    assert result.exit_code == 2
    assert "No such command 'expain'" in result.stderr and "'explain'" in result.stderr
    assert result.stdout == ""


def test_completion_of_command_names_lists_every_matching_command():
    env = {"_DROPOUT_ADVISOR_COMPLETE": "complete_bash", "COMP_WORDS": "dropout-advisor re", "COMP_CWORD": "1"}
    code = "import sys; from advisor.cli import app; app(prog_name='dropout-advisor')"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )
    assert proc.stdout.split() == ["recommend", "refs", "recipes"], proc.stderr


class TestLazyCommands:
    def test_membership_order_and_length_build_nothing(self):
        calls: list[str] = []
        commands = LazyCommands({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, built={"c": 3})
        assert list(commands) == ["a", "b", "c"] and len(commands) == 3 and "b" in commands and "z" not in commands
        assert calls == []

    def test_an_entry_is_built_once_on_first_access(self):
        calls: list[str] = []

        def load():
            calls.append("a")
            return object()

        commands = LazyCommands({"a": load})
        assert commands["a"] is commands.get("a")
        assert calls == ["a"]

    def test_unknown_names_behave_as_in_a_dict(self):
        commands = LazyCommands({"a": object})
        assert commands.get("z") is None
        with pytest.raises(KeyError):
            commands["z"]
        with pytest.raises(KeyError):
            del commands["z"]

    def test_added_and_removed_commands(self):
        commands = LazyCommands({"a": object})
        commands["b"] = 2
        del commands["a"]
        assert list(commands) == ["b"] and commands["b"] == 2 and len(commands) == 1
