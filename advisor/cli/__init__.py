"""The command line: a thin layer over the core. This package is the only place that imports typer."""

from __future__ import annotations

import errno
import functools
import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import typer

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer depends on click itself
    import click.exceptions as _cx  # type: ignore[no-redef]

from advisor import __version__
from advisor.cli.common import DEBUG_ENV, print_error, print_internal_error, silence_stdout
from advisor.cli.help import HelpGroup, manual
from advisor.errors import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE


def _broken_pipe(exc: OSError) -> bool:
    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE


# Every command and the module of advisor.cli that defines it (with ``register(app)``), in the order of the
# root help. A command's module is imported, and its click command built, only when that command is used:
# typer turns every command of an app into a click command up front, and the modules import what their
# commands need, so one call would otherwise pay for all of them. tests/test_cli_lazy.py checks this table
# against what each module registers, and the lazy root help against an eagerly built one.
COMMANDS: dict[str, str] = {
    "list": "knowledge_cmds",
    "explain": "knowledge_cmds",
    "recommend": "advise_cmds",
    "ask": "advise_cmds",
    "generate": "generate_cmds",
    "smoke": "generate_cmds",
    "audit": "audit_cmd",
    "experiment": "experiment_cmd",
    "tune": "tune_cmd",
    "refs": "knowledge_cmds",
    "recipes": "recipes_cmd",
}


def command_modules() -> list[str]:
    """The modules that define commands, each once, in the order of :data:`COMMANDS`."""
    return list(dict.fromkeys(COMMANDS.values()))


def register_all(target: typer.Typer) -> None:
    """Register every command on ``target`` the eager way (imports every command module)."""
    for name in command_modules():
        importlib.import_module(f"advisor.cli.{name}").register(target)


class LazyCommands(MutableMapping[str, Any]):
    """A group's ``commands`` whose entries are built on first access.

    Names, order and membership are known without building anything; ``group.commands["explain"]``,
    ``.get``, ``.items()`` build what they return (and keep it), so code that walks every command
    (help, completion, tests) sees them all.
    """

    def __init__(self, loaders: Mapping[str, Callable[[], Any]], built: Mapping[str, Any] | None = None) -> None:
        self._loaders = dict(loaders)
        self._built: dict[str, Any] = dict(built or {})

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            loader = self._loaders[name]  # KeyError for an unknown name, as a dict
            self._built[name] = loader()
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._loaders.pop(name, None)
        self._built.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._loaders or name in self._built

    def __iter__(self) -> Iterator[str]:
        yield from self._loaders
        yield from (name for name in self._built if name not in self._loaders)

    def __len__(self) -> int:
        return len(self._loaders) + sum(1 for name in self._built if name not in self._loaders)


def _build(name: str) -> Any:
    """The click command ``name``, built from its module's registration as typer builds a whole app."""
    from typer.main import get_command_from_info, get_command_name, get_group_from_info

    collector = typer.Typer()
    importlib.import_module(f"advisor.cli.{COMMANDS[name]}").register(collector)
    command: Any = None
    for info in collector.registered_commands:
        if info.callback is not None and (info.name or get_command_name(info.callback.__name__)) == name:
            command = get_command_from_info(
                info, pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=app.rich_markup_mode
            )
    for group in collector.registered_groups:
        if group.name == name:
            command = get_group_from_info(
                group,
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode,
                suggest_commands=app.suggest_commands,
            )
    if command is None:  # pragma: no cover - tests/test_cli_lazy.py keeps COMMANDS right
        raise RuntimeError(f"advisor.cli.{COMMANDS[name]} registers no command '{name}'")
    manual(command)
    return command


_PLUGINS_ENV = "PYDANTIC_DISABLE_PLUGINS"


@contextmanager
def _without_pydantic_plugins() -> Iterator[None]:
    """Run a command without pydantic's plugin discovery, unless the user set ``PYDANTIC_DISABLE_PLUGINS``.

    The first validator pydantic builds in a process with plugins enabled reads the entry points of every
    installed distribution (~4 ms CPU with 80 distributions, more in a larger environment) and imports the
    plugins found. The commands validate the tool's own data (knowledge, specs, plans, answers), as typer
    does while it builds its parameter parsers, which it also builds without plugins.
    """
    if _PLUGINS_ENV in os.environ:
        yield
        return
    os.environ[_PLUGINS_ENV] = "__all__"
    try:
        yield
    finally:
        os.environ.pop(_PLUGINS_ENV, None)


class AdvisorGroup(HelpGroup):
    """Reports click's usage errors (unknown option, bad value) as our one-line ``error:`` / ``hint:``.

    A reader that goes away (``--help | head -1``) ends the command quietly with exit 0, and anything
    unexpected is one ``internal error`` line (exit 70), never a traceback. The commands of
    :data:`COMMANDS` are built when first used (:class:`LazyCommands`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        loaders = {name: functools.partial(_build, name) for name in COMMANDS}
        self.commands = LazyCommands(loaders, built=dict(self.commands))

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names only: TyperGroup's own would build every command

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
            with _without_pydantic_plugins():
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


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"dropout-advisor {__version__}\n")
        raise typer.Exit(0)


def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass


def new_app(cls: type[HelpGroup] = AdvisorGroup) -> typer.Typer:
    """The root typer app with its options and no commands; ``cls`` :class:`AdvisorGroup` adds them lazily.

    With another ``cls``, :func:`register_all` gives the eagerly built app that the lazy one must equal.
    """
    root = typer.Typer(
        cls=cls,
        name="dropout-advisor",
        help=ROOT_HELP,
        no_args_is_help=True,
        add_completion=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    root.callback()(_root)
    return root


app = new_app()


def main() -> None:
    try:
        app()
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
