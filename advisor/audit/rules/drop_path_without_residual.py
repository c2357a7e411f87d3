"""drop-path-without-residual (DRP313): stochastic depth on a branch that is not added to a residual.

Drop-path zeroes a whole sample's branch and relies on the skip connection to carry the sample on. Applied
to a block's only path (no shortcut: a stride-2 or channel-changing block), it zeroes the entire output of
that block for the dropped samples (seen in timm's byobnet bottleneck blocks as used by MobileViT at
stride 2, where ``shortcut`` is None).

Must flag::

    def forward(self, x):                       # no shortcut in this block
        return self.act(self.drop_path(self.conv(x)))

Must not flag::

    def forward(self, x):
        return x + self.drop_path(self.conv(x))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.audit.analysis import fmt_p

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "drop-path-without-residual"
ID = "DRP313"
SEVERITY = "warning"
TITLE = "Drop-path only on a residual branch"

_PASS = {"shape", "mul", "dropout"}


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        if acc.kind != "drop-path" or acc.zero or not acc.train_events:
            continue
        for e in acc.train_events:
            reached = list(ctx.forward(e, lambda ev: ev.op in _PASS or ctx.noop(ev)))
            if any(ev.op in ("add", "cat") for ev in reached):
                continue
            nxt = next((ev for ev in reached if ev.op not in _PASS and not ctx.noop(ev)), None)
            where = f"it feeds {ctx.describe(nxt)}" if nxt is not None else "its output is the model output"
            ctx.finding(
                SLUG,
                acc.module,
                f"{ctx.name(acc)} (p={fmt_p(acc.p)}) is applied to a branch that is not added to a residual "
                f"({where}): for each dropped sample it zeroes the block's whole output instead of skipping "
                "the branch, so the network sees nothing for that sample from here on.",
                "apply drop-path only where the block adds its input back (x + drop_path(f(x))); in blocks "
                "without a shortcut (stride 2, channel change) leave it out, as torchvision's MBConv does",
                site=acc,
            )
            break
