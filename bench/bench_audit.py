"""Benchmark: audit a ~65B-parameter decoder-only Transformer built on the meta device.

    python bench/bench_audit.py [--layers 80] [--width 8192] [--vocab 32000] [--seq 128] [--repeat 3]

The model is LLaMA-65B-shaped (80 layers, width 8192, SwiGLU FFN 22016, vocabulary 32000) with GPT-style
dropout: embedding dropout, attention dropout through F.scaled_dot_product_attention (off in eval),
residual dropout after attention and FFN. It is built under ``torch.device('meta')`` (no weight memory),
then audited. The target is an audit under 3 s with peak memory (max RSS of the process) under 1 GiB;
the audit time is printed as a ratio to the construction time measured in the same run.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, p: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.o = nn.Linear(width, width, bias=False)
        self.attn_p = p
        self.resid_dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (f(x).view(b, t, self.heads, c // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_p if self.training else 0.0, is_causal=True)
        return self.resid_dropout(self.o(y.transpose(1, 2).reshape(b, t, c)))


class FeedForward(nn.Module):
    def __init__(self, width: int, hidden: int, p: float) -> None:
        super().__init__()
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.silu(self.gate(x)) * self.up(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, p: float) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(width)
        self.attn = Attention(width, heads, p)
        self.ffn_norm = nn.RMSNorm(width)
        self.ffn = FeedForward(width, hidden, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class Decoder(nn.Module):
    def __init__(self, layers: int, width: int, vocab: int, heads: int, hidden: int, p: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.embed_dropout = nn.Dropout(p)
        self.blocks = nn.ModuleList(Block(width, heads, hidden, p) for _ in range(layers))
        self.norm = nn.RMSNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_dropout(self.embed(ids))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm(x))


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=80)
    ap.add_argument("--width", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--heads", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=22016)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="runs: the first (cold) and the best warm one are shown")
    args = ap.parse_args()

    import advisor.audit.api  # noqa: F401 - import cost is not part of the audit time
    from advisor.audit.api import audit

    rss_before = peak_rss_mib()
    constructs, audits = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        with torch.device("meta"):
            model = Decoder(args.layers, args.width, args.vocab, args.heads, args.hidden)
        constructs.append(time.perf_counter() - t0)
        ids = torch.zeros(args.batch, args.seq, dtype=torch.long, device="meta")
        t0 = time.perf_counter()
        report = audit(model, ids)
        audits.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    peak = peak_rss_mib()

    print(f"model: decoder-only Transformer, {args.layers} layers, width {args.width}, vocab {args.vocab}")
    print(f"parameters: {params / 1e9:.2f} B (meta device: no weight memory)")
    print(f"sites: {len(report.sites)}   findings: {len(report.findings)}   device: {report.device}")
    # The first run pays one-time costs (lazy kernels, caches) in both phases, as a CLI invocation does.
    print(
        f"first run:  construction {constructs[0]:.3f} s   audit {audits[0]:.3f} s   "
        f"ratio audit/construction = {audits[0] / constructs[0]:.2f}x"
    )
    if args.repeat > 1:
        c, a = min(constructs[1:]), min(audits[1:])
        print(
            f"warm (best of {args.repeat - 1}): construction {c:.3f} s   audit {a:.3f} s   "
            f"ratio audit/construction = {a / c:.2f}x"
        )
    print(f"peak RSS: {peak:.0f} MiB (after imports, before construction: {rss_before:.0f} MiB)")
    ok = max(audits) < 3.0 and peak < 1024
    print("target (every audit < 3 s, peak RSS < 1 GiB):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
