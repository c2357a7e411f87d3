"""inplace-dropout-hazard (DRP306): in-place dropout on a tensor autograd saved for backward.

Must flag::

    nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.25, inplace=True))

Must not flag::

    nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.25))
    nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.0, inplace=True))   # p = 0 writes nothing
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.audit import trace as tr

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "inplace-dropout-hazard"
ID = "DRP306"
SEVERITY = "warning"
TITLE = "In-place dropout after an op autograd needs"


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        if acc.zero:
            continue  # p = 0: ATen returns the input untouched, nothing is overwritten
        if not (acc.inplace or any(dc.inplace for dc in acc.drop_calls if dc.kind != "random")):
            continue
        for e in acc.train_events:
            prod = ctx.input_producer(e)
            if prod is None:
                continue
            if prod.kind == "module":
                hazard = prod.name in tr.SAVES_OUTPUT or (
                    prod.name in tr.SAVES_OUTPUT_IF_INPLACE and bool(getattr(prod.module, "inplace", False))
                )
            else:
                base = tr.normalize_name(prod.name)
                hazard = base in tr.SAVES_OUTPUT_FUNCS or (
                    base in ("leaky_relu", "elu", "celu") and bool(prod.extra.get("inplace"))
                )
            if hazard:
                ctx.finding(
                    SLUG,
                    acc.module,
                    f"{ctx.name(acc)} runs in place (inplace=True) on the output of {ctx.describe(prod)}, "
                    "which autograd keeps for the backward pass: loss.backward() fails with 'one of the variables "
                    "needed for gradient computation has been modified by an inplace operation'.",
                    "use inplace=False (the memory saved is one activation tensor)",
                    site=acc,
                )
                break
