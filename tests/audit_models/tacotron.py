"""Tacotron 2's prenet: dropout kept on at inference on purpose (NVIDIA/tacotron2 issues #247, #324)."""

import itertools

import torch.nn as nn
import torch.nn.functional as F


class Prenet(nn.Module):
    def __init__(self, in_dim: int = 16, sizes: tuple[int, ...] = (32, 32)) -> None:
        super().__init__()
        dims = [in_dim, *sizes]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in itertools.pairwise(dims))

    def forward(self, x):
        for linear in self.layers:
            x = F.dropout(F.relu(linear(x)), p=0.5, training=True)  # on purpose, per the paper
        return x


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.prenet = Prenet()
        self.rnn = nn.LSTMCell(32, 32)
        self.proj = nn.Linear(32, 16)

    def forward(self, frames):
        h, _ = self.rnn(self.prenet(frames))
        return self.proj(h)
