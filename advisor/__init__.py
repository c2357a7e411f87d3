"""dropout-advisor: where to put dropout in a neural network, and at what rate, with sources."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "apply_plan", "audit", "frozen", "recommend_for", "watch", "watch_callback"]


def audit(model: Any, example_inputs: Any, **kwargs: Any) -> Any:
    """Audit a built ``nn.Module``; see :func:`advisor.audit.api.audit`.

    Imported lazily so that ``import advisor`` never pays for ``import torch``.
    """
    from advisor.audit.api import audit as _audit

    return _audit(model, example_inputs, **kwargs)


def watch(*models: Any, **kwargs: Any) -> Any:
    """Runtime check of dropout train/eval modes; see :func:`advisor.audit.watch.watch` (lazy torch import)."""
    from advisor.deps import require_torch

    require_torch("advisor.watch")
    from advisor.audit.watch import watch as _watch

    return _watch(*models, **kwargs)


def frozen(module: Any, reason: str = "frozen on purpose") -> Any:
    """Mark a submodule as intentionally in eval mode; see :func:`advisor.audit.watch.frozen`."""
    from advisor.deps import require_torch

    require_torch("advisor.frozen")
    from advisor.audit.watch import frozen as _frozen

    return _frozen(module, reason)


def watch_callback(**kwargs: Any) -> Any:
    """A Lightning callback for dropout modes; see :func:`advisor.audit.watch_lightning.watch_callback`."""
    from advisor.deps import require_torch

    require_torch("advisor.watch_callback")
    from advisor.audit.watch_lightning import watch_callback as _callback

    return _callback(**kwargs)


def recommend_for(model: Any, example_inputs: Any, **kwargs: Any) -> Any:
    """A dropout plan for a built ``nn.Module``, at its own module paths, with the change list against today.

    See :func:`advisor.advise.model_plan.recommend_for` for the arguments (``samples``, ``regime``,
    ``overfitting``, ``base``, ``overrides`` ...). Imported lazily: ``import advisor`` stays torch-free.
    """
    from advisor.advise.model_plan import recommend_for as _recommend_for

    return _recommend_for(model, example_inputs, **kwargs)


def apply_plan(model: Any, plan: Any) -> Any:
    """Make ``model``'s dropout what ``plan`` says, in place; returns the same model.

    See :func:`advisor.advise.apply.apply_plan` for what it changes and what it guarantees.
    """
    from advisor.advise.apply import apply_plan as _apply_plan

    return _apply_plan(model, plan)
