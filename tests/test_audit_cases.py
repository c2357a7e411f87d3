"""The failing inputs of the audit issue (shared/cases/audit), rewritten: each must-flag next to its must-not-flag.

case01 unregistered dropout (namisan/mt-dnn#45), case04 stacked dropout (fouticus/pipgcn#1), case08 exported
graphs (pytorch/pytorch#103681), and the false alarms and crashes found on 106 library models: rate-holder
modules, drop-path in blocks without a skip, classes named like dropout, mixed meta/CPU builds; and the kinds
the 180-model zoo (bench/audit_zoo.py) found: a drop-path whose only add is in the next block (MobileViT), a
layer scale between drop-path and add (MetaFormer), drop-connect dropout applied only with a skip (transformers
EfficientNet), dropout in modules that did not run (LayerDrop, BigBird's replaced attention, LUKE's entities).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from advisor.audit.api import audit
from advisor.errors import UsageError


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def slugs(report) -> list[str]:
    return [f.slug for f in report.findings]


# ---- case01: dropout in a plain list is never switched to eval mode ------------------------------


class BrokenTaskHeads(nn.Module):
    def __init__(self, hidden: int = 16, classes: tuple[int, ...] = (3, 2)) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU())
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in classes)
        self.head_drops = [nn.Dropout(0.1) for _ in classes]  # plain list: not registered

    def forward(self, x):
        h = self.encoder(x)
        return torch.cat([head(drop(h)) for head, drop in zip(self.heads, self.head_drops, strict=True)], dim=-1)


class FixedTaskHeads(BrokenTaskHeads):
    def __init__(self, hidden: int = 16, classes: tuple[int, ...] = (3, 2)) -> None:
        super().__init__(hidden, classes)
        self.head_drops = nn.ModuleList(self.head_drops)


class DictHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)
        self.drops = {"a": nn.Dropout(0.2)}

    def forward(self, x):
        return self.fc(self.drops["a"](x))


def test_dropout_in_a_plain_list_is_reported_as_unregistered_with_the_fix():
    report = audit(BrokenTaskHeads(), torch.randn(4, 16))
    assert slugs(report) == ["unregistered-dropout", "unregistered-dropout"]
    first = report.findings[0]
    assert (first.module, first.severity, first.rule_id) == ("head_drops[0]", "error", "DRP309")
    assert "plain Python list" in first.message and "nn.ModuleList" in first.fix
    assert [(s.module, s.registered, s.calls, s.eval_calls) for s in report.sites] == [
        ("head_drops[0]", False, 1, 1),
        ("head_drops[1]", False, 1, 1),
    ]


def test_dropout_in_a_module_list_is_not_reported():
    report = audit(FixedTaskHeads(), torch.randn(4, 16))
    assert report.findings == []
    assert [s.module for s in report.sites] == ["head_drops.0", "head_drops.1"]


def test_dropout_in_a_plain_dict_points_at_module_dict():
    (finding,) = audit(DictHeads(), torch.randn(4, 16)).findings
    assert finding.module == "drops['a']" and "nn.ModuleDict" in finding.fix


# ---- case04: stacked dropout -----------------------------------------------------------------------


class DropInOutBlock(nn.Module):
    def __init__(self, d: int, p: float, drop_input: bool) -> None:
        super().__init__()
        self.in_drop = nn.Dropout(p) if drop_input else nn.Identity()
        self.fc = nn.Linear(d, d)
        self.out_drop = nn.Dropout(p)

    def forward(self, x):
        return self.out_drop(self.fc(self.in_drop(x)).relu())


class DoubleDropStack(nn.Module):
    drop_input = True

    def __init__(self, d: int = 32, p: float = 0.5) -> None:
        super().__init__()
        self.blocks = nn.Sequential(DropInOutBlock(d, p, False), DropInOutBlock(d, p, self.drop_input))
        self.head = nn.Linear(d, 2)

    def forward(self, x):
        return self.head(self.blocks(x))


class SingleDropStack(DoubleDropStack):
    drop_input = False


def test_back_to_back_dropout_is_reported_with_both_modules_and_the_effective_rate():
    (finding,) = audit(DoubleDropStack(), torch.randn(4, 32)).findings
    assert (finding.slug, finding.module) == ("stacked-dropout", "blocks.1.in_drop")
    assert "blocks.0.out_drop" in finding.message
    assert "= 0.75" in finding.message and "scaled by 4" in finding.message


def test_one_dropout_between_layers_is_not_stacked():
    assert audit(SingleDropStack(), torch.randn(4, 32)).findings == []


def test_dropout_then_drop_path_is_not_stacked():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj, self.proj_drop = nn.Linear(16, 16), nn.Dropout(0.1)
            self.drop_path = DropPath(0.1)

        def forward(self, x):
            return x + self.drop_path(self.proj_drop(self.proj(x)))

    assert "stacked-dropout" not in slugs(audit(Block(), torch.randn(4, 8, 16)))


# ---- case08: exported graphs -------------------------------------------------------------------------


class SmallHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.drop, self.out = nn.Linear(16, 16), nn.Dropout(0.5), nn.Linear(16, 4)

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.fc(x))))


def test_program_exported_in_train_mode_reports_the_baked_in_dropout():
    exported = torch.export.export(SmallHead().train(), (torch.randn(4, 16),)).module()
    report = audit(exported, torch.randn(4, 16))
    (finding,) = report.findings
    assert (finding.slug, finding.severity, finding.rule_id) == ("frozen-graph-dropout", "error", "DRP314")
    assert "train=True" in finding.message and "model.eval()" in finding.fix
    assert [(s.source, s.op, s.p) for s in report.sites] == [("graph", "aten.dropout", 0.5)]
    assert any("cannot be switched" in n for n in report.notes)


def test_program_exported_in_eval_mode_is_not_called_nondeterministic():
    exported = torch.export.export(SmallHead().eval(), (torch.randn(4, 16),)).module()
    report = audit(exported, torch.randn(4, 16))
    assert report.findings == []
    assert report.checks["eval_determinism"] == "ran"


def test_an_exported_program_object_is_audited_through_its_module():
    program = torch.export.export(SmallHead().train(), (torch.randn(4, 16),))
    assert slugs(audit(program, torch.randn(4, 16))) == ["frozen-graph-dropout"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_script_follows_the_mode_and_is_not_flagged():
    scripted = torch.jit.script(SmallHead())
    report = audit(scripted, torch.randn(4, 16))
    assert report.findings == []
    assert [s.op for s in report.sites] == ["aten::dropout"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torch_jit_trace_in_train_mode_bakes_dropout_in():
    traced = torch.jit.trace(SmallHead().train(), torch.randn(4, 16), check_trace=False)
    (finding,) = audit(traced, torch.randn(4, 16)).findings
    assert finding.slug == "frozen-graph-dropout" and "traced in train mode" in finding.message


class FunctionalHead(SmallHead):
    def forward(self, x):
        return self.out(F.dropout(torch.relu(self.fc(x)), 0.5, self.training))


def test_fx_symbolic_trace_freezes_the_training_flag():
    traced = torch.fx.symbolic_trace(FunctionalHead().train())
    assert slugs(audit(traced, torch.randn(4, 16))) == ["frozen-graph-dropout"]
    traced_eval = torch.fx.symbolic_trace(FunctionalHead().eval())
    assert audit(traced_eval, torch.randn(4, 16)).findings == []


def test_fx_graph_of_dropout_modules_is_audited_like_the_module():
    report = audit(torch.fx.symbolic_trace(SmallHead()), torch.randn(4, 16))
    assert report.findings == []
    assert [(s.module, s.op) for s in report.sites] == [("drop", "nn.Dropout")]


# ---- false alarm 1: a dropout module that only holds the rate of a functional call ----------------


class FusedAttn(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2, attn_p: float = 0.1) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_p)  # holds the rate, never called

    def mix(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(self.mix(q, k, v).transpose(1, 2).reshape(b, n, d))


class EagerAttn(FusedAttn):
    def mix(self, q, k, v):
        w = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)
        return F.dropout(w, p=self.attn_drop.p, training=self.training) @ v


class ForgottenAttn(FusedAttn):
    def mix(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)  # attn_drop's rate is used nowhere


@pytest.mark.parametrize("cls", [FusedAttn, EagerAttn])
def test_rate_holder_is_one_site_with_the_call_that_uses_its_rate(cls):
    report = audit(cls(), torch.randn(2, 8, 16))
    assert report.findings == []
    (site,) = report.sites
    assert (site.source, site.p, site.calls, site.rate_from) == ("function", 0.1, 1, "attn_drop")


def test_dropout_module_whose_rate_nothing_uses_is_still_never_called():
    report = audit(ForgottenAttn(), torch.randn(2, 8, 16))
    assert slugs(report) == ["dropout-never-called"]
    assert report.findings[0].module == "attn_drop"


# ---- false alarm 2 and its opposite: drop-path and residuals ---------------------------------------


class DropPath(nn.Module):
    """Per-sample stochastic depth, as timm's DropPath and torchvision's StochasticDepth."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class MBBlock(nn.Module):
    """torchvision MBConv: a drop-path per block, called only when the block has a skip."""

    def __init__(self, cin: int, cout: int, stride: int, p: float) -> None:
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())
        self.stochastic_depth = DropPath(p)

    def forward(self, x):
        y = self.body(x)
        return x + self.stochastic_depth(y) if self.use_res else y


class TinyEfficientNet(nn.Module):
    def __init__(self, rate: float = 0.2) -> None:
        super().__init__()
        cfg = [(3, 16, 2), (16, 16, 1), (16, 32, 2), (32, 32, 1)]
        self.blocks = nn.Sequential(*[MBBlock(ci, co, s, rate * i / len(cfg)) for i, (ci, co, s) in enumerate(cfg)])
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.blocks(x).mean((2, 3)))


class ByobBottleneck(nn.Module):
    """timm byobnet BottleneckBlock as MobileViT builds it at stride 2: drop_path, then an optional shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, p: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else None
        self.drop_path = DropPath(p)
        self.act = nn.ReLU()

    def forward(self, x):
        shortcut = x
        x = self.drop_path(self.conv(x))
        if self.shortcut is not None:
            x = x + self.shortcut(shortcut)
        return self.act(x)


class TinyMobileViT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.Sequential(ByobBottleneck(3, 16, 2), ByobBottleneck(16, 16, 1))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.stages(x).mean((2, 3)))


def test_drop_path_left_out_of_blocks_without_a_skip_is_not_a_finding():
    report = audit(TinyEfficientNet(), torch.randn(2, 3, 32, 32))
    assert report.findings == []
    calls = {s.module: s.calls for s in report.sites}
    assert calls["blocks.1.stochastic_depth"] == 1 and calls["blocks.2.stochastic_depth"] == 0


def test_drop_path_on_a_block_without_a_shortcut_is_flagged():
    report = audit(TinyMobileViT(), torch.randn(2, 3, 32, 32))
    (finding,) = report.findings
    assert (finding.slug, finding.module, finding.rule_id) == (
        "drop-path-without-residual",
        "stages.0.drop_path",
        "DRP313",
    )
    assert "zeroes the block's whole output" in finding.message


class ResidualNoCall(nn.Module):
    """A residual block that forgets its drop-path: still dropout-never-called."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.drop_path = nn.Conv2d(8, 8, 3, 1, 1), DropPath(0.1)

    def forward(self, x):
        return x + self.conv(x)


def test_drop_path_forgotten_in_a_residual_block_is_never_called():
    assert slugs(audit(ResidualNoCall(), torch.randn(2, 8, 8, 8))) == ["dropout-never-called"]


# ---- zoo kind C: the residual must be the drop-path's own block's, not a later block's ---------------


class LinearOutBottleneck(ByobBottleneck):
    """The same block with linear_out=True, as in MobileViT: act is an Identity, so the branch flows straight on."""

    def __init__(self, cin: int, cout: int, stride: int, p: float = 0.1) -> None:
        super().__init__(cin, cout, stride, p)
        self.act = nn.Identity()


class ConcatBlock(nn.Module):
    """MobileViT v1's MobileVitBlock: concatenates its input with the transformed map (a block of its own)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.local, self.fuse = nn.Conv2d(dim, dim, 3, 1, 1), nn.Conv2d(2 * dim, dim, 1)

    def forward(self, x):
        return self.fuse(torch.cat([x, self.local(x)], dim=1))


class MobileViTStages(nn.Module):
    def __init__(self, nxt: str) -> None:
        super().__init__()
        after = LinearOutBottleneck(16, 16, 1) if nxt == "residual" else ConcatBlock(16)
        self.stages = nn.Sequential(LinearOutBottleneck(3, 16, 2), after)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.stages(x).mean((2, 3)))


@pytest.mark.parametrize("nxt", ["residual", "concat"])
def test_drop_path_without_a_shortcut_is_flagged_when_the_next_block_adds_or_concatenates(nxt):
    report = audit(MobileViTStages(nxt), torch.randn(2, 3, 32, 32))
    assert [(f.slug, f.module) for f in report.findings] == [("drop-path-without-residual", "stages.0.drop_path")]


def test_drop_path_in_the_block_with_an_identity_shortcut_is_not_flagged():
    report = audit(nn.Sequential(LinearOutBottleneck(8, 8, 1), LinearOutBottleneck(8, 8, 1)), torch.randn(2, 8, 8, 8))
    assert report.findings == []


# ---- zoo kind B: a per-channel scale between the drop-path and the residual add ----------------------


class ChannelScale(nn.Module):
    """timm metaformer Scale / LayerScale2d: x * gamma per channel."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(1e-5 * torch.ones(dim))

    def forward(self, x):
        return x * self.scale.view(-1, 1, 1)


class ScaledBranch(nn.Module):
    """MetaFormerBlock: res_scale(x) + layer_scale(drop_path(mixer(x))); without the add when residual=False."""

    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.mixer, self.drop_path, self.layer_scale = nn.Conv2d(8, 8, 3, 1, 1), DropPath(0.1), ChannelScale(8)
        self.residual = residual

    def forward(self, x):
        y = self.layer_scale(self.drop_path(self.mixer(x)))
        return x + y if self.residual else y


def test_drop_path_followed_by_a_layer_scale_then_the_residual_add_is_not_flagged():
    assert audit(nn.Sequential(ScaledBranch(True), ScaledBranch(True)), torch.randn(2, 8, 8, 8)).findings == []


def test_a_scaled_drop_path_branch_without_the_add_is_flagged():
    report = audit(nn.Sequential(ScaledBranch(False), nn.ReLU()), torch.randn(2, 8, 8, 8))
    assert [(f.slug, f.module) for f in report.findings] == [("drop-path-without-residual", "0.drop_path")]


# ---- zoo kind F: drop-connect as a plain nn.Dropout, applied only in blocks with a skip ----------------


class FinalBlockLayer(nn.Module):
    """transformers EfficientNetFinalBlockLayer: self.dropout is built in every block, applied with the skip."""

    def __init__(self, stride: int, rate: float, forgets: bool = False) -> None:
        super().__init__()
        self.apply_dropout = stride == 1
        self.forgets = forgets
        self.project_conv, self.project_bn = nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.dropout = nn.Dropout(rate)

    def forward(self, embeddings, hidden_states):
        hidden_states = self.project_bn(self.project_conv(hidden_states))
        if self.apply_dropout:
            if not self.forgets:
                hidden_states = self.dropout(hidden_states)
            hidden_states = hidden_states + embeddings
        return hidden_states


class EffBlock(nn.Module):
    def __init__(self, stride: int, rate: float, forgets: bool = False) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(8, 8, 3, stride, 1, groups=8)
        self.projection = FinalBlockLayer(stride, rate, forgets)

    def forward(self, x):
        return self.projection(x, self.depthwise(x))


class HFEfficientNet(nn.Module):
    def __init__(self, strides: tuple[int, ...] = (2, 1, 1), forgets: int = -1) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(EffBlock(s, 0.1 + 0.05 * i, i == forgets) for i, s in enumerate(strides))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x.mean((2, 3))


def never_called(report) -> list[str]:
    return [f.module for f in report.findings if f.slug == "dropout-never-called"]


def test_drop_connect_dropout_left_out_of_a_block_without_a_skip_is_not_flagged():
    report = audit(HFEfficientNet(), torch.randn(2, 8, 16, 16))
    assert never_called(report) == []
    calls = {s.module: s.calls for s in report.sites}
    assert calls["blocks.0.projection.dropout"] == 0 and calls["blocks.1.projection.dropout"] == 1


def test_drop_connect_dropout_forgotten_in_a_block_with_a_skip_is_flagged():
    report = audit(HFEfficientNet(forgets=2), torch.randn(2, 8, 16, 16))
    assert never_called(report) == ["blocks.2.projection.dropout"]


def test_drop_connect_dropout_that_no_block_applies_is_flagged():
    report = audit(HFEfficientNet(strides=(2, 2)), torch.randn(2, 8, 16, 16))
    assert never_called(report) == ["blocks.0.projection.dropout", "blocks.1.projection.dropout"]


# ---- zoo kind A: the enclosing module did not run in this pass ---------------------------------------


class EncoderLayer(nn.Module):
    def __init__(self, call_drop: bool = True) -> None:
        super().__init__()
        self.fc, self.dropout = nn.Linear(16, 16), nn.Dropout(0.1)
        self.call_drop = call_drop

    def forward(self, x):
        y = self.fc(x)
        return x + (self.dropout(y) if self.call_drop else y)


class LayerDropEncoder(nn.Module):
    """transformers Wav2Vec2Encoder: each layer is skipped with probability layerdrop in training."""

    def __init__(self, layerdrop: float, call_drop: bool = True) -> None:
        super().__init__()
        self.layerdrop = layerdrop
        self.layers = nn.ModuleList(EncoderLayer(call_drop) for _ in range(3))

    def forward(self, x):
        for layer in self.layers:
            skip_the_layer = self.training and torch.rand([]) < self.layerdrop
            if not skip_the_layer:
                x = layer(x)
        return x


def test_dropout_in_a_layer_that_layerdrop_skipped_is_a_note_not_a_finding():
    report = audit(LayerDropEncoder(layerdrop=1.0), torch.randn(4, 16))
    assert report.findings == []
    (note,) = [n for n in report.notes if "did not run" in n]
    assert note.startswith("3 dropout module(s)") and "'layers.0.dropout'" in note


def test_dropout_that_its_running_layer_forgets_names_the_layer_not_the_module_list():
    report = audit(LayerDropEncoder(layerdrop=0.0, call_drop=False), torch.randn(4, 16))
    assert never_called(report) == ["layers.0.dropout", "layers.1.dropout", "layers.2.dropout"]
    assert "its enclosing module 'layers.0' did" in report.findings[0].message


class SwitchingAttention(nn.Module):
    """transformers BigBirdAttention.set_attention_type: forward assigns a new self-attention module."""

    def __init__(self) -> None:
        super().__init__()
        self.self = EncoderLayer()

    def forward(self, x):
        self.self = EncoderLayer()  # 'original_full' for short inputs: the module audited before is gone
        return self.self(x)


def test_dropout_of_a_module_replaced_during_the_forward_is_not_a_finding():
    report = audit(nn.Sequential(nn.Linear(16, 16), SwitchingAttention()), torch.randn(4, 16))
    assert never_called(report) == []


class EntityModel(nn.Module):
    """transformers LukeModel: entity_embeddings run only when entity_ids are given."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = nn.Sequential(nn.Embedding(10, 16), nn.Dropout(0.1))
        self.entity_embeddings = nn.Sequential(nn.Embedding(10, 16), nn.Dropout(0.1))

    def forward(self, input_ids, entity_ids=None):
        x = self.embeddings(input_ids)
        return x if entity_ids is None else x + self.entity_embeddings(entity_ids).mean(1, keepdim=True)


def test_dropout_on_a_path_this_input_does_not_take_is_not_a_finding():
    report = audit(EntityModel(), torch.randint(0, 10, (2, 5)))
    assert never_called(report) == []
    assert any("'entity_embeddings.1'" in n for n in report.notes)


# ---- p = 0 ----------------------------------------------------------------------------------------


class ZeroRates(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.unused = nn.Conv2d(3, 8, 3), nn.Dropout(0.0)
        self.drop, self.fc = nn.Dropout(0.0), nn.Linear(8, 4)

    def forward(self, x):
        y = self.drop(self.conv(x))  # element-wise dropout on a feature map, but p = 0
        return self.fc(y.mean((2, 3)))


def test_rate_zero_is_silent_for_never_called_and_info_rules():
    report = audit(ZeroRates(), torch.randn(2, 3, 8, 8))
    assert report.findings == []


def test_rate_above_zero_on_the_same_model_is_reported():
    model = ZeroRates()
    model.unused.p = model.drop.p = 0.2
    assert sorted(slugs(audit(model, torch.randn(2, 3, 8, 8)))) == [
        "dropout-never-called",
        "elementwise-dropout-on-feature-maps",
    ]


# ---- false alarm 4: sites by behaviour, never by class name ---------------------------------------


class ConvDropPathNorm(nn.Module):
    """SqueezeBERT's ConvDropoutLayerNorm pattern under a drop-path name: a container, not a site."""

    def __init__(self, d: int, p: float = 0.1) -> None:
        super().__init__()
        self.conv, self.dropout, self.norm = nn.Conv1d(d, d, 1), nn.Dropout(p), nn.LayerNorm(d)

    def forward(self, x, residual):
        y = self.dropout(self.conv(x)) + residual
        return self.norm(y.transpose(1, 2)).transpose(1, 2)


class Encoder(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.inp, self.out = nn.Conv1d(d, d, 1), ConvDropPathNorm(d)

    def forward(self, x):
        return self.out(self.inp(x), x)


class DropoutOnLogits(nn.Module):
    """A model whose class name says dropout: the model is never a site, its real dropout is."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.drop, self.out = nn.Linear(16, 16), nn.Dropout(0.3), nn.Linear(16, 4)

    def forward(self, x):
        return self.out(self.drop(self.fc(x)))


class DropScale(nn.Module):
    """A leaf named like dropout that scales by a learned-free constant per feature: not a site."""

    def forward(self, x):
        return x * torch.linspace(0.5, 1.5, x.shape[-1])


def test_a_container_named_like_drop_path_is_no_site_and_its_dropout_is():
    report = audit(Encoder(), torch.randn(2, 16, 8))
    assert report.findings == []
    assert [(s.module, s.op) for s in report.sites] == [("out.dropout", "nn.Dropout")]


def test_a_model_named_like_dropout_is_never_the_root_site():
    report = audit(DropoutOnLogits(), torch.randn(4, 16))
    assert [(s.module, s.op, s.p) for s in report.sites] == [("drop", "nn.Dropout", 0.3)]
    assert report.findings == []


def test_a_leaf_named_like_dropout_that_does_not_drop_is_no_site():
    model = nn.Sequential(nn.Linear(16, 16), DropScale(), nn.Linear(16, 4))
    assert audit(model, torch.randn(4, 16)).sites == []


def test_a_leaf_that_drops_is_a_site_by_behaviour():
    model = nn.Sequential(nn.Linear(16, 16), DropPath(0.5), nn.Linear(16, 4))
    (site,) = audit(model, torch.randn(4, 16)).sites
    assert (site.module, site.kind, site.p) == ("1", "drop-path", 0.5)


# ---- crash 5: a model half on meta ------------------------------------------------------------------


class MaskEmbedNet(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.mask_emb = nn.Parameter(torch.Tensor(d).uniform_())  # legacy constructor: ignores torch.device
        self.fc, self.drop = nn.Linear(d, d), nn.Dropout(0.1)

    def forward(self, x):
        return self.fc(self.drop(x + self.mask_emb))


def test_a_model_half_on_meta_is_a_usage_error_not_an_input_error():
    with torch.device("meta"):
        model = MaskEmbedNet()
    assert model.mask_emb.device.type == "cpu" and model.fc.weight.is_meta
    with pytest.raises(UsageError) as err:
        audit(model, torch.randn(2, 8))
    assert "partly on the meta device" in err.value.message and "torch.Tensor(n)" in err.value.message
    assert "input" not in err.value.hint
