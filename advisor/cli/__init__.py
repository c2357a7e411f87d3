"""The command line: a thin layer over the core. This package is the only place that imports typer."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer depends on click itself
    import click.exceptions as _cx  # type: ignore[no-redef]

from advisor import __version__
from advisor.cli.common import print_error
from advisor.errors import EXIT_INTERRUPTED, EXIT_USAGE


class AdvisorGroup(TyperGroup):
    """Reports click's usage errors (unknown option, bad value) as our one-line ``error:`` / ``hint:``."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except _cx.NoArgsIsHelpError as exc:
            # Rich help prints itself while the exception is built; plain help comes back as the message.
            if exc.format_message():
                sys.stdout.write(exc.format_message() + "\n")
            rv = 0
        except _cx.UsageError as exc:
            ctx = exc.ctx
            command = ctx.command_path if ctx is not None else "dropout-advisor"
            print_error(exc.format_message(), f"run '{command} --help' to see the accepted options")
            sys.exit(EXIT_USAGE)
        except _cx.ClickException as exc:
            print_error(exc.format_message(), "run 'dropout-advisor --help'")
            sys.exit(exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            print_error("interrupted", "nothing was written; run the command again when ready")
            sys.exit(EXIT_INTERRUPTED)
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=AdvisorGroup,
    name="dropout-advisor",
    help="Where to put dropout in your network, and at what rate: cited advice, code, and an auditor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"dropout-advisor {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Exit codes: 0 success; 1 findings at or above --fail-on, or an unknown ID/key; 2 usage or input
    errors; 3 a broken installation (knowledge base or templates); 130 interrupted (Ctrl-C)."""


def _register() -> None:
    from advisor.cli import advise_cmds, audit_cmd, experiment_cmd, generate_cmds, knowledge_cmds, recipes_cmd

    for module in (knowledge_cmds, advise_cmds, generate_cmds, audit_cmd, experiment_cmd, recipes_cmd):
        module.register(app)


_register()


def main() -> None:
    app()
