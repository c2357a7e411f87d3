"""Reference-shaped architectures, small, written the way their papers and reference code place dropout.

None of them may get a warning or an error: an auditor that cries wolf on AlexNet gets switched off.
The second half is the intentional-dropout case (Tacotron 2's prenet): flagged until allowed.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from advisor.audit.api import audit
from advisor.audit.config import AllowRule, find_pyproject, load_config, parse_allow


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def loud(report) -> list[str]:
    return [f"{f.slug} {f.module}: {f.message}" for f in report.findings if f.severity in ("warning", "error")]


# ---- CNNs ---------------------------------------------------------------------------------------


class AlexNetLike(nn.Module):
    """torchvision AlexNet: no dropout in the conv stack, Dropout BEFORE each of the first two Linear."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(64, 32), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(32, 32), nn.ReLU(inplace=True),
            nn.Linear(32, classes),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGGLike(nn.Module):
    """torchvision VGG-BN: BatchNorm in the conv stack, Dropout AFTER each hidden FC ReLU."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for width in (8, "M", 16, "M"):
            if width == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(width), 3, padding=1), nn.BatchNorm2d(int(width)), nn.ReLU(True)]
                c = int(width)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(16 * 2 * 2, 32), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(32, classes),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class ResNetLike(nn.Module):
    """ResNet: no dropout in the blocks; timm's optional head dropout is functional (negative control 23)."""

    def __init__(self, drop_rate: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(True))
        self.layer1 = nn.Sequential(BasicBlock(8), BasicBlock(8))
        self.fc = nn.Linear(8, 10)
        self.drop_rate = drop_rate

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.layer1(self.stem(x)), 1).flatten(1)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return self.fc(x)


class WideBasic(nn.Module):
    """Wide ResNet (szagoruyko/wide-residual-networks, models/wide-resnet.lua): between the two 3x3 convs,
    BN -> ReLU -> Dropout -> Conv. ``conv_dropout_bn`` is a common re-implementation that drops right
    after the first conv, so the dropout feeds the second BatchNorm."""

    def __init__(self, c: int, p: float = 0.3, conv_dropout_bn: bool = False) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1)
        self.dropout = nn.Dropout(p)
        self.bn2, self.conv2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1)
        self.conv_dropout_bn = conv_dropout_bn

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        if self.conv_dropout_bn:
            return self.conv2(F.relu(self.bn2(self.dropout(out)))) + x
        return self.conv2(self.dropout(F.relu(self.bn2(out)))) + x


class WRNLike(nn.Module):
    def __init__(self, conv_dropout_bn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(WideBasic(8, conv_dropout_bn=conv_dropout_bn), WideBasic(8))
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ---- Transformers -------------------------------------------------------------------------------


class BertLayer(nn.Module):
    """Post-norm encoder layer written as in BERT: dropout on attention probs, on each sub-layer output."""

    def __init__(self, d: int = 16, heads: int = 2, p: float = 0.1) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.attn_out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.attn_dropout, self.hidden_dropout = nn.Dropout(p), nn.Dropout(p)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn_in, self.ffn_out, self.ffn_dropout = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), nn.Dropout(p)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        probs = self.attn_dropout((q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)).softmax(-1))
        ctx = (probs @ v).transpose(1, 2).reshape(b, t, d)
        x = self.ln1(x + self.hidden_dropout(self.attn_out(ctx)))
        return self.ln2(x + self.ffn_dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


class BertLike(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 16, layers: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(32, d)
        self.emb_ln, self.emb_dropout = nn.LayerNorm(d), nn.Dropout(0.1)
        self.layers = nn.ModuleList(BertLayer(d) for _ in range(layers))
        self.pooler = nn.Linear(d, d)
        self.cls_dropout, self.classifier = nn.Dropout(0.1), nn.Linear(d, classes)

    def forward(self, ids):
        x = self.emb_dropout(self.emb_ln(self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))))
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.cls_dropout(torch.tanh(self.pooler(x[:, 0]))))


class GPTBlock(nn.Module):
    """nanoGPT: SDPA with dropout_p gated on self.training, residual dropout after each projection."""

    def __init__(self, d: int = 16, heads: int = 2, p: float = 0.1) -> None:
        super().__init__()
        self.heads, self.p = heads, p
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.resid_dropout = nn.Dropout(p)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(p))

    def attn(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in self.c_attn(x).split(d, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPTLike(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 16, layers: int = 2) -> None:
        super().__init__()
        self.wte, self.wpe, self.drop = nn.Embedding(vocab, d), nn.Embedding(32, d), nn.Dropout(0.1)
        self.h = nn.ModuleList(GPTBlock(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying

    def forward(self, ids):
        x = self.drop(self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device)))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


# ---- RNN and GNN --------------------------------------------------------------------------------


class LSTMLM(nn.Module):
    """Zaremba et al. / PyTorch word_language_model: dropout on embeddings, between layers, before decoder."""

    def __init__(self, vocab: int = 50, d: int = 16) -> None:
        super().__init__()
        self.encoder, self.drop = nn.Embedding(vocab, d), nn.Dropout(0.5)
        self.rnn = nn.LSTM(d, d, num_layers=2, dropout=0.5, batch_first=True)
        self.decoder = nn.Linear(d, vocab)

    def forward(self, ids):
        out, _ = self.rnn(self.drop(self.encoder(ids)))
        return self.decoder(self.drop(out))


class GraphConvolution(nn.Module):
    """Kipf & Welling's pygcn layer: a leaf module with its own weight."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fin, fout) * 0.1)

    def forward(self, x, adj):
        return adj @ (x @ self.weight)


class GCNLike(nn.Module):
    def __init__(self, fin: int = 16, hidden: int = 8, classes: int = 3, p: float = 0.5) -> None:
        super().__init__()
        self.gc1, self.gc2, self.p = GraphConvolution(fin, hidden), GraphConvolution(hidden, classes), p

    def forward(self, x, adj):
        x = F.dropout(x, self.p, training=self.training)
        x = F.dropout(F.relu(self.gc1(x, adj)), self.p, training=self.training)
        return F.log_softmax(self.gc2(x, adj), dim=1)


IMG = torch.randn(2, 3, 8, 8)
IDS = torch.randint(0, 50, (2, 12))
NODES = torch.randn(6, 16)
ADJ = torch.eye(6) + torch.ones(6, 6) / 6

REFERENCE = {
    "alexnet": (AlexNetLike, (IMG,), 2),
    "vgg": (VGGLike, (IMG,), 2),
    "resnet": (ResNetLike, (IMG,), 1),
    "wrn": (WRNLike, (IMG,), 2),
    "bert": (BertLike, (IDS,), 8),
    "gpt": (GPTLike, (IDS,), 7),
    "lstm-lm": (LSTMLM, (IDS,), 2),
    "gcn": (GCNLike, (NODES, ADJ), 2),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_architecture_gets_no_warning(name):
    cls, inputs, n_sites = REFERENCE[name]
    report = audit(cls(), inputs)
    assert loud(report) == []
    assert len(report.sites) == n_sites, [s.module for s in report.sites]


@pytest.mark.parametrize("name", ["gpt", "bert", "wrn"])
def test_reference_architecture_gets_no_warning_on_meta(name):
    cls, inputs, n_sites = REFERENCE[name]
    with torch.device("meta"):
        model = cls()
    report = audit(model, inputs)
    assert report.device == "meta"
    assert loud(report) == []
    assert len(report.sites) == n_sites


def test_wrn_dropout_sits_between_relu_and_conv():
    site = audit(WRNLike(), (IMG,)).sites[0]
    assert (site.module, site.before, site.after) == ("blocks.0.dropout", "relu() in blocks.0", "Conv2d blocks.0.conv2")


def test_wrn_reimplementation_with_dropout_before_the_second_batchnorm_is_flagged():
    report = audit(WRNLike(conv_dropout_bn=True), (IMG,))
    assert [(f.slug, f.module) for f in report.findings if f.severity != "info"] == [
        ("dropout-before-batchnorm", "blocks.0.dropout")
    ]


# ---- intentional dropout: flagged until allowed ----------------------------------------------------


class Prenet(nn.Module):
    def __init__(self, in_dim: int = 16, sizes: tuple[int, ...] = (32, 32)) -> None:
        super().__init__()
        dims = [in_dim, *sizes]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in itertools.pairwise(dims))

    def forward(self, x):
        for linear in self.layers:
            x = F.dropout(F.relu(linear(x)), p=0.5, training=True)  # on at inference, per the paper
        return x


class Tacotron2Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.prenet = Prenet()
        self.rnn = nn.LSTMCell(32, 32)
        self.proj = nn.Linear(32, 16)

    def forward(self, frames):
        h, _ = self.rnn(self.prenet(frames))
        return self.proj(h)


FRAMES = torch.randn(4, 16)


def test_tacotron_prenet_is_flagged_until_allowed():
    report = audit(Tacotron2Decoder(), FRAMES)
    assert [(f.slug, f.module) for f in report.findings] == [("functional-dropout-ignores-eval", "prenet")]
    assert "--allow 'prenet:functional-dropout-ignores-eval'" in report.findings[0].fix


@pytest.mark.parametrize("entry", ["prenet:functional-dropout-ignores-eval", "prenet.*:DRP301", "prenet*:*"])
def test_tacotron_prenet_allowed_by_an_entry(entry):
    report = audit(Tacotron2Decoder(), FRAMES, allow=[entry])
    assert report.findings == []
    assert [(f.slug, f.allowed_by) for f in report.allowed] == [("functional-dropout-ignores-eval", entry)]
    assert report.summary.allowed == 1


def test_an_allow_entry_for_another_rule_or_module_does_not_hide_it():
    report = audit(Tacotron2Decoder(), FRAMES, allow=["prenet:dropout-never-called", "proj:*"])
    assert [f.slug for f in report.findings] == ["functional-dropout-ignores-eval"]
    assert any("matched no finding" in n for n in report.notes)


def test_tacotron_prenet_allowed_from_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "tts"\n\n[tool.dropout-advisor]\nallow = ["prenet.*:functional-dropout-ignores-eval"]\n'
    )
    sub = tmp_path / "src" / "tts"
    sub.mkdir(parents=True)
    found = find_pyproject(sub)
    assert found == tmp_path / "pyproject.toml"
    config = load_config(found)
    assert config.allow == [AllowRule("prenet.*", "functional-dropout-ignores-eval", "pyproject.toml")]
    report = audit(Tacotron2Decoder(), FRAMES, allow=config.allow)
    assert report.findings == [] and report.allowed[0].allowed_by == "prenet.*:functional-dropout-ignores-eval"


@pytest.mark.parametrize(
    ("glob", "module", "hit"),
    [
        ("prenet", "prenet", True),
        ("prenet", "prenet.layers.0", True),
        ("prenet.*", "prenet", True),
        ("prenet.*", "prenetwork", False),
        ("decoder.*.drop", "decoder.3.drop", True),
        ("<root>", "", True),
        ("<root>", "fc", True),
        ("fc", "", False),
    ],
)
def test_allow_globs_cover_a_module_and_everything_inside(glob, module, hit):
    assert parse_allow(f"{glob}:*").matches(module, "rate-suspicious") is hit
