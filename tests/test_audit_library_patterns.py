"""Plain-torch reproductions of how timm and torchvision place dropout (the libraries are not in CI).

Each class paraphrases one library pattern, small, with every rate above 0 so that each rule has something
to look at. None may get a finding, on the CPU or on the meta device: these are the models users audit
first. Reference shapes: timm's vision_transformer.Block / Attention (fused_attn) / LayerScale, its
ResNet and EfficientNet heads (F.dropout with drop_rate), ConvNeXt blocks (depthwise conv, layer scale,
drop-path), Swin window attention (relative position bias, attn_drop), torchvision's ResNet with
StochasticDepth, VGG and AlexNet classifiers (tests/test_audit_reference.py has those two), timm's
MetaFormer/PoolFormer block (Scale after drop-path) and TNT attention (in-place attn_drop at its default p = 0).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from advisor.audit.api import audit


class DropPath(nn.Module):
    """timm.layers.DropPath: per-sample, scaled by 1 / keep."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Module):
    """timm Attention with fused_attn: attn_drop only holds the rate handed to SDPA."""

    def __init__(self, dim: int, heads: int = 2, attn_drop: float = 0.1, proj_drop: float = 0.1) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = nn.Dropout(attn_drop), nn.Dropout(proj_drop)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.1) -> None:
        super().__init__()
        self.fc1, self.act, self.drop1 = nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop)
        self.fc2, self.drop2 = nn.Linear(hidden, dim), nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, drop_path: float) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim), Attention(dim), LayerScale(dim)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(dim), Mlp(dim, 2 * dim), LayerScale(dim)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class TimmViT(nn.Module):
    """timm VisionTransformer: pos_drop after the embeddings, a linear drop-path schedule, head_drop."""

    def __init__(self, dim: int = 32, depth: int = 3, drop_path_rate: float = 0.2, drop_rate: float = 0.1) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 8, 8)
        self.pos_embed = nn.Parameter(torch.zeros(1, 16, dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = [x.item() for x in torch.linspace(0, drop_path_rate, depth, device="cpu")]
        self.blocks = nn.Sequential(*[ViTBlock(dim, r) for r in rates])
        self.norm, self.head_drop, self.head = nn.LayerNorm(dim), nn.Dropout(drop_rate), nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = self.blocks(self.pos_drop(x + self.pos_embed))
        return self.head(self.head_drop(self.norm(x).mean(1)))


class TimmResNetHead(nn.Module):
    """timm ResNet's forward_head: global pool, then F.dropout(p=float(self.drop_rate)) before fc."""

    def __init__(self, drop_rate: float = 0.25) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.drop_rate, self.fc = drop_rate, nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x).mean((2, 3))
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return self.fc(x)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, drop_path: float) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm, self.mlp = nn.LayerNorm(dim), Mlp(dim, 4 * dim, drop=0.0)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.mlp(self.norm(self.conv_dw(x).permute(0, 2, 3, 1))).mul(self.gamma).permute(0, 3, 1, 2)
        return self.drop_path(x) + shortcut


class ConvNeXt(nn.Module):
    def __init__(self, dim: int = 16, drop_path_rate: float = 0.1, drop_rate: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, 4)
        rates = [x.item() for x in torch.linspace(0, drop_path_rate, 3, device="cpu")]
        self.stages = nn.Sequential(*[ConvNeXtBlock(dim, r) for r in rates])
        self.head_drop, self.fc = nn.Dropout(drop_rate), nn.Linear(dim, 10)

    def forward(self, x):
        return self.fc(self.head_drop(self.stages(self.stem(x)).mean((2, 3))))


class WindowAttention(nn.Module):
    """Swin: relative position bias, softmax, then the attn_drop module is called (eager path)."""

    def __init__(self, dim: int, heads: int = 2, window: int = 4) -> None:
        super().__init__()
        self.heads, n = heads, window * window
        self.bias = nn.Parameter(torch.zeros(heads, n, n))
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = nn.Dropout(0.1), nn.Dropout(0.1)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1) + self.bias
        attn = self.attn_drop(attn.softmax(-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int = 16, drop_path: float = 0.1) -> None:
        super().__init__()
        self.norm1, self.attn, self.drop_path = nn.LayerNorm(dim), WindowAttention(dim), DropPath(drop_path)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, 2 * dim)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth(p, mode='row')."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        size = [x.shape[0]] + [1] * (x.ndim - 1)
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        return x * noise.div_(1 - self.p)


class Bottleneck(nn.Module):
    def __init__(self, c: int, p: float) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.sd = StochasticDepth(p)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(x + self.sd(out))


class ResNetSD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(Bottleneck(16, 0.05), Bottleneck(16, 0.1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


class Pooling(nn.Module):
    """timm metaformer Pooling: the token mixer of PoolFormer."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)

    def forward(self, x):
        return self.pool(x) - x


class Scale(nn.Module):
    """timm metaformer Scale: a per-channel multiply (LayerScale for NCHW maps)."""

    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.scale = nn.Parameter(init * torch.ones(dim))

    def forward(self, x):
        return x * self.scale.view(-1, 1, 1)


class MetaFormerBlock(nn.Module):
    """timm MetaFormerBlock: the drop-path output goes through a Scale before the residual add."""

    def __init__(self, dim: int, drop_path: float) -> None:
        super().__init__()
        self.norm1, self.token_mixer = nn.GroupNorm(1, dim), Pooling()
        self.drop_path1, self.layer_scale1, self.res_scale1 = DropPath(drop_path), Scale(dim), nn.Identity()
        self.norm2, self.mlp = nn.GroupNorm(1, dim), nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU())
        self.drop_path2, self.layer_scale2, self.res_scale2 = DropPath(drop_path), Scale(dim), Scale(dim, 1.0)

    def forward(self, x):
        x = self.res_scale1(x) + self.layer_scale1(self.drop_path1(self.token_mixer(self.norm1(x))))
        return self.res_scale2(x) + self.layer_scale2(self.drop_path2(self.mlp(self.norm2(x))))


class PoolFormer(nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 3, padding=1)
        self.blocks = nn.Sequential(MetaFormerBlock(dim, 0.1), MetaFormerBlock(dim, 0.2))
        self.head = nn.Linear(dim, 4)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class TNTAttention(nn.Module):
    """timm tnt.Attention: nn.Dropout(attn_drop, inplace=True) after the softmax; attn_drop_rate defaults to 0."""

    def __init__(self, dim: int = 16, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.qk, self.v, self.proj = nn.Linear(dim, dim * 2), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop, inplace=True)

    def forward(self, x):
        q, k = self.qk(x).chunk(2, dim=-1)
        attn = (q @ k.transpose(-2, -1) * 0.25).softmax(dim=-1)
        attn = self.attn_drop(attn)
        return self.proj(attn @ self.v(x))


IMG = (2, 3, 32, 32)
CASES = {
    "timm-vit": (TimmViT, IMG),
    "timm-resnet-head": (TimmResNetHead, IMG),
    "convnext": (ConvNeXt, IMG),
    "swin-block": (SwinBlock, (2, 16, 16)),
    "torchvision-resnet-stochastic-depth": (ResNetSD, IMG),
    "timm-poolformer-layer-scale-after-drop-path": (PoolFormer, IMG),
    "timm-tnt-inplace-attention-dropout-at-p0": (TNTAttention, (2, 6, 16)),
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", list(CASES))
def test_library_pattern_gets_no_finding(name):
    cls, shape = CASES[name]
    report = audit(cls(), torch.randn(*shape))
    assert [(f.slug, f.module, f.message) for f in report.findings] == []


@pytest.mark.parametrize("name", list(CASES))
def test_library_pattern_gets_no_finding_on_meta(name):
    cls, shape = CASES[name]
    with torch.device("meta"):
        model = cls()
    report = audit(model, torch.empty(*shape, device="meta"))
    assert [(f.slug, f.module) for f in report.findings] == []


def test_timm_vit_sites_are_what_the_library_builds():
    report = audit(TimmViT(), torch.randn(*IMG))
    kinds = sorted((s.kind, s.p) for s in report.sites if s.calls)
    # pos_drop, head_drop; per block: SDPA (attn_drop's rate), proj_drop, two Mlp drops; drop-path in blocks 1, 2
    assert kinds.count(("attention-dropout", 0.1)) == 3
    assert [s.rate_from for s in report.sites if s.kind == "attention-dropout"] == [
        f"blocks.{i}.attn.attn_drop" for i in range(3)
    ]
    assert sorted(p for k, p in kinds if k == "drop-path") == pytest.approx([0.1, 0.1, 0.2, 0.2])
