"""Optional dependencies: what a command needs beyond the base install, and how to get it.

The base install (``pip install dropout-advisor``) gives the advice, the references and code generation;
commands that run tensors need PyTorch, which the ``torch`` extra (and ``experiment``, ``dev``) brings.
"""

from __future__ import annotations

from typing import Any

from advisor.errors import MissingDependencyError

TORCH_HINT = "pip install 'dropout-advisor[torch]'"


def require_torch(command: str, *, hint: str = TORCH_HINT) -> Any:
    """Import and return :mod:`torch`, or raise :class:`MissingDependencyError` (exit 2) naming ``command``.

    A torch that is installed but fails to import (a missing shared library, a broken wheel) gets its own
    message, with the import error, instead of "not installed".
    """
    try:
        import torch
    except ModuleNotFoundError as exc:
        if exc.name not in (None, "torch") and not str(exc.name).startswith("torch."):
            raise MissingDependencyError(
                f"'{command}' needs PyTorch, which fails to import: {exc}",
                hint=f"reinstall it: {hint}",
            ) from None
        raise MissingDependencyError(f"'{command}' needs PyTorch, which is not installed", hint=hint) from None
    except (ImportError, OSError) as exc:
        raise MissingDependencyError(
            f"'{command}' needs PyTorch, which fails to import: {exc}",
            hint=f"reinstall it: {hint}",
        ) from None
    return torch
