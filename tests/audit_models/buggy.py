"""Dropout bugs from real issue trackers in one MLP: CLI target for the findings case (exit 1)."""

import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.5)
        self.unused = nn.Dropout(0.3)  # registered, never called (timm issue #1726)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        x = self.bn(self.drop(F.relu(self.fc1(x))))  # dropout feeds BatchNorm (variance shift)
        return F.dropout(self.fc2(x), 0.5)  # on the logits, and training= is missing


class OnlyInfo(nn.Module):
    """Element-wise dropout on a conv feature map: an info finding only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.drop(F.relu(self.conv(x)))
        return self.head(x.mean((2, 3)))


class OnlyWarning(nn.Module):
    """A single-layer LSTM with dropout=: a warning finding only."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, num_layers=1, dropout=0.5, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])
