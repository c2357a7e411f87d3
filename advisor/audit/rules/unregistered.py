"""unregistered-dropout (DRP309): a dropout module kept in a plain list or dict, out of ``model.eval()``'s reach.

``model.train()``/``model.eval()`` walk registered submodules only. A dropout module stored in a Python
list, tuple or dict is called by ``forward`` but never registered, so it keeps the mode it was built in
(training) and drops at inference; it is also missing from ``state_dict()``, ``.to()`` and ``parameters()``
(namisan/mt-dnn#45).

Must flag::

    self.head_drops = [nn.Dropout(0.1) for _ in tasks]                  # plain list

Must not flag::

    self.head_drops = nn.ModuleList(nn.Dropout(0.1) for _ in tasks)     # registered
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from advisor.audit.analysis import fmt_p

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "unregistered-dropout"
ID = "DRP309"
SEVERITY = "error"
TITLE = "Dropout modules must be registered submodules"


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        if acc.registered or acc.source != "module":
            continue
        holder, _, rest = acc.module.partition("[")
        container = "dict" if rest.startswith(("'", '"')) else "list"
        fix_cls = "nn.ModuleDict" if container == "dict" else "nn.ModuleList"
        owner = holder.rpartition(".")[0]
        if acc.mod is None or acc.mod.training:
            mode = "stays in training mode: it still drops after model.eval(), so predictions are random"
        else:
            mode = "stays in eval mode: it never drops, even in training"
        ctx.finding(
            SLUG,
            acc.module,
            f"{acc.module_class} '{acc.module}' (p={fmt_p(acc.p)}) is kept in a plain Python {container} "
            f"({ctx.cls_of(owner)}.{holder.rpartition('.')[2]}), so it is not a registered submodule: "
            f"model.train() and model.eval() never reach it and it {mode} "
            f"({acc.eval_calls} call(s) in the eval-mode forward).",
            f"wrap the {container} in {fix_cls} (self.{holder.rpartition('.')[2]} = {fix_cls}(...)) so that "
            "train()/eval(), state_dict() and .to() reach every module in it",
            site=acc,
        )
