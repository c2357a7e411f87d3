"""``apply_plan(model, plan)``: make a model's dropout what its plan says, in place.

Only the change list's steps are carried out (see :mod:`advisor.advise.changes`):

- ``set``: write a rate attribute the forward reads (``module.p``, ``nn.MultiheadAttention.dropout``,
  an RNN's ``dropout``, a float such as transformers' ``attention_dropout``);
- ``identity``: replace a dropout module by ``nn.Identity``;
- ``insert``: register a new dropout module as a child of a module and apply it to that module's
  output (forward hook) or first input (forward pre-hook).

Guarantees (each has a test): no parameter or buffer is added or changed, so ``state_dict`` keys and
values stay the same and pretrained weights load with ``strict=True``; in eval mode every new or
re-rated site is off and the output is bit-identical to the original; ``model.eval()`` reaches every
new module; applying the same plan twice changes nothing. The hooks are small picklable objects that
look the dropout module up by name, so ``copy.deepcopy`` and ``torch.save`` of the model work.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from advisor.errors import UsageError


class DropPath(nn.Module):
    """Stochastic depth on a residual branch: zero whole samples with probability ``p``, scale the rest by 1/(1-p).

    Input: any shape (N, ...); output: the same shape. Identity in eval mode or at p = 0
    (Huang et al. 2016, "Deep Networks with Stochastic Depth"; as torchvision.ops.StochasticDepth
    with mode="row").
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _AfterHook:
    """Forward hook: pass the module's output (or its first element) through the named child."""

    def __init__(self, child: str) -> None:
        self.child = child

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        drop = module._modules[self.child]
        assert drop is not None
        if isinstance(output, torch.Tensor):
            return drop(output)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (drop(output[0]), *output[1:])
        if hasattr(output, "keys") and hasattr(output, "__getitem__"):
            first = next(iter(output.keys()), None)
            if first is not None and isinstance(output[first], torch.Tensor):
                output[first] = drop(output[first])
        return output


class _BeforeHook:
    """Forward pre-hook: pass the module's first input through the named child."""

    def __init__(self, child: str) -> None:
        self.child = child

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        drop = module._modules[self.child]
        assert drop is not None
        if args and isinstance(args[0], torch.Tensor):
            return (drop(args[0]), *args[1:]), kwargs
        for key in ("hidden_states", "input", "x"):
            if isinstance(kwargs.get(key), torch.Tensor):
                return args, {**kwargs, key: drop(kwargs[key])}
        return None


_CLASSES: dict[str, type[nn.Module]] = {
    "Dropout": nn.Dropout,
    "Dropout1d": nn.Dropout1d,
    "Dropout2d": nn.Dropout2d,
    "Dropout3d": nn.Dropout3d,
    "AlphaDropout": nn.AlphaDropout,
    "FeatureAlphaDropout": nn.FeatureAlphaDropout,
    "DropPath": DropPath,
}


def apply_plan(model: nn.Module, plan: Any) -> nn.Module:
    """Carry out ``plan.changes`` on ``model`` (the same object, returned for chaining).

    ``plan``: a :class:`~advisor.advise.model_plan.ModelPlan` from :func:`advisor.recommend_for`
    on this model or one of the same architecture (paths must match), or its JSON as a dict.
    Changes marked ``cannot`` are left to the user (the plan says what to edit). Raises
    :class:`~advisor.errors.UsageError` when a path of the plan is not in the model.
    """
    from advisor.advise.model_plan import ModelPlan

    if isinstance(plan, dict):
        plan = ModelPlan.model_validate(plan)
    if not isinstance(model, nn.Module):
        raise UsageError(f"apply_plan() needs a torch.nn.Module, got {type(model).__name__}", hint="pass the model")
    modules = dict(model.named_modules())
    steps = [step for change in plan.changes for step in change.steps]
    for step in steps:
        if step.path not in modules:
            raise UsageError(
                f"the plan names module '{step.path}', which this model does not have",
                hint=f"apply a plan made for this architecture (the plan is for {plan.model_class})",
            )
    for step in steps:
        if step.action == "set":
            _set_rate(modules[step.path], step.attr or "p", float(step.value or 0.0))
        elif step.action == "identity":
            _to_identity(model, step.path)
        else:
            _insert(modules[step.path], step)
    return model


def _set_rate(module: nn.Module, attr: str, value: float) -> None:
    current = getattr(module, attr, None)
    if isinstance(current, nn.Module):
        _set_rate(current, "p", value)
        return
    setattr(module, attr, value)


def _to_identity(model: nn.Module, path: str) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if isinstance(parent._modules.get(name), nn.Identity):
        return
    parent._modules[name] = nn.Identity()


def _insert(module: nn.Module, step: Any) -> None:
    child = str(step.child)
    cls = _CLASSES[str(step.dropout)]
    p = float(step.value or 0.0)
    existing = module._modules.get(child)
    if isinstance(existing, cls):
        existing.p = p  # type: ignore[assignment]
    else:
        if child in module.__dict__ or hasattr(type(module), child):
            raise UsageError(
                f"'{child}' is already an attribute of {type(module).__name__}",
                hint="rename that attribute, or place this dropout by hand",
            )
        module.add_module(child, cls(p))
    hooks = module._forward_hooks if step.hook == "forward" else module._forward_pre_hooks
    kind = _AfterHook if step.hook == "forward" else _BeforeHook
    if any(isinstance(h, kind) and h.child == child for h in hooks.values()):
        return
    if step.hook == "forward":
        module.register_forward_hook(_AfterHook(child))
    else:
        module.register_forward_pre_hook(_BeforeHook(child), with_kwargs=True)
