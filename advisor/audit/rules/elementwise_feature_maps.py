"""elementwise-dropout-on-feature-maps (DRP005, info): element-wise dropout on conv feature maps.

Must flag::

    nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.2))          # (N, C, H, W)

Must not flag::

    nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout2d(0.2))
    nn.Dropout(0.0) anywhere: a rate of 0 drops nothing
    nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Dropout(0.2), nn.Flatten())   # (N, C, 1, 1): a channel per element
    x + conv2(dropout(relu(bn2(conv1(relu(bn1(x)))))))   # Wide ResNet's block: element-wise p=0.3 between
                                                         # the two convs of a residual branch is the published
                                                         # recipe (Zagoruyko & Komodakis 2016; DRP009)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "elementwise-dropout-on-feature-maps"
ID = "DRP005"
SEVERITY = "info"
TITLE = "Channel-wise dropout for conv feature maps"

_PASS_FEATURES = {"activation", "batchnorm", "layernorm", "pool", "shape", "dropout", "add", "mul", "cat"}
_IN_BRANCH = {"activation", "batchnorm", "layernorm", "shape", "dropout"}


def _wide_residual_branch(ctx: Analysis, acc_module: str, e: int) -> bool:
    """Whether the dropout at event ``e`` sits between two convs of a residual branch (a Wide ResNet block)."""
    ev = ctx.train.events[e]
    if not any(c.op == "conv" for c in ctx.forward(e, lambda c: c.op in _IN_BRANCH)):
        return False
    block = acc_module.rpartition(".")[0] if ev.kind == "module" else ev.owner
    return bool(block) and bool(ctx.has_residual_merge(block))


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        if acc.kind != "dropout" or acc.source == "random" or acc.zero:
            continue
        for e in acc.train_events:
            ev = ctx.train.events[e]
            shape = next((dc.in_shape for dc in acc.drop_calls if dc.in_shape), None) or (
                ev.in_shapes[0] if ev.in_shapes else ()
            )
            if len(shape) != 4 or all(d == 1 for d in shape[2:]):
                continue  # one spatial position: each element is a whole channel, Dropout2d would change nothing
            if any(p.op == "conv" for p in ctx.back(e, _PASS_FEATURES)):
                if _wide_residual_branch(ctx, acc.module, e):
                    break  # DRP009's recipe, not a slip: element-wise is what the WRN authors used
                ctx.finding(
                    SLUG,
                    acc.module,
                    f"{ctx.name(acc)} drops single elements of a conv feature map of shape "
                    f"({', '.join(map(str, shape))}): neighbouring pixels are strongly correlated, so element-wise "
                    "dropout regularizes little; channel-wise dropout is usually what is meant.",
                    "use nn.Dropout2d (F.dropout2d) to drop whole channels",
                    site=acc,
                )
                break
