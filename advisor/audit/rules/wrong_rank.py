"""channel-dropout-wrong-rank (DRP305): Dropout1d/2d/3d on a tensor of the wrong rank.

Must flag::

    nn.Dropout2d(0.2) after nn.Conv1d          # (N, C, L): torch warns and treats it as channel-wise 1-D
    nn.Dropout2d(0.2) after nn.LSTM(batch_first=True)   # (N, L, F): the fix is NOT Dropout1d (drops time steps)

Must not flag::

    nn.Dropout1d(0.2) after nn.Conv1d
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "channel-dropout-wrong-rank"
ID = "DRP305"
SEVERITY = "warning"
TITLE = "Channel-wise dropout on the wrong rank"

# Layers whose 3-D output has its features last ((N, L, F) batch first, or (L, N, F)): channel-wise dropout
# of such a tensor drops whole time steps (or whole sequences), never features.
_FEATURES_LAST = frozenset({"linear", "rnn-layer", "embedding", "attention"})
_FEATURES_LAST_NAMES = frozenset({"LayerNorm", "RMSNorm", "layer_norm", "rms_norm"})


def check(ctx: Analysis) -> None:
    for acc in ctx.sites:
        expected = {"dropout1d": (2, 3), "dropout2d": (4,), "dropout3d": (5,)}.get(acc.kind)
        if expected is None:
            continue
        shapes = [dc.in_shape for dc in acc.drop_calls if dc.in_shape]
        if not shapes:
            shapes = [ctx.train.events[e].in_shapes[0] for e in acc.train_events if ctx.train.events[e].in_shapes]
        bad = next((s for s in shapes if len(s) not in expected), None)
        if bad is None:
            continue
        rank = len(bad)
        shape = "(" + ", ".join(map(str, bad)) + ")"
        if acc.kind == "dropout1d":
            what = f"raises RuntimeError on {rank}-D input {shape} (it takes (N, C, L) or (C, L))"
            fix = "use nn.Dropout2d for (N, C, H, W) feature maps and nn.Dropout3d for (N, C, D, H, W)"
        elif acc.kind == "dropout2d" and rank == 3:
            what = (
                f"receives 3-D input {shape}: PyTorch warns and treats it as (N, C, L) (channel-wise 1-D dropout); "
                "the meaning of 3-D input changed between releases"
            )
            src = ctx.producer(acc, through=frozenset({"activation"}))
            if src is not None and (src.op in _FEATURES_LAST or src.name in _FEATURES_LAST_NAMES):
                what += f"; its input comes from {ctx.describe(src)}, so its features are last"
                fix = (
                    "this is a sequence with features last ((N, L, F) or (L, N, F)): nn.Dropout1d would drop "
                    "whole time steps, not features; use nn.Dropout for element-wise dropout, or locked "
                    "(variational) dropout with one mask per sequence (DRP013; Gal & Ghahramani 2016)"
                )
            else:
                fix = "use nn.Dropout1d for (N, C, L) tensors (channels second, as Conv1d produces them)"
        elif acc.kind == "dropout2d" and rank == 2:
            what = f"receives 2-D input {shape}: there are no channels to drop; PyTorch warns and drops elements"
            fix = "use nn.Dropout for (N, F) tensors"
        elif acc.kind == "dropout3d" and rank == 4:
            what = (
                f"receives 4-D input {shape}: it is read as one unbatched (C, D, H, W) volume, so it drops the "
                "same channels for the whole batch"
            )
            fix = "use nn.Dropout2d for (N, C, H, W) feature maps"
        else:
            what = f"receives {rank}-D input {shape}; it expects {' or '.join(f'{r}-D' for r in expected)} input"
            fix = "pick the dropout class that matches the rank: Dropout1d (N, C, L), Dropout2d (N, C, H, W), Dropout"
        ctx.finding(SLUG, acc.module, f"{ctx.name(acc)} {what}.", fix, site=acc)
