"""dropout-advisor: where to put dropout in a neural network, and at what rate, with sources."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "audit"]


def audit(model: Any, example_inputs: Any, **kwargs: Any) -> Any:
    """Audit a built ``nn.Module``; see :func:`advisor.audit.api.audit`.

    Imported lazily so that ``import advisor`` never pays for ``import torch``.
    """
    from advisor.audit.api import audit as _audit

    return _audit(model, example_inputs, **kwargs)
