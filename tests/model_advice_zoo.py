"""Small models for the model-aware advice tests: one per family the engine knows, and plain-torch
re-implementations of torchvision and timm shapes (VGG-16, ResNet with BatchNorm, EfficientNet-style
MBConv blocks, ViT). Built small so that a CPU test runs in well under a second each.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- MLP ----------------------------------------------------------------------------------------


class MLP(nn.Module):
    """Two hidden layers, dropout after each activation (Srivastava et al. 2014 style)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.act1 = nn.ReLU()
        self.drop1 = nn.Dropout(p)
        self.fc2 = nn.Linear(64, 64)
        self.act2 = nn.ReLU()
        self.drop2 = nn.Dropout(p)
        self.out = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act1(self.fc1(x)))
        x = self.drop2(self.act2(self.fc2(x)))
        return self.out(x)


class BatchNormMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
            nn.Linear(64, 3),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SNN(nn.Module):
    """Self-normalizing network: SELU and alpha dropout (Klambauer et al. 2017)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(20, 64), nn.SELU(), nn.AlphaDropout(0.05),
            nn.Linear(64, 64), nn.SELU(), nn.AlphaDropout(0.05),
            nn.Linear(64, 3),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---- plain CNNs ---------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """The PyTorch tutorial shape: functional ReLU in forward, one shared pooling module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


class FunctionalCNN(nn.Module):
    """Activations and pooling as calls inside forward: no module boundary between a ReLU and its pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    """torchvision's VGG layout (features / avgpool / classifier with two 0.5 dropouts), any width.

    ``scale`` divides the channel counts and the FC width, so the VGG-16 structure stays small.
    """

    def __init__(self, cfg: list[int | str] = VGG16_CFG, scale: int = 16, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out = int(v) // scale
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        hidden = 4096 // scale
        self.classifier = nn.Sequential(
            nn.Linear(c, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ---- residual CNNs ------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: one ReLU module used twice, a 1x1 conv + BN downsample on the shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet layout with BasicBlocks: stem, four stages, global pool, fc."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        c = width
        stages = []
        for i, n in enumerate(blocks):
            out = width * 2**i
            stage = [BasicBlock(c, out, 1 if i == 0 else 2)] + [BasicBlock(out, out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            c = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class WideBlock(nn.Module):
    """A pre-activation Wide ResNet block with dropout between its convolutions (Zagoruyko & Komodakis 2016)."""

    def __init__(self, cin: int, cout: int, p: float = 0.3) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(p)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(x))


class WideResNet(nn.Module):
    def __init__(self, blocks: int = 2, width: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(WideBlock(16, width), *[WideBlock(width, width) for _ in range(blocks - 1)])
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class DropPath(nn.Module):
    """timm's DropPath: per-sample stochastic depth."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class MBConv(nn.Module):
    """EfficientNet's inverted residual: expand, depthwise, squeeze-and-excitation, project; drop-path on the
    residual only when the block has one (stride 1, same channels), as timm and torchvision do."""

    def __init__(self, cin: int, cout: int, stride: int, drop_path: float, act: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        mid = cin * 4
        self.has_skip = stride == 1 and cin == cout
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act1 = act()
        self.conv_dw = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.act2 = act()
        self.se_reduce = nn.Conv2d(mid, max(1, cin // 4), 1)
        self.se_act = act()
        self.se_expand = nn.Conv2d(max(1, cin // 4), mid, 1)
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        s = x.mean((2, 3), keepdim=True)
        x = x * torch.sigmoid(self.se_expand(self.se_act(self.se_reduce(s))))
        x = self.bn3(self.conv_pwl(x))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class EfficientNetish(nn.Module):
    """An EfficientNet-B0-shaped net (stem, MBConv stages, head conv, global pool, dropout 0.2, classifier)."""

    def __init__(self, drop_rate: float = 0.2, drop_path_rate: float = 0.2) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = nn.SiLU()
        spec = [(16, 16, 1), (16, 24, 2), (24, 24, 1), (24, 40, 2), (40, 40, 1)]
        n = len(spec)
        self.blocks = nn.Sequential(*[MBConv(a, b, s, drop_path_rate * i / n) for i, (a, b, s) in enumerate(spec)])
        self.conv_head = nn.Conv2d(40, 64, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.act2 = nn.SiLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.act2(self.bn2(self.conv_head(self.blocks(x))))
        return self.classifier(self.dropout(self.global_pool(x).flatten(1)))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block as timm writes it: depthwise 7x7 conv, LayerNorm (channels last), Linear 4x, GELU,
    Linear, layer scale, drop-path, + shortcut."""

    def __init__(self, dim: int, drop_path: float) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))
        x = (self.fc2(self.act(self.fc1(x))) * self.gamma).permute(0, 3, 1, 2)
        return shortcut + self.drop_path(x)


class ConvNeXtish(nn.Module):
    """ConvNeXt-T's layout (3, 3, 9, 3 blocks; drop-path linspace(0, 0.1, 18)) at width 8."""

    def __init__(self, depths: tuple[int, ...] = (3, 3, 9, 3), width: int = 8, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stem = nn.Conv2d(3, width, 4, 4)
        stages: list[nn.Module] = []
        k = 0
        for i, n in enumerate(depths):
            dim = width * 2**i
            down = [nn.Conv2d(dim // 2, dim, 2, 2)] if i else []
            stages.append(nn.Sequential(*down, *[ConvNeXtBlock(dim, rates[k + j]) for j in range(n)]))
            k += n
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(width * 2 ** (len(depths) - 1))
        self.head = nn.Linear(width * 2 ** (len(depths) - 1), 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.stages(self.stem(x)).mean((2, 3))))


class MNASNetish(nn.Module):
    """torchvision's MNASNet layout at a small width: 16 inverted-residual blocks with ReLU (6 of them without
    a shortcut), BatchNorm, global pooling, dropout 0.2 and the classifier; a ResNet-50 by its spec fields
    (16 blocks, BatchNorm, ReLU, GAP head), not by its blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        widths = [8, 8, 12, 12, 12, 16, 16, 16, 20, 20, 24, 24, 24, 24, 28, 32, 32]
        self.layers = nn.Sequential(*[MBConv(widths[i], widths[i + 1], 1, 0.0, act=nn.ReLU) for i in range(16)])
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(self.stem(x)).mean((2, 3)))


class AuxHeadNet(nn.Module):
    """GoogLeNet's layout in miniature: an auxiliary classifier (FC, ReLU, dropout 0.7, FC) on an inner
    feature map, returned beside the logits in train mode only; the main head has dropout 0.2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.aux = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.7), nn.Linear(16, 10)
        )
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> Any:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        aux = self.aux(x) if self.training else None
        x = F.relu(self.conv2(x)).mean((2, 3))
        logits = self.fc(self.dropout(x))
        return (logits, aux) if self.training else logits


# ---- recurrent ----------------------------------------------------------------------------------


class LSTMLM(nn.Module):
    """Zaremba-style LSTM language model: dropout on the embeddings, between layers, before the decoder."""

    def __init__(self, vocab: int = 50, width: int = 32, layers: int = 2, p: float = 0.5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.drop = nn.Dropout(p)
        self.rnn = nn.LSTM(width, width, layers, dropout=p, batch_first=True)
        self.decoder = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.drop(self.embed(ids)))
        return self.decoder(self.drop(out))


class GRUClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(8, 16, 1, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


# ---- Transformers -------------------------------------------------------------------------------


class TinyEncoder(nn.Module):
    """nn.TransformerEncoder (post-norm, nn.MultiheadAttention, its own dropouts) with a mean-pool classifier."""

    def __init__(self, vocab: int = 50, width: int = 16, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(1, 8, width))
        layer = nn.TransformerEncoderLayer(width, 2, 2 * width, 0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fc = nn.Linear(width, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(ids) + self.pos[:, : ids.shape[1]])
        return self.fc(h.mean(1))


class RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-b, a), dim=-1) * sin


class LlamaAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (
            f(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)
            for f in (self.q_proj, self.k_proj, self.v_proj)
        )
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, d))


class LlamaMLP(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(d)
        self.self_attn = LlamaAttention(d, heads)
        self.post_attention_layernorm = RMSNorm(d)
        self.mlp = LlamaMLP(d, hidden)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class TinyLlama(nn.Module):
    """A LLaMA-shaped decoder in plain torch: RMSNorm, rotary positions, SwiGLU, no dropout anywhere."""

    def __init__(self, vocab: int = 64, d: int = 32, layers: int = 2, heads: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(LlamaBlock(d, heads, hidden) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, d // heads, 2).float() / (d // heads))))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = torch.arange(ids.shape[1], device=ids.device).float()
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.norm(x))


class GPTBlock(nn.Module):
    """A GPT-2-style pre-norm block with attention, residual and MLP-output dropout, all at ``p``."""

    def __init__(self, d: int, heads: int, p: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.attn_p = p
        self.resid_dropout = nn.Dropout(p)
        self.ln_2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)
        self.mlp_dropout = nn.Dropout(p)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_p if self.training else 0.0, is_causal=True)
        x = x + self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(b, t, d)))
        return x + self.mlp_dropout(self.proj(F.gelu(self.fc(self.ln_2(x)))))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 64, d: int = 32, layers: int = 2, p: float = 0.1) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(16, d)
        self.drop = nn.Dropout(p)
        self.h = nn.ModuleList(GPTBlock(d, 2, p) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.wte(ids) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class ViTBlock(nn.Module):
    """timm's ViT block: fused attention reading attn_drop.p, proj_drop, MLP drops, drop-path on both branches."""

    def __init__(self, d: int, heads: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(d, d)
        self.proj_drop = nn.Dropout(0.0)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.0)
        self.fc2 = nn.Linear(4 * d, d)
        self.drop2 = nn.Dropout(0.0)
        self.drop_path2 = DropPath(drop_path)
        self.heads = heads

    def attn(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, n, c)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.drop2(self.fc2(self.drop1(self.act(self.fc1(self.norm2(x)))))))


class ViT(nn.Module):
    """timm's VisionTransformer layout: conv patch embedding, cls token, learned positions, pre-norm blocks."""

    def __init__(self, d: int = 32, depth: int = 2, drop_path_rate: float = 0.1, classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, d, 4, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 17, d))
        self.pos_drop = nn.Dropout(0.0)
        self.blocks = nn.Sequential(*[ViTBlock(d, 2, drop_path_rate * i / max(depth - 1, 1)) for i in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.head_drop = nn.Dropout(0.0)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.pos_drop(x + self.pos_embed)
        x = self.norm(self.blocks(x))
        return self.head(self.head_drop(x[:, 0]))


# ---- graph networks -----------------------------------------------------------------------------


class GCNLayer(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout, bias=False)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return adj @ self.linear(x)


class GCN(nn.Module):
    """Kipf & Welling's two-layer GCN with dropout 0.5 on each layer's input."""

    def __init__(self, cin: int = 12, hidden: int = 16, classes: int = 3, p: float = 0.5) -> None:
        super().__init__()
        self.gc1 = GCNLayer(cin, hidden)
        self.gc2 = GCNLayer(hidden, classes)
        self.p = p

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.p, self.training)
        x = F.relu(self.gc1(x, adj))
        x = F.dropout(x, self.p, self.training)
        return self.gc2(x, adj)


class GATLayer(nn.Module):
    """One single-head GAT layer in the dense formulation, with W as an nn.Linear (as DGL's GATConv)."""

    def __init__(self, cin: int, cout: int, p: float) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout, bias=False)
        self.a_src = nn.Parameter(torch.randn(cout, 1) * 0.1)
        self.a_dst = nn.Parameter(torch.randn(cout, 1) * 0.1)
        self.p = p

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        wh = self.fc(h)
        e = F.leaky_relu(wh @ self.a_src + (wh @ self.a_dst).T, 0.2)
        att = torch.softmax(torch.where(adj > 0, e, torch.full_like(e, -9e15)), dim=1)
        att = F.dropout(att, self.p, self.training)
        return att @ F.dropout(wh, self.p, self.training)  # the authors' code drops the features too


class OpaqueGATLayer(nn.Module):
    """pyGAT's layer: raw parameters in a module without children, so the tracer sees one opaque call."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(cin, cout) * 0.1)

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return torch.softmax(adj, 1) @ (h @ self.W)


class OpaqueGraphNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = OpaqueGATLayer(12, 8)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(F.elu(self.l1(x, adj))))


class GAT(nn.Module):
    def __init__(self, cin: int = 12, hidden: int = 8, classes: int = 3, p: float = 0.6) -> None:
        super().__init__()
        self.l1 = GATLayer(cin, hidden, p)
        self.l2 = GATLayer(hidden, classes, p)
        self.p = p

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.p, self.training)
        x = F.elu(self.l1(x, adj))
        x = F.dropout(x, self.p, self.training)
        return self.l2(x, adj)


def graph_inputs(nodes: int = 6, features: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    adj = (torch.rand(nodes, nodes, generator=g) > 0.5).float()
    adj = ((adj + adj.T + torch.eye(nodes)) > 0).float()
    return torch.randn(nodes, features, generator=g), adj / adj.sum(1, keepdim=True)


# ---- example inputs ------------------------------------------------------------------------------


def image(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def tokens(batch: int = 2, length: int = 8, vocab: int = 50) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0))


def features(batch: int = 4, n: int = 20) -> torch.Tensor:
    return torch.randn(batch, n, generator=torch.Generator().manual_seed(0))


class NeedsDepth(nn.Module):
    """A model whose constructor needs an argument (--kwargs '{"depth": 2}')."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(20, 20) for _ in range(depth)])
        self.out = nn.Linear(20, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.layers(x))


class SharedRateMLP(nn.Module):
    """Functional dropout at the input and after the hidden layer, both reading one attribute ``self.p``."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.out = nn.Linear(64, 3)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.p, self.training)
        return self.out(F.dropout(F.relu(self.fc1(x)), self.p, self.training))
