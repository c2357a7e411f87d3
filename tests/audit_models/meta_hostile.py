"""A model whose forward needs real values (data-dependent control flow): it cannot run on meta."""

import torch.nn as nn


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = self.fc(x)
        if h.mean().item() > 100:  # .item() has no value on the meta device
            h = h * 0
        return self.out(self.drop(h))
