"""recurrent-state-dropout (DRP311): a fresh dropout mask on a recurrent state at every time step.

In a hand-written time loop, dropout applied to the hidden state h (or the LSTM cell state c) that the cell
carries to the next step draws a new mask at each step. Noise then accumulates along the recurrence and
long-term memory is lost (Semeniuta et al. 2016); the variational RNN of Gal & Ghahramani (2016) uses one
mask per sequence on the recurrent connection, and AWD-LSTM drops the recurrent weights instead (Merity et
al. 2018). Dropout on the per-step input or output, or between stacked cells, is not this rule's business.

Must flag::

    for t in range(T):
        h, c = self.cell(x[t], (h, c))
        h = self.drop(h)                     # new mask every step, fed back as the state

Must not flag::

    mask = x.new_empty(B, H).bernoulli_(1 - p) / (1 - p)       # locked: one mask per sequence
    for t in range(T):
        h, c = self.cell(self.drop(x[t]), (h, c))               # dropout on the input is fine
        h = h * mask
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn as nn

from advisor.audit.analysis import ELEMENTWISE_KINDS, fmt_p

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "recurrent-state-dropout"
ID = "DRP311"
SEVERITY = "warning"
TITLE = "One dropout mask per sequence on a recurrent state"


def _state_name(m: nn.Module | None, position: int) -> str:
    if isinstance(m, (nn.LSTMCell, nn.LSTM)):
        return {1: "hidden state h", 2: "cell state c"}.get(position, f"state input {position}")
    if isinstance(m, (nn.GRUCell, nn.RNNCell, nn.GRU, nn.RNN)) and position == 1:
        return "hidden state h"
    return f"recurrent state (input {position + 1})"


def check(ctx: Analysis) -> None:
    looped = {path: spans for path, spans in ctx.train.spans.items() if len(spans) >= 2 and path in ctx.modules}
    if not looped:
        return
    # event index of an output of a call -> (module path, call number)
    made_by: dict[int, tuple[str, int]] = {}
    for path, spans in looped.items():
        for k, span in enumerate(spans):
            for p in span.out_producers:
                if p >= 0:
                    made_by.setdefault(p, (path, k))
    seen: set[tuple[str, str, int]] = set()
    for acc in ctx.sites:
        if acc.kind not in ELEMENTWISE_KINDS or not (acc.p or 0) > 0:
            continue
        for d in acc.train_events:
            src = ctx.input_producer(d)
            if src is None or src.idx not in made_by:
                continue
            path, k = made_by[src.idx]
            reach = {d} | {
                ev.idx for ev in ctx.forward(d, lambda ev: ev.op == "shape" or ctx.noop(ev)) if ev.op == "shape"
            }
            for span in looped[path][k + 1 :]:
                position = next((i for i, p in enumerate(span.in_producers) if i >= 1 and p in reach), None)
                if position is None or (acc.id, path, position) in seen:
                    continue
                seen.add((acc.id, path, position))
                cell = ctx.modules.get(path)
                state = _state_name(cell, position)
                what = (
                    "a per-step mask on the cell state erases long-term memory (Semeniuta et al. 2016)"
                    if state == "cell state c"
                    else "noise accumulates along the recurrence"
                )
                ctx.finding(
                    SLUG,
                    acc.module,
                    f"{ctx.name(acc)} (p={fmt_p(acc.p)}) drops the {state} that {type(cell).__name__} '{path}' "
                    f"carries to its next time step, with a fresh mask at every step ({acc.train_calls} masks in "
                    f"one forward): {what}; Gal & Ghahramani (2016) use one mask per sequence.",
                    "draw one mask per sequence before the loop and multiply the state by it at every step "
                    "(variational / locked dropout), drop the cell update g_t instead of c (Semeniuta et al. "
                    "2016), or use weight drop on the recurrent weights (AWD-LSTM)",
                    site=acc,
                )
                break
