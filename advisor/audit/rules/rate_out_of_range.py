"""rate-out-of-range (DRP204): a drop probability outside [0, 1), or exactly 1.

Must flag::

    nn.Dropout(args.enc_dropout)        # default 6: ValueError at the first training forward
    nn.Dropout(1.0)                     # silently zeroes everything

Must not flag::

    nn.Dropout(0.3)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis, SiteAcc

SLUG = "rate-out-of-range"
ID = "DRP204"
SEVERITY = "error"
TITLE = "Valid drop probabilities are in [0, 1)"


def bad_rate(acc: SiteAcc) -> float | None:
    ps = [acc.p] if acc.p is not None else []
    ps += [dc.p for dc in acc.drop_calls if dc.p is not None and dc.kind != "random"]
    return next((p for p in ps if math.isnan(p) or p < 0 or p >= 1), None)


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        p = bad_rate(acc)
        if p is None:
            continue
        if p == 1:
            why = (
                "p=1 zeroes every activation in training (torch allows it silently), so nothing reaches the next layer"
            )
        else:
            why = f"p={p:g} is outside [0, 1): torch raises ValueError at the first training forward"
        ctx.finding(
            SLUG,
            acc.module,
            f"{ctx.name(acc)} has a drop probability of {p:g}: {why}.",
            "use a drop probability in [0, 1), e.g. 0.1-0.5; PyTorch's p is the fraction dropped",
            site=acc,
        )
