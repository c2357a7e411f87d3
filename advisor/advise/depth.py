"""Per-block drop-path (stochastic depth) rates, computed as the cited code computes them.

A drop-path recipe or entry states one rate ``p``: the rate of the deepest block. How the other
blocks' rates follow from it differs between the sources, and a plan reproduces the one it cites:

- ``linear-depth``: Huang et al. 2016, survival p_l = 1 - l/L (1 - p_L), so the drop rate of block
  l = 1..L is l/L * p (the first block already drops p/L);
- ``linspace``: ``torch.linspace(0, p, L)`` (timm's VisionTransformer as used by DeiT, Swin-T's
  ``dpr``, ConvNeXt's ``dp_rates``): block i = 0..L-1 gets p * i / (L - 1), so the first block gets 0
  and the last gets p;
- ``block-index``: EfficientNet's drop connect, ``drop_rate * idx / len(blocks)`` with the 0-based
  index over all L blocks (tensorflow/tpu ``efficientnet_model.py``): the first block gets 0 and the
  last p * (L - 1) / L, and only the blocks with an identity skip have the site at all.
"""

from __future__ import annotations

from typing import Literal

DepthRule = Literal["linear-depth", "linspace", "block-index"]

DEPTH_RULES: tuple[DepthRule, ...] = ("linear-depth", "linspace", "block-index")

#: The rule in words, with its source (shown in plans).
RULE_TEXT: dict[str, str] = {
    "linear-depth": "Huang et al.'s stochastic depth: p_l = l/L · p",
    "linspace": "torch.linspace(0, p, L) as in timm/DeiT, Swin and ConvNeXt",
    "block-index": "EfficientNet's drop connect: p · i/L for the 0-based block index i",
}


def fraction(rule: str, index: int, n: int) -> float:
    """The share of the last block's rate that block ``index`` (0-based) of ``n`` gets under ``rule``."""
    n = max(n, 1)
    if rule == "linspace":
        return index / (n - 1) if n > 1 else 0.0  # torch.linspace(0, p, 1) is [0.]
    if rule == "block-index":
        return index / n
    return (index + 1) / n


def block_rate(rule: str, p: float, index: int, n: int) -> float:
    """The drop rate of block ``index`` (0-based) of ``n`` when the rule's end rate is ``p``; 3 decimals."""
    return round(p * fraction(rule, index, n), 3)


def block_range(rule: str, low: float, high: float, index: int, n: int) -> tuple[float, float]:
    """The cited range of the last block's rate, carried to block ``index`` by the same rule."""
    f = fraction(rule, index, n)
    return round(low * f, 3), round(high * f, 3)


def explain(rule: str, p: float, index: int, n: int) -> str:
    """'linspace(0, 0.2, 12) (timm/DeiT, Swin, ConvNeXt): 0.018 at block 2 of 12'."""
    value = block_rate(rule, p, index, n)
    head = {
        "linear-depth": f"p_l = l/L · {p:g} (Huang et al.)",
        "linspace": f"linspace(0, {p:g}, {n}) (timm/DeiT, Swin, ConvNeXt)",
        "block-index": f"{p:g} · i/{n} with 0-based i (EfficientNet)",
    }.get(rule, rule)
    text = f"{head}: {value:g} at block {index + 1} of {n}"
    if rule in ("linspace", "block-index"):
        text += "; block 1 gets 0, so it has no site"
    return text
