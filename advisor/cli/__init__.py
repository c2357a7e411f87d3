"""The command line: a thin layer over the core. This package is the only place that imports typer."""

from __future__ import annotations

import errno
import os
import sys
import textwrap
from typing import Any

import typer

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer depends on click itself
    import click.exceptions as _cx  # type: ignore[no-redef]

from advisor import __version__
from advisor.cli.common import DEBUG_ENV, print_error, print_internal_error, silence_stdout
from advisor.cli.help import HelpGroup
from advisor.errors import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE


def _broken_pipe(exc: OSError) -> bool:
    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE


class AdvisorGroup(HelpGroup):
    """Reports click's usage errors (unknown option, bad value) as our one-line ``error:`` / ``hint:``.

    A reader that goes away (``--help | head -1``) ends the command quietly with exit 0, and anything
    unexpected is one ``internal error`` line (exit 70), never a traceback.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)  # prints --help of the root command
        except OSError as exc:
            if not _broken_pipe(exc):
                raise
            silence_stdout()
            raise typer.Exit(0) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)  # prints --help of a subcommand, or runs it
        except OSError as exc:
            if not _broken_pipe(exc):
                raise
            silence_stdout()
            raise typer.Exit(0) from None

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
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            print_internal_error(exc)
            sys.exit(EXIT_INTERNAL)
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


_EXIT_CODES_HELP = "\n".join(
    textwrap.fill(text, width=76, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7, break_on_hyphens=False)
    for code, text in EXIT_CODES.items()
)

ROOT_HELP = f"""Where to put dropout in your network, and at what rate: cited advice, code, and an auditor.

\b
Examples:
  dropout-advisor ask                              # an interview, then a plan
  dropout-advisor ask "dropout before or after max pooling?"
  dropout-advisor recommend --arch cnn --layers 3  # a plan from flags
  dropout-advisor explain DRP009                   # one recommendation
  dropout-advisor generate --arch cnn -o model.py  # runnable PyTorch code
  dropout-advisor audit model.py:Net -s 8,3,32,32  # check an existing model

\b
Exit codes:
{_EXIT_CODES_HELP}

Every error is one 'error:' line and a 'hint:' line on stderr. For the options and examples of a command,
run: dropout-advisor COMMAND --help"""

app = typer.Typer(
    cls=AdvisorGroup,
    name="dropout-advisor",
    help=ROOT_HELP,
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
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
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass


def _register() -> None:
    from advisor.cli import advise_cmds, audit_cmd, experiment_cmd, generate_cmds, knowledge_cmds, recipes_cmd, tune_cmd

    for module in (knowledge_cmds, advise_cmds, generate_cmds, audit_cmd, experiment_cmd, recipes_cmd, tune_cmd):
        module.register(app)


_register()


def main() -> None:
    try:
        app()
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
