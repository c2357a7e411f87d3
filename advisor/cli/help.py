"""Help that reads as a manual (clig.dev): plain text, real choices as metavars, whole command summaries."""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click
    from typer._click.core import Context
    from typer._click.formatting import HelpFormatter
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click.core import Context  # type: ignore[assignment, no-redef, unused-ignore]
    from click.formatting import HelpFormatter  # type: ignore[assignment, no-redef, unused-ignore]

_NB_HYPHEN = "\u2011"  # stands in for '-' while wrapping, so that no name is split at its hyphens


class ManualFormatter(HelpFormatter):
    """Click's formatter, except that wrapping never breaks a word such as ``drop-before-bn`` at a hyphen."""

    def write_text(self, text: str) -> None:
        super().write_text(text.replace("-", _NB_HYPHEN))

    def write_dl(self, rows: Any, *args: Any, **kwargs: Any) -> None:
        rows = [(first, second.replace("-", _NB_HYPHEN)) for first, second in rows]
        super().write_dl(rows, *args, **kwargs)

    def getvalue(self) -> str:
        return super().getvalue().replace(_NB_HYPHEN, "-")


class ManualContext(Context):
    formatter_class = ManualFormatter


_METAVARS = {int: "N", float: "X"}


def _metavar(param: Any) -> str | None:
    """What a value option shows in the help: its real choices, or a name (never ``<str>`` or ``<bool>``)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    desc = getattr(param, "type_descriptor", None)
    choices = getattr(desc, "choices", None) if getattr(desc, "is_choice", False) else None
    if choices is None:
        choices = getattr(getattr(param, "type", None), "choices", None)
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    annotation = getattr(desc, "annotation", None)
    args = getattr(annotation, "__args__", None)
    base = args[0] if getattr(desc, "is_list", False) and args else annotation
    if base in _METAVARS:
        return _METAVARS[base]
    if getattr(desc, "is_path", False):
        return "PATH"
    return str(param.name or "value").upper()


def _no_type(ctx: Any) -> None:
    return None


def manual(command: Any) -> None:
    """Plain help with real metavars for one command, or for every command of a group (also of a sub-app
    that was not given :class:`HelpGroup`)."""
    command.context_class = ManualContext
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    if isinstance(command, TyperGroup):
        if not isinstance(command, HelpGroup):
            for sub in command.commands.values():
                manual(sub)
        return
    for param in command.params:
        if param.param_type_name == "option" and param.metavar is None:
            param.metavar = _metavar(param)
        elif param.param_type_name == "argument" and hasattr(param, "display_type_rich"):
            # typer >= 0.25 prints "TARGET <str>": the argument's name says enough.
            param.display_type_rich = _no_type


class HelpGroup(TyperGroup):
    """Plain, manual-like help (clig.dev): real choices as metavars, whole command summaries and names."""

    context_class = ManualContext

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            manual(command)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Each command with the whole first paragraph of its help, wrapped, never cut with '...'."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            text = command.short_help or (command.help or "").strip().split("\n\n")[0]
            rows.append((name, " ".join(text.split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
