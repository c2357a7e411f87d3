"""What every command shares: the error boundary, output formats, and the stderr console."""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from functools import wraps
from typing import Any, TypeVar

import typer

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer depends on click itself
    import click.exceptions as _cx  # type: ignore[no-redef]

from advisor.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, AdvisorError

F = TypeVar("F", bound=Callable[..., Any])


class Format(str, Enum):
    text = "text"
    json = "json"


class DocFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


def print_error(message: str, hint: str | None) -> None:
    first, *rest = message.splitlines() or [""]
    sys.stderr.write(f"error: {first}\n")
    for line in rest:
        sys.stderr.write(f"{line}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    sys.stderr.flush()


DEBUG_ENV = "DROPOUT_ADVISOR_DEBUG"
INTERNAL_HINT = (
    f"this is a bug in dropout-advisor: please report it with the command you ran ({DEBUG_ENV}=1 shows the traceback)"
)


def silence_stdout() -> None:
    """The reader of stdout went away (``| head``): send the rest, and the final flush, to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until the process ends


def print_internal_error(exc: BaseException) -> None:
    """A bug reached the boundary: still one ``error:`` line and a hint, never a traceback."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    print_error(f"internal error: {detail}", INTERNAL_HINT)


@contextmanager
def boundary() -> Iterator[None]:
    """Turn our errors and Ctrl-C into one ``error:`` line, a ``hint:`` line and an exit code.

    Anything else that escapes a command is a bug: it is reported as ``internal error`` with exit code
    70, unless ``DROPOUT_ADVISOR_DEBUG=1`` asks for the traceback.
    """
    try:
        yield
    except AdvisorError as exc:
        print_error(exc.message, exc.hint)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        print_error("interrupted", "nothing was written; run the command again when ready")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as Unix tools do.
        silence_stdout()
        raise typer.Exit(0) from None
    except (typer.Exit, typer.Abort, _cx.ClickException):
        raise
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print_internal_error(exc)
        raise typer.Exit(EXIT_INTERNAL) from None


def finite_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Callable[[Any], Any]:
    """A typer callback for a float option: a finite number in the interval, else a usage error (exit 2).

    Click's own ranges let ``nan`` through (every comparison with it is false), so options use this instead.
    """
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value: Any) -> Any:
        if value is None:
            return value
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or below or above:
            raise typer.BadParameter(f"must be a number in {interval}, got {value:g}")
        return value

    return check


def guarded(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with boundary():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def emit_json(payload: Any) -> None:
    """JSON goes straight to stdout, never through rich (which wraps long lines when piped)."""
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit_text(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def stdout_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def is_terminal() -> bool:
    return sys.stdout.isatty()
