"""Benchmark: a dropout plan for a ~65B-parameter decoder built on the meta device.

    python bench/bench_model_advice.py [--layers 80] [--width 8192] [--seq 128] [--repeat 3]

The model is the auditor benchmark's LLaMA-65B-shaped decoder (80 layers, width 8192, SwiGLU FFN 22016,
vocabulary 32000, GPT-style dropout; see bench/bench_audit.py), built under ``torch.device('meta')``.
``advisor.recommend_for`` traces it, reads its operations, recognises the family, plans and computes the
change list. Targets: every plan under 5 s after construction and peak memory (max RSS) under 1 GiB;
the plan time is printed as a ratio to the construction time measured in the same run. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_audit import Decoder

TARGET_S = 5.0
TARGET_MIB = 1024


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
    ap.add_argument("--repeat", type=int, default=3, help="runs: the first (cold) and the best warm one are shown")
    args = ap.parse_args()

    import advisor.advise.model_plan
    import advisor.audit.api  # noqa: F401
    from advisor import recommend_for
    from advisor.knowledge import default_kb

    kb = default_kb()
    rss_before = peak_rss_mib()
    constructs, plans = [], []
    plan = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        with torch.device("meta"):
            model = Decoder(args.layers, args.width, args.vocab, args.heads, args.hidden)
        constructs.append(time.perf_counter() - t0)
        ids = torch.zeros(1, args.seq, dtype=torch.long, device="meta")
        t0 = time.perf_counter()
        plan = recommend_for(model, ids, samples=1_000_000, regime="scratch", kb=kb)
        plans.append(time.perf_counter() - t0)
    assert plan is not None
    params = sum(p.numel() for p in model.parameters())
    peak = peak_rss_mib()

    counts = plan.counts()
    print(f"model: decoder-only Transformer, {args.layers} layers, width {args.width}, vocab {args.vocab}")
    print(f"parameters: {params / 1e9:.2f} B (meta device: no weight memory)")
    print(
        f"read as: {plan.inferred.spec.get('arch')} {plan.inferred.spec.get('transformer')}, "
        f"{plan.inferred.spec.get('layers')} layers, width {plan.inferred.spec.get('width')}; "
        f"{len(plan.layers)} operations, {len(plan.sites)} planned sites; changes: "
        + ", ".join(f"{n} {a}" for a, n in counts.items())
    )
    print(
        f"first run:  construction {constructs[0]:.3f} s   plan {plans[0]:.3f} s   "
        f"ratio plan/construction = {plans[0] / constructs[0]:.2f}x"
    )
    if args.repeat > 1:
        c, p = min(constructs[1:]), min(plans[1:])
        print(
            f"warm (best of {args.repeat - 1}): construction {c:.3f} s   plan {p:.3f} s   "
            f"ratio plan/construction = {p / c:.2f}x"
        )
    print(f"peak RSS: {peak:.0f} MiB (after imports, before construction: {rss_before:.0f} MiB)")
    ok = max(plans) < TARGET_S and peak < TARGET_MIB
    print(f"target (every plan < {TARGET_S:g} s, peak RSS < 1 GiB):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
