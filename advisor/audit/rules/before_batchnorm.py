"""dropout-before-batchnorm (DRP101): dropout whose output feeds BatchNorm directly (variance shift).

Must flag::

    nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Dropout(0.5), nn.BatchNorm1d(b))

Must not flag::

    nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(), nn.Dropout(0.5))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.audit.analysis import fmt_p

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "dropout-before-batchnorm"
ID = "DRP101"
SEVERITY = "warning"
TITLE = "No dropout directly before BatchNorm"


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        if acc.kind in ("attention-dropout", "weight-drop") or acc.source == "random" or acc.zero:
            continue
        for e in acc.train_events:
            hit = next(
                (ev for ev in ctx.forward(e, lambda ev: ev.op in ("shape", "cat")) if ev.op == "batchnorm"), None
            )
            if hit is None:
                continue
            ctx.finding(
                SLUG,
                acc.module,
                f"{ctx.name(acc)} (p={fmt_p(acc.p)}) feeds {ctx.describe(hit)} directly: BatchNorm's running "
                "variance is collected with dropout on and used without it, a train/test 'variance shift' "
                "(Li et al. 2019) that costs accuracy.",
                "move the dropout after the BatchNorm (Linear/Conv -> BN -> activation -> Dropout), or "
                "keep dropout only after the last BatchNorm, before the classifier",
                site=acc,
            )
            break
