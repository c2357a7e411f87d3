"""dropout-never-called (DRP307): a dropout module with a rate above 0 that the train-mode forward never runs.

Silent for: rate 0 (nothing to lose); a module that only holds the rate a functional call uses (``attn_drop.p``
handed to SDPA: reported as one site with that call); a drop-path module in a block without a residual
(stochastic depth needs a skip branch: EfficientNet, MobileNetV3 and RexNet build one per block and call it
only when the block has one); ``nn.MultiheadAttention``/RNN ``dropout=`` (torch applies it inside).

Must flag::

    self.drop = nn.Dropout(0.2)
    def forward(self, x): return self.fc(self.norm(x))            # self.drop is never called

Must not flag::

    self.stochastic_depth = StochasticDepth(p)
    def forward(self, x):
        y = self.body(x)
        return x + self.stochastic_depth(y) if self.use_res else y   # no skip, no stochastic depth
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn as nn

from advisor.audit.analysis import fmt_p

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "dropout-never-called"
ID = "DRP307"
SEVERITY = "warning"
TITLE = "A dropout module that never runs"


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        if acc.source != "module" or acc.train_calls > 0 or acc.zero or not acc.registered:
            continue
        if isinstance(acc.mod, (nn.MultiheadAttention, nn.RNNBase)):
            continue
        parent_path = acc.module.rpartition(".")[0]
        if acc.kind == "drop-path" and ctx.has_residual_merge(parent_path) is False:
            continue  # a block without a skip branch: stochastic depth must not run there
        parent = ""
        parts = acc.module.split(".")
        for i in range(len(parts) - 1, 0, -1):
            anc = ".".join(parts[:i])
            if ctx.train.calls.get(anc, 0) == 0 and anc in ctx.modules:
                parent = f" (its parent '{anc}' never ran either)"
            else:
                break
        ctx.finding(
            SLUG,
            acc.module,
            f"{ctx.name(acc)} (p={fmt_p(acc.p)}) is registered but never ran in the train-mode forward{parent}: "
            "the configured rate has no effect.",
            "call it in forward (for example x = self.drop(x) before the next layer), or remove it and its "
            "config field",
            site=acc,
        )
