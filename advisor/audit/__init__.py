"""The auditor: find misplaced and broken dropout in an existing PyTorch model.

``advisor.audit(model, example_inputs)`` is the entry point. ``advisor/__init__.py`` defines it as a
lazy function, but importing this package rebinds the attribute ``advisor.audit`` to the package, so
the package itself is made callable with the same signature: both spellings keep working.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["audit"]


def audit(model: Any, example_inputs: Any, **kwargs: Any) -> Any:
    """See :func:`advisor.audit.api.audit`."""
    from advisor.audit.api import audit as _audit

    return _audit(model, example_inputs, **kwargs)


class _CallablePackage(types.ModuleType):
    def __call__(self, model: Any, example_inputs: Any, **kwargs: Any) -> Any:
        return audit(model, example_inputs, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
