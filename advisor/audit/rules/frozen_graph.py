"""frozen-graph-dropout (DRP314): dropout baked into a traced or exported graph in train mode.

``torch.export.export(model, ...)`` and ``torch.jit.trace(model, ...)`` of a model in train mode record
``dropout(x, p, train=True)`` with a constant flag, and ``torch.fx.symbolic_trace`` constant-folds
``training=self.training``: afterwards ``model.eval()`` cannot switch that dropout off (an exported program's
``eval()`` raises NotImplementedError in torch 2.13), so every prediction is random (pytorch/pytorch#103681).

Must flag::

    torch.export.export(Head().train(), (x,)).module()

Must not flag::

    torch.export.export(Head().eval(), (x,)).module()     # the graph has dropout(train=False): a no-op
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.audit import frozen

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "frozen-graph-dropout"
ID = "DRP314"
SEVERITY = "error"
TITLE = "Trace or export models in eval mode"


def message(kind: str, node: frozen.GraphDropout) -> tuple[str, str]:
    """The finding's message and fix for one baked-in dropout node of a graph of ``kind``."""
    how = "exported" if kind == frozen.EXPORT else "traced"
    switch = (
        "the exported program's eval() is not supported (NotImplementedError), and the graph would ignore it anyway"
        if kind == frozen.EXPORT
        else "model.eval() cannot change a constant in the graph"
    )
    msg = (
        f"the {kind} has dropout baked in: node '{node.name}' is {node.op}(p={frozen.describe_p(node.p)}, "
        f"train=True), fixed when the model was {how} in train mode; {switch}, so it drops at inference and "
        "every prediction is random."
    )
    if kind == frozen.EXPORT:
        fix = "export from eval mode: torch.export.export(model.eval(), example_args); audit the original nn.Module"
    elif kind == frozen.FX:
        fix = "trace from eval mode (symbolic_trace(model.eval())), or audit the original nn.Module"
    else:
        fix = "trace from eval mode: torch.jit.trace(model.eval(), example), or use torch.jit.script"
    return msg, fix


def check(ctx: Analysis) -> None:
    if frozen.frozen_kind(ctx.model) != frozen.FX:
        return
    for node in frozen.fx_frozen_calls(ctx.model):
        msg, fix = message(frozen.FX, node)
        ctx.finding(SLUG, "", msg, fix)
