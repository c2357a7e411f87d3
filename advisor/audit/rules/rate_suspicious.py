"""rate-suspicious (DRP203): a keep probability passed as PyTorch's drop probability.

Must flag::

    self.dropout = nn.Dropout(dropout_keep_prob)      # keep 0.8 becomes drop 0.8 (I3D ports)
    nn.Dropout(0.9)                                   # 90 % dropped: a TF1 keep_prob?

Must not flag::

    nn.Dropout(1 - keep_prob)
    nn.Dropout(0.1)
"""

from __future__ import annotations

import linecache
import re
from typing import TYPE_CHECKING

import torch.nn as nn

from advisor.audit.rules.rate_out_of_range import bad_rate

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis, SiteAcc

SLUG = "rate-suspicious"
ID = "DRP203"
SEVERITY = "warning"
TITLE = "Drop probability vs keep probability"

_KEEP = re.compile(r"keep_?prob\w*|keep_?rate\w*|keep_?ratio\w*|retain_?prob\w*|\bkeep_?p\b|\bkeep\b", re.I)
_ONE_MINUS = re.compile(r"1(\.0*)?\s*-\s*(self\.|\w+\.)*$")


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        if bad_rate(acc) is not None:
            continue
        keep = _keep_named(ctx, acc)
        if keep is not None:
            ctx.finding(
                SLUG,
                acc.module,
                f"{ctx.name(acc)} takes its rate from {keep}: a keep (retain) probability passed as PyTorch's "
                "p, which is the drop probability, inverts the regularization (keep 0.8 becomes drop 0.8).",
                f"pass 1 - keep_prob{f' (here {1 - acc.p:g})' if acc.p is not None else ''}, and name it drop_prob",
                site=acc,
            )
            continue
        ps = [acc.p] if acc.p is not None else []
        ps += [dc.p for dc in acc.drop_calls if dc.p is not None and dc.kind != "random"]
        high = [p for p in ps if p >= 0.9]
        if high and acc.kind != "attention-dropout":
            p = high[0]
            ctx.finding(
                SLUG,
                acc.module,
                f"{ctx.name(acc)} drops {p:.0%} of its input (p={p:g}): that looks like a keep probability "
                "(TF1 keep_prob, the retain p of Srivastava et al.) passed as PyTorch's drop probability.",
                f"if you meant to keep {p:.0%}, pass p={1 - p:.2g}",
                site=acc,
            )


def _keep_named(ctx: Analysis, acc: SiteAcc) -> str | None:
    if acc.p is None or acc.p <= 0:
        return None
    holders: list[tuple[str, nn.Module]] = []
    if acc.mod is not None:
        holders.append((acc.module, acc.mod))
    owner = acc.module if acc.source != "module" else acc.module.rpartition(".")[0]
    if owner in ctx.modules and (acc.source != "module" or acc.module != ""):
        holders.append((owner, ctx.modules[owner]))
    for path, m in holders:
        for k, v in vars(m).items():
            if (
                not k.startswith("_")
                and _KEEP.search(k)
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
                and abs(float(v) - acc.p) < 1e-9
            ):
                return f"the attribute {path + '.' if path else ''}{k} = {v:g}"
    if acc.call_location is not None and acc.source == "function":
        line = linecache.getline(acc.call_location[0], acc.call_location[1])
        for hit in _KEEP.finditer(line):
            if not _ONE_MINUS.search(line[: hit.start()]):
                name = acc.call_location[0].rsplit("/", 1)[-1]
                return f"'{hit.group(0)}' (at {name}:{acc.call_location[1]})"
    return None
