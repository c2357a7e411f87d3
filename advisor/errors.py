"""One error hierarchy for the whole tool.

The core raises these; only the CLI boundary catches them and prints ``error:`` / ``hint:`` lines.
Each subclass carries the exit code its failure kind maps to, so commands agree on codes.
"""

from __future__ import annotations

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_FINDINGS = 1  # audit findings at or above --fail-on; unknown ID or key in lookups
EXIT_USAGE = 2  # bad flags, bad input files, model files that fail to load
EXIT_BROKEN = 3  # a broken installation: the knowledge base or the templates fail validation
EXIT_INTERNAL = 70  # a bug in dropout-advisor (BSD sysexits' EX_SOFTWARE); never a traceback
EXIT_INTERRUPTED = 130  # Ctrl-C

#: The exit codes, as the root help and the README list them.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FINDINGS: "audit findings at or above --fail-on, a failed smoke-test check, or an unknown ID or key",
    EXIT_USAGE: "usage or input error: a bad option or value, an unreadable input file, a refused output, "
    "a model that cannot be loaded, a missing optional dependency",
    EXIT_BROKEN: "a broken installation: the knowledge base or the templates fail validation",
    EXIT_INTERNAL: "an internal error: a bug in dropout-advisor (please report it)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class AdvisorError(Exception):
    """Base class: a message for the user, a hint on what to do, and an exit code."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class KnowledgeError(AdvisorError):
    """The knowledge base is broken (a packaging or authoring bug, not a user mistake)."""

    exit_code = EXIT_BROKEN


class NotFoundError(AdvisorError):
    """An unknown recommendation ID, citation key, or similar name."""

    exit_code = EXIT_FINDINGS


class SpecError(AdvisorError):
    """An architecture description (flags or answers file) that is invalid."""


class UsageError(AdvisorError):
    """A command-line combination that cannot work."""


class OutputError(AdvisorError):
    """A file that cannot be written, or that exists and would be overwritten without --force."""


class TemplateError(AdvisorError):
    """A code template failed to render."""

    exit_code = EXIT_BROKEN


class ModelLoadError(AdvisorError):
    """A user's model file or factory that cannot be imported, built, or run."""


class DeviceError(AdvisorError):
    """A requested device that is not available here."""


class MissingDependencyError(AdvisorError):
    """An optional dependency is not installed."""


class Interrupted(AdvisorError):
    """The user pressed Ctrl-C or closed the input."""

    exit_code = EXIT_INTERRUPTED
