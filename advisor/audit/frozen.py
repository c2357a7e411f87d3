"""Graphs frozen in a mode: TorchScript modules, ``torch.export`` programs and other aten-level graphs.

Their forward cannot be hooked module by module, and their dropout nodes may carry a constant
``train=True`` fixed when the model was traced or exported in train mode: ``model.eval()`` then cannot turn
dropout off (an exported program's ``eval()`` even raises NotImplementedError in torch 2.13). Such a model is
audited as what it is: its dropout nodes are read from the graph, it is run as given (in eval mode where its
mode can be switched) twice with different seeds, and the outputs are compared. ``torch.fx``
GraphModules from ``symbolic_trace`` keep their submodules and are audited like any ``nn.Module``; only
their functional dropout calls can have a frozen ``training`` flag (see :func:`fx_frozen_calls`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

EXPORT = "torch.export program"
ATEN_GRAPH = "aten-level fx graph"
JIT_TRACE = "TorchScript (torch.jit.trace)"
JIT_SCRIPT = "TorchScript (torch.jit.script)"
FX = "torch.fx GraphModule"

_ATEN_DROPOUT = {
    "dropout",
    "dropout_",
    "native_dropout",
    "feature_dropout",
    "feature_dropout_",
    "alpha_dropout",
    "alpha_dropout_",
    "feature_alpha_dropout",
    "feature_alpha_dropout_",
}


@dataclass
class GraphDropout:
    """One dropout node of a frozen graph."""

    name: str
    op: str  # "aten.dropout", "aten::dropout", "F.dropout"
    p: float | None
    train: bool | None  # a constant baked into the graph, or None when it follows the module's mode


def frozen_kind(model: nn.Module) -> str | None:
    """What kind of frozen graph ``model`` is, or None for an ordinary (eager) module."""
    if isinstance(model, torch.jit.ScriptModule):
        return JIT_TRACE if isinstance(model, torch.jit.TracedModule) else JIT_SCRIPT
    if isinstance(model, torch.fx.GraphModule):
        graph: Any = model.graph
        aten = any(isinstance(n.target, torch._ops.OpOverload) for n in graph.nodes if n.op == "call_function")
        if not aten:
            return FX
        names = {c.__name__ for c in type(model).__mro__}
        return EXPORT if "_StatefulGraphModule" in names else ATEN_GRAPH
    return None


def _const(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float)) else None


def graph_dropouts(model: Any, kind: str) -> list[GraphDropout]:
    """The dropout nodes of a frozen graph, with their rate and their ``train`` flag when it is a constant."""
    out: list[GraphDropout] = []
    if kind in (JIT_TRACE, JIT_SCRIPT):
        graph = model.inlined_graph
        for i, node in enumerate(graph.nodes()):
            base = node.kind().removeprefix("aten::")
            if not node.kind().startswith("aten::") or base not in _ATEN_DROPOUT:
                continue
            inputs = list(node.inputs())
            vals = [inp.toIValue() if inp.node().kind() == "prim::Constant" else None for inp in inputs]
            p = _const(vals[1]) if len(vals) > 1 else None
            train = _const(vals[2]) if len(vals) > 2 else None
            out.append(GraphDropout(f"{base}_{i}", node.kind(), float(p) if p is not None else None, train))
        return out
    for node in model.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if isinstance(target, torch._ops.OpOverload):
            base = target._schema.name.removeprefix("aten::")
            if base not in _ATEN_DROPOUT:
                continue
            p = _const(node.args[1]) if len(node.args) > 1 else _const(node.kwargs.get("p"))
            train = _const(node.args[2]) if len(node.args) > 2 else _const(node.kwargs.get("train"))
            out.append(GraphDropout(node.name, f"aten.{base}", float(p) if p is not None else None, train))
    return out


def fx_frozen_calls(model: Any) -> list[GraphDropout]:
    """Functional dropout calls of a symbolic-traced GraphModule whose ``training`` flag is a constant True."""
    import torch.nn.functional as F

    funcs = {F.dropout: "F.dropout", F.dropout1d: "F.dropout1d", F.dropout2d: "F.dropout2d"}
    funcs.update({F.dropout3d: "F.dropout3d", F.alpha_dropout: "F.alpha_dropout"})
    out = []
    for node in model.graph.nodes:
        if node.op == "call_function" and node.target in funcs:
            training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
            p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
            if training is True and isinstance(p, (int, float)) and p > 0:
                out.append(GraphDropout(node.name, funcs[node.target], float(p), True))
    return out


def switch_mode(model: nn.Module, training: bool) -> bool:
    """Set the mode where the graph allows it; False when it refuses (exported programs)."""
    try:
        model.train(training)
    except NotImplementedError:
        return False
    return True


def outputs_differ(a: Any, b: Any) -> bool:
    from advisor.audit import trace as tr

    xs, ys = list(tr.iter_tensors(a)), list(tr.iter_tensors(b))
    if len(xs) != len(ys):
        return True
    for x, y in zip(xs, ys, strict=True):
        if x.shape != y.shape:
            return True
        if x.is_floating_point() and not torch.allclose(x, y, rtol=1e-5, atol=1e-6, equal_nan=True):
            return True
        if not x.is_floating_point() and not torch.equal(x, y):
            return True
    return False


def describe_p(p: float | None) -> str:
    return "?" if p is None or math.isnan(p) else f"{p:g}"
