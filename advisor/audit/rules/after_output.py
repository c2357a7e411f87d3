"""dropout-after-output (DRP303): dropout applied to the model's output, after its last layer.

Must flag::

    nn.Sequential(..., nn.Linear(h, n_classes), nn.Dropout(0.5))

Must not flag::

    nn.Sequential(..., nn.Dropout(0.5), nn.Linear(h, n_classes))
    # a block that ends the model with conv -> dropout -> + residual -> LayerNorm (SqueezeBERT)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.audit import trace as tr
from advisor.audit.analysis import fmt_p

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "dropout-after-output"
ID = "DRP303"
SEVERITY = "warning"
TITLE = "No dropout after the output layer"

_LAST_LAYER = {"linear", "conv", "matmul"}


def passes_output(ev: tr.Event) -> bool:
    """Ops that may stand between the logits and the model output: reshapes, softmax, sigmoid."""
    if ev.op in ("shape", "softmax", "dropout"):
        return True
    return ev.op == "activation" and ev.name.lower() in ("sigmoid", "logsigmoid")


def check(ctx: Analysis) -> None:
    outputs = set(ctx.train.outputs)
    for acc in ctx.sites:
        if acc.kind in ("attention-dropout", "weight-drop") or acc.source == "random" or acc.zero:
            continue
        for e in acc.train_events:
            reaches = e in outputs or any(
                ev.idx in outputs for ev in ctx.forward(e, passes_output) if passes_output(ev)
            )
            if not reaches:
                continue
            prod = ctx.input_producer(e)
            if prod is None or prod.op not in _LAST_LAYER:
                continue
            ctx.finding(
                SLUG,
                acc.module,
                f"{ctx.name(acc)} (p={fmt_p(acc.p)}) is applied to the model's output, after its last layer "
                f"{ctx.describe(prod)}: it zeroes logits during training and miscalibrates the probabilities.",
                "put the dropout before the last layer (Dropout -> Linear), never after it",
                site=acc,
            )
            break
