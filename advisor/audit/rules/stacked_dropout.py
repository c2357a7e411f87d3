"""stacked-dropout (DRP310): one dropout feeding another directly.

Two dropouts in a row drop the same activations twice: the effective rate is 1 - (1 - p1)(1 - p2) (0.5 and
0.5 make 0.75) and the survivors are rescaled by 1 / ((1 - p1)(1 - p2)) (fouticus/pipgcn#1: blocks that
drop both their input and their output, stacked).

Must flag::

    def forward(self, x):                   # in each stacked block
        return self.out_drop(self.fc(self.in_drop(x)).relu())

Must not flag::

    nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 32), nn.ReLU(), nn.Dropout(0.5))
    x + drop_path(proj_drop(proj(x)))       # element-wise dropout then stochastic depth: different kinds
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.audit.analysis import ELEMENTWISE_KINDS, fmt_p

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "stacked-dropout"
ID = "DRP310"
SEVERITY = "warning"
TITLE = "No dropout directly after another dropout"


def check(ctx: Analysis) -> None:
    seen: set[tuple[str, str]] = set()
    for first in ctx.sites:
        if first.kind not in ELEMENTWISE_KINDS or not (first.p or 0) > 0:
            continue
        for e in first.train_events:
            if ctx.train.events[e].op != "dropout":
                continue  # an RNN or attention module whose dropout acts inside it
            for ev in ctx.forward(e, lambda ev: ev.op == "shape" or ctx.noop(ev)):
                if ev.op == "shape" or ctx.noop(ev) or ev.op != "dropout":
                    continue
                second = ctx.event_site(ctx.train, ev.idx)
                if second is None or second is first or second.kind not in ELEMENTWISE_KINDS:
                    continue
                if not (second.p or 0) > 0 or (first.id, second.id) in seen:
                    continue
                seen.add((first.id, second.id))
                p1, p2 = first.p or 0.0, second.p or 0.0
                keep = (1 - p1) * (1 - p2)
                ctx.finding(
                    SLUG,
                    second.module,
                    f"{ctx.name(second)} (p={fmt_p(p2)}) directly follows {ctx.name(first)} (p={fmt_p(p1)}): "
                    f"the same activations are dropped twice, an effective rate of 1 - (1 - {p1:g})(1 - {p2:g}) = "
                    f"{1 - keep:.3g} with the survivors scaled by {1 / keep:.3g} instead of {1 / (1 - p2):.3g}.",
                    f"keep one of the two (remove '{second.module or '<root>'}' or '{first.module or '<root>'}'), "
                    f"or set one rate to reach the total you want",
                    site=second,
                )
