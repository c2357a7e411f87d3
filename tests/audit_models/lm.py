"""A tiny LSTM language model: needs --input-dtype long (token ids)."""

import torch.nn as nn


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 50, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.drop = nn.Dropout(0.3)
        self.rnn = nn.LSTM(width, width, num_layers=2, dropout=0.3, batch_first=True)
        self.decoder = nn.Linear(width, vocab)

    def forward(self, ids):
        out, _ = self.rnn(self.drop(self.embed(ids)))
        return self.decoder(self.drop(out))
