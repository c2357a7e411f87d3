"""functional-dropout-ignores-eval (DRP301): functional dropout that stays on after ``model.eval()``.

Must flag::

    def forward(self, x):
        return self.fc2(F.dropout(F.relu(self.fc1(x)), p=0.5))          # training defaults to True

Must not flag::

    def forward(self, x):
        return self.fc2(F.dropout(F.relu(self.fc1(x)), p=0.5, training=self.training))

``F.scaled_dot_product_attention(dropout_p=p)`` has no training flag at all: it is flagged when it drops in
eval mode, and not when written ``dropout_p=self.p if self.training else 0.0``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.audit import frozen

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "functional-dropout-ignores-eval"
ID = "DRP301"
SEVERITY = "error"
TITLE = "Functional dropout must follow the module mode"

FIX_LINK = "if it is intended (MC dropout, the Tacotron 2 prenet), allow it: --allow '{glob}:{slug}'"


def check(ctx: Analysis) -> None:
    if frozen.frozen_kind(ctx.model) == frozen.FX and frozen.fx_frozen_calls(ctx.model):
        return  # a traced graph with the flag frozen at True: frozen-graph-dropout explains it
    seen: set[tuple[str, ...]] = set()
    for dc in ctx.evals.drop_calls:
        if dc.in_dropout_module or dc.kind == "random" or not (dc.p or 0) > 0:
            continue
        sdpa = dc.func == "F.scaled_dot_product_attention"
        if not sdpa and dc.training is not True:
            continue
        acc = ctx.site_of(dc)
        if acc is not None and not acc.registered:
            continue  # unregistered-dropout explains it
        key = acc.key if acc is not None else (dc.owner, dc.func)
        if key in seen:
            continue
        seen.add(key)
        where = ctx.cls_of(dc.owner) + ".forward"
        glob = dc.owner or "<root>"
        if sdpa:
            msg = (
                f"F.scaled_dot_product_attention(dropout_p={dc.p:g}) runs in eval mode in {where}: "
                "the function has no training flag, so attention dropout stays on after model.eval() "
                "and predictions are random."
            )
            fix = "pass dropout_p=self.p if self.training else 0.0; " + FIX_LINK.format(glob=glob, slug=SLUG)
        else:
            msg = (
                f"{dc.func}(p={dc.p:g}) runs with training=True in eval mode in {where}: "
                "functional dropout does not follow model.eval(), so it stays on at inference and "
                "predictions are random."
            )
            fix = "pass training=self.training, or use an nn.Dropout module; " + FIX_LINK.format(glob=glob, slug=SLUG)
        ctx.finding(SLUG, dc.owner, msg, fix, site=acc, call_location=dc.location)
