"""rnn-dropout-single-layer (DRP304): ``nn.LSTM(dropout=p)`` with ``num_layers=1`` does nothing.

Must flag::

    nn.LSTM(32, 64, num_layers=1, dropout=0.5)

Must not flag::

    nn.LSTM(32, 64, num_layers=2, dropout=0.5)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn as nn

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

SLUG = "rnn-dropout-single-layer"
ID = "DRP304"
SEVERITY = "warning"
TITLE = "RNN dropout= needs num_layers >= 2"


def check(ctx: Analysis) -> None:
    for path, m in ctx.modules.items():
        if isinstance(m, nn.RNNBase) and m.dropout > 0 and m.num_layers == 1:
            name = type(m).__name__
            ctx.finding(
                SLUG,
                path,
                f"{name} '{path}' has dropout={m.dropout:g} but num_layers=1: PyTorch applies "
                "that dropout only between stacked layers, so it does nothing (torch warns once).",
                f"use num_layers >= 2, or add nn.Dropout({m.dropout:g}) on the {name}'s inputs and outputs",
                site=ctx.site_at(path),
            )
