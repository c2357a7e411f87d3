"""What every command shares: the error boundary, output formats, and the stderr console."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from functools import wraps
from typing import Any, TypeVar

import typer

from advisor.errors import EXIT_INTERRUPTED, AdvisorError

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


@contextmanager
def boundary() -> Iterator[None]:
    """Turn our errors and Ctrl-C into one ``error:`` line, a ``hint:`` line and an exit code."""
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
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - swallow the final flush
        except OSError:
            pass
        raise typer.Exit(0) from None


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
