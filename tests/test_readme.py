"""The README's examples run as written, in order, in an empty folder (the torch-free ones here), and its exit
code table matches the tool's."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.errors import EXIT_CODES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
TORCH = {"audit", "smoke", "experiment", "tune"}


def _blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(bash|console)\n(.*?)```", README, re.S)


def _commands() -> list[str]:
    """Every command line of the README's bash and console blocks, continuation lines joined."""
    out: list[str] = []
    for lang, body in _blocks():
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if lang == "console":
                if not line.startswith("$ "):
                    i += 1
                    continue
                line = line[2:]
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            heredoc = re.search(r"<<\s*'?(\w+)'?", line)
            if heredoc:  # the file it writes is part of the command
                end = heredoc.group(1)
                while i + 1 < len(lines) and lines[i + 1].strip() != end:
                    i += 1
                    line += "\n" + lines[i]
                i += 1
                line += "\n" + end
            if line.strip():
                out.append(line)
            i += 1
    return out


def _torch_free_part(command: str) -> str | None:
    """The part of a command line that needs no torch and writes nothing outside its folder, or None.

    A chain `a && b` keeps the steps before the first one that needs torch; lines that set up Python
    environments (pip, venv) or are not dropout-advisor commands are left to the reader.
    """
    kept = []
    for step in command.split(" && "):
        first = step.split("\n", 1)[0]
        if first.startswith("cat > ") and "<<" in first and "/" not in first.split("<<")[0]:
            kept.append(step)  # a here-document that writes an example file into the folder
            continue
        words = shlex.split(step, comments=True)
        if not words or words[0] != "dropout-advisor":
            break
        sub = next((w for w in words[1:] if not w.startswith("-")), "")
        if sub in TORCH or (sub == "recommend" and any(":" in w and not w.startswith("-") for w in words[2:])):
            break  # recommend TARGET traces the model: torch
        kept.append(step)
    return " && ".join(kept) or None


RUNNABLE = [c for c in (_torch_free_part(c) for c in _commands()) if c]


def test_the_readme_has_examples_to_run():
    assert len(RUNNABLE) >= 15, RUNNABLE


def test_no_example_names_a_placeholder_file():
    for command in _commands():
        assert "path/to/" not in command, command


def test_the_readme_examples_run_as_written_in_order(tmp_path):
    """In one empty folder, one after the other: no placeholder files, no command that fails because an
    earlier one created its output. The interview gets 'mlp' on standard input."""
    prelude = f'dropout-advisor() {{ {shlex.quote(sys.executable)} -m advisor "$@"; }}\n'
    for command in RUNNABLE:
        result = subprocess.run(
            ["bash", "-c", prelude + command],
            cwd=tmp_path,
            input="mlp\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        assert "Traceback" not in result.stderr


def test_the_exit_code_table_lists_every_code():
    table = README.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = [int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)]
    assert codes == list(EXIT_CODES)


@pytest.mark.parametrize("code", list(EXIT_CODES))
def test_every_exit_code_is_explained_in_the_root_help(runner, code):
    from advisor.cli import app

    text = runner.invoke(app, ["--help"]).stdout
    assert re.search(rf"^\s+{code}\s+\S", text, re.M)


def test_experiment_section_never_presents_an_older_plan_as_the_current_one():
    # review-advice.md kind 15: the README called "Dropout2d at 0.1 and 0.25" the advisor's plan for the digits
    # CNN, though the engine's plan for that network no longer has 0.25 in its conv stack.
    from advisor.experiment.variants import advisor_spec
    from advisor.recommend import recommend

    plan = recommend(advisor_spec("cnn", samples=1077))
    conv_rates = {s.p for s in plan.sites if s.kind == "dropout2d"}
    assert conv_rates and 0.25 not in conv_rates, conv_rates
    section = README.split("## Checking the advice on real data", 1)[1].split("\n## ", 1)[0]
    assert "0.1 and 0.25" not in section or "older plan" in section
