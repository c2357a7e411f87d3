"""dropout-never-called (DRP307): a dropout module with a rate above 0 that the train-mode forward never runs.

Silent for: rate 0 (nothing to lose); a module that only holds the rate a functional call uses (``attn_drop.p``
handed to SDPA: reported as one site with that call); ``nn.MultiheadAttention``/RNN ``dropout=`` (torch applies
it inside);

- a dropout in a block without a residual when it is a drop-path, or when another block of the same class with a
  residual ran its dropout of the same name (stochastic depth / drop-connect needs a skip branch: EfficientNet,
  MobileNetV3 and RexNet build one per block and call it only when the block has one; transformers'
  EfficientNetFinalBlockLayer does the same with a plain ``nn.Dropout``);
- a dropout whose enclosing module (the nearest one that is not a ``ModuleList``/``ModuleDict``, which never run
  by themselves) did not run in this pass either: skipped at random (LayerDrop), replaced during the forward
  (BigBird's attention switch), or not used for this input (LUKE's entity embeddings without entity ids). That
  is not dead code; the report gets a note that this input did not exercise it.

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
    from advisor.audit.analysis import Analysis, SiteAcc

SLUG = "dropout-never-called"
ID = "DRP307"
SEVERITY = "warning"
TITLE = "A dropout module that never runs"

_CONTAINERS = (nn.ModuleList, nn.ModuleDict)


def _enclosing(ctx: Analysis, path: str) -> str | None:
    """The nearest ancestor of ``path`` that can run by itself (not a ModuleList/ModuleDict); None at the root."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        anc = ".".join(parts[:i])
        if not isinstance(ctx.modules.get(anc), _CONTAINERS):
            return anc
    return None


def _skip_only_elsewhere(ctx: Analysis, acc: SiteAcc, parent: str) -> bool:
    """Whether this dropout's block has no residual while a block of the same class that has one ran its
    dropout of the same attribute name: the dropout is applied only on a skip branch (drop-connect)."""
    if ctx.has_residual_merge(parent) is not False:
        return False
    parent_cls = type(ctx.modules.get(parent))
    leaf = acc.module.rpartition(".")[2]
    for path, m in ctx.modules.items():
        if path == parent or type(m) is not parent_cls:
            continue
        if ctx.train.calls.get(f"{path}.{leaf}", 0) > 0 and ctx.has_residual_merge(path):
            return True
    return False


def check(ctx: Analysis) -> None:
    idle: list[str] = []
    for acc in ctx.sites:
        if acc.source != "module" or acc.train_calls > 0 or acc.zero or not acc.registered:
            continue
        if isinstance(acc.mod, (nn.MultiheadAttention, nn.RNNBase)):
            continue
        parent = _enclosing(ctx, acc.module)
        if parent is not None and ctx.train.calls.get(parent, 0) == 0:
            idle.append(acc.module)  # the whole enclosing module did not run for this input
            continue
        parent_path = acc.module.rpartition(".")[0]
        if acc.kind == "drop-path" and ctx.has_residual_merge(parent_path) is False:
            continue  # a block without a skip branch: stochastic depth must not run there
        if parent is not None and _skip_only_elsewhere(ctx, acc, parent):
            continue
        ctx.finding(
            SLUG,
            acc.module,
            f"{ctx.name(acc)} (p={fmt_p(acc.p)}) is registered but never ran in the train-mode forward, although "
            f"its enclosing module '{parent or '<root>'}' did: the configured rate has no effect.",
            "call it in forward (for example x = self.drop(x) before the next layer), or remove it and its "
            "config field",
            site=acc,
        )
    if idle:
        shown = ", ".join(f"'{m}'" for m in idle[:3]) + (f" and {len(idle) - 3} more" if len(idle) > 3 else "")
        ctx.notes.append(
            f"{len(idle)} dropout module(s) did not run because their enclosing module did not run in the "
            f"train-mode forward (skipped at random such as LayerDrop, replaced during the forward, or unused for "
            f"this input): {shown}; audit with an input that exercises them to check them"
        )
