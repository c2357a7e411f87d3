"""drop-path-without-residual (DRP313): stochastic depth on a branch that is not added to a residual.

Drop-path zeroes a whole sample's branch and relies on the skip connection to carry the sample on. Applied
to a block's only path (no shortcut: a stride-2 or channel-changing block), it zeroes the entire output of
that block for the dropped samples (seen in timm's byobnet bottleneck blocks as used by MobileViT at
stride 2, where ``shortcut`` is None).

The residual that legitimises a drop-path is an add (or cat) inside a module call that encloses the drop-path
call (its block; a drop-path hooked onto a layer of the block still belongs to the block) that combines the
branch with a tensor computed from that call's input *without* the branch (the input itself or its shortcut
projection). An add or cat in a later block (the next block's own residual, MobileViT's concatenation) joins
two tensors that both come from the branch, so it does not count. Between the drop-path and
the add the data flow is followed through views, element-wise/per-channel scaling (``x * gamma``, LayerScale,
timm ``Scale``) and rate-0 dropouts.

Must flag::

    def forward(self, x):                       # no shortcut in this block
        return self.act(self.drop_path(self.conv(x)))

Must not flag::

    def forward(self, x):
        return x + self.layer_scale(self.drop_path(self.conv(x)))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from advisor.audit.analysis import fmt_p

if TYPE_CHECKING:
    from advisor.audit import trace as tr
    from advisor.audit.analysis import Analysis

SLUG = "drop-path-without-residual"
ID = "DRP313"
SEVERITY = "warning"
TITLE = "Drop-path only on a residual branch"

_PASS = {"shape", "mul", "dropout"}


def _is_scale(ev: tr.Event) -> bool:
    """A leaf module call that only scales its input element- or channel-wise (LayerScale, timm ``Scale``):
    one input, output of the input's shape, and parameters no larger than one value per channel."""
    if ev.kind != "module" or ev.op != "module" or ev.module is None or len(ev.in_shapes) != 1:
        return False
    shape = ev.in_shapes[0]
    if not shape or ev.out_shapes[:1] != [shape]:
        return False
    params = list(ev.module.parameters(recurse=False))
    return bool(params) and all(p.numel() in (1, *shape) and p.numel() < math.prod(shape) for p in params)


def _owner_spans(ctx: Analysis, path: str, idx: int) -> list[tr.Span]:
    """The calls of the enclosing modules of ``path`` during which event ``idx`` ran, nearest first."""
    parts = path.split(".")
    out: list[tr.Span] = []
    for i in range(len(parts) - 1, -1, -1):
        out.extend(span for span in ctx.train.spans.get(".".join(parts[:i]), []) if span.start <= idx < span.end)
    return out


def _merges_residual(ctx: Analysis, ev: tr.Event, start: int, spans: list[tr.Span]) -> bool:
    """Whether add/cat ``ev`` joins the branch from event ``start`` with the input of a block that encloses the
    drop-path call: its other operand does not depend on the branch and comes from that block's input."""
    if ev.op not in ("add", "cat"):
        return False
    if not spans:
        return True  # no enclosing call recorded: keep the permissive reading
    others = [p for p in ev.producers if p != -2 and not ctx.reaches(p, {start}, start)]
    for span in spans:
        if not span.start <= ev.idx < span.end:
            continue
        targets = {p for p in span.in_producers if p != -2}
        if any(p in targets or ctx.reaches(p, targets, span.start) for p in others):
            return True
    return False


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        if acc.kind != "drop-path" or acc.zero or not acc.train_events:
            continue
        for e in acc.train_events:
            spans = _owner_spans(ctx, acc.module, e)
            reached = list(ctx.forward(e, lambda ev: ev.op in _PASS or ctx.noop(ev) or _is_scale(ev)))
            if any(_merges_residual(ctx, ev, e, spans) for ev in reached):
                continue
            nxt = next((ev for ev in reached if ev.op not in _PASS and not ctx.noop(ev) and not _is_scale(ev)), None)
            where = f"it feeds {ctx.describe(nxt)}" if nxt is not None else "its output is the model output"
            ctx.finding(
                SLUG,
                acc.module,
                f"{ctx.name(acc)} (p={fmt_p(acc.p)}) is applied to a branch that is not added to a residual "
                f"of its own block ({where}): for each dropped sample it zeroes the block's whole output instead "
                "of skipping the branch, so the network sees nothing for that sample from here on.",
                "apply drop-path only where the block adds its input back (x + drop_path(f(x))); in blocks "
                "without a shortcut (stride 2, channel change) leave it out, as torchvision's MBConv does",
                site=acc,
            )
            break
