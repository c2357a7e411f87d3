"""Benchmark: the cost of advisor.watch on training loops where nothing is wrong.

    python bench/bench_watch.py [--rounds 7] [--steps 20] [--target 0.05]

Two loops, each run bare and watched in the same process, interleaved round by round (bare, watched,
then watched, bare, ...) so that drifting load on a shared machine hits both alike:

* ``transformer``: a 4-layer pre-norm Transformer encoder classifier (width 128, 4 heads, batch 16 x 32
  tokens) with timm-style attention (the rate held by an ``nn.Dropout`` and handed to
  ``F.scaled_dot_product_attention``), residual and FFN dropout and a classifier dropout: 14 dropout
  sites, 4 rate owners, AdamW;
* ``mlp``: a 3-layer MLP on tabular data (batch 128, width 256) with dropout after each hidden layer:
  a small step, where the per-call hook cost weighs most.

Each loop alternates training steps (train mode, backward, optimizer step) with a validation pass in eval
mode under ``torch.no_grad()`` every 5 steps, as real loops do. Forms timed: ``with advisor.watch(model):``
around the loop, and ``@advisor.watch(model)`` on the per-step function (hooks installed and removed at
every call). The overhead is the median watched round over the median bare round, minus 1. Exit status 1
when any overhead reaches ``--target`` (5 %), or when the watched loop reports a warning (it must not:
nothing is wrong here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import advisor
from advisor.audit.watch import DropoutModeWarning


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, p: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.attn_drop = nn.Dropout(p)
        self.proj = nn.Linear(width, width)
        self.proj_drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, p: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, p)
        self.norm2 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(p), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.drop(self.ffn(self.norm2(x)))


class Encoder(nn.Module):
    def __init__(self, vocab: int = 1000, width: int = 128, heads: int = 4, layers: int = 4, p: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.embed_drop = nn.Dropout(p)
        self.blocks = nn.ModuleList(Block(width, heads, p) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head_drop = nn.Dropout(p)
        self.head = nn.Linear(width, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_drop(self.embed(ids))
        for block in self.blocks:
            x = block(x)
        return self.head(self.head_drop(self.norm(x).mean(1)))


def mlp(width: int = 256, p: float = 0.2) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, width),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(width, 2),
    )


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[int], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(i: int) -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if i % 5 == 4:
            model.eval()
            with torch.no_grad():
                model(x)

    return step


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, rounds: int, steps: int) -> dict[str, Any]:
    step = make_step(model, x, y)
    watch = advisor.watch(model)
    decorated = advisor.watch(model)(step)

    def bare() -> None:
        for i in range(steps):
            step(i)

    def context() -> None:
        with watch:
            for i in range(steps):
                step(i)

    def decorator() -> None:
        for i in range(steps):
            decorated(i)

    forms = {"bare": bare, "with watch()": context, "@watch() per step": decorator}
    for fn in forms.values():  # warm-up: allocator, kernels, lazy imports
        fn()
    times: dict[str, list[float]] = {k: [] for k in forms}
    order = list(forms)
    for r in range(rounds):
        for k in order if r % 2 == 0 else reversed(order):
            times[k].append(timed(forms[k]))
    base = statistics.median(times["bare"])
    result: dict[str, Any] = {"model": name, "bare_s": base, "steps": steps}
    print(f"{name}: bare loop median {base * 1e3 / steps:.2f} ms/step over {rounds} rounds of {steps} steps")
    for k in order[1:]:
        med = statistics.median(times[k])
        result[k] = med / base - 1
        overhead = 100 * (med / base - 1)
        print(f"  {k:20} {med * 1e3 / steps:.2f} ms/step   ratio {med / base:.4f}   overhead {overhead:+.2f} %")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--target", type=float, default=0.05)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DropoutModeWarning)
        results = [
            bench(
                "transformer",
                Encoder(),
                torch.randint(0, 1000, (16, 32)),
                torch.randint(0, 2, (16,)),
                args.rounds,
                args.steps,
            ),
            bench("mlp", mlp(), torch.randn(128, 64), torch.randint(0, 2, (128,)), args.rounds, args.steps * 4),
        ]
    ours = [w for w in caught if issubclass(w.category, DropoutModeWarning)]
    worst = max(v for r in results for k, v in r.items() if k.startswith(("with", "@")))
    ok = worst < args.target and not ours
    print(f"dropout-mode warnings in these correct loops: {len(ours)} (expected 0)")
    print(f"worst overhead {100 * worst:+.2f} %; target < {100 * args.target:.0f} %:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
