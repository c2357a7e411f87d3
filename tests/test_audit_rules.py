"""Every audit rule: a model that must be flagged next to a look-alike that must not be.

The models are minimal versions of bug patterns from public issue trackers (shared/facts/dropout-bugs.md);
the comment on each pair names the pattern.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import advisor
from advisor.audit.api import audit


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def slugs(model: nn.Module, x, **kw) -> set[str]:
    return {f.slug for f in audit(model, x, **kw).findings}


def found(model: nn.Module, x, slug: str, **kw):
    return [f for f in audit(model, x, **kw).findings if f.slug == slug]


X16 = torch.randn(4, 16)
IMG = torch.randn(2, 3, 8, 8)
SEQ = torch.randn(2, 8, 16)  # (N, C, L)


def mlp(*mid: nn.Module, out: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, 16), *mid, nn.Linear(16, out))


# ---- functional-dropout-ignores-eval (DRP301; bug 1, bug 6, negative control 23) -----------------


class FunctionalNoTraining(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(F.dropout(F.relu(self.fc1(x)), p=0.5))  # training defaults to True


class FunctionalWithTraining(FunctionalNoTraining):
    def forward(self, x):
        return self.fc2(F.dropout(F.relu(self.fc1(x)), p=0.5, training=self.training))


def test_functional_dropout_without_training_is_flagged():
    hits = found(FunctionalNoTraining(), X16, "functional-dropout-ignores-eval")
    assert len(hits) == 1
    assert hits[0].module == "" and hits[0].severity == "error" and hits[0].rule_id == "DRP301"
    assert hits[0].call_location is not None and hits[0].call_location.line > 0


def test_functional_dropout_with_training_flag_is_not_flagged():
    report = audit(FunctionalWithTraining(), X16)
    assert report.findings == []
    # negative control 23: functional dropout has no module, yet it is a site
    (site,) = report.sites
    assert (site.source, site.op, site.p, site.calls) == ("function", "F.dropout", 0.5, 1)


def test_functional_dropout_ignoring_eval_is_found_on_meta_too():
    with torch.device("meta"):
        model = FunctionalNoTraining()
    assert "functional-dropout-ignores-eval" in slugs(model, X16)


class SelfAttention(nn.Module):
    def __init__(self, p: float = 0.1, gate_on_training: bool = True) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(16, 48), nn.Linear(16, 16)
        self.p, self.gate = p, gate_on_training

    def forward(self, x):
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 2, 8).permute(2, 0, 3, 1, 4)
        p = (self.p if self.training else 0.0) if self.gate else self.p
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(x.shape))


def test_sdpa_dropout_p_in_eval_is_flagged():
    (hit,) = found(SelfAttention(gate_on_training=False), SEQ, "functional-dropout-ignores-eval")
    assert "scaled_dot_product_attention" in hit.message


def test_sdpa_dropout_p_gated_on_training_is_not_flagged():
    report = audit(SelfAttention(gate_on_training=True), SEQ)
    assert report.findings == []
    assert [(s.kind, s.p, s.calls, s.eval_calls) for s in report.sites] == [("attention-dropout", 0.1, 1, 1)]


# ---- nondeterministic-eval-output (DRP302; bug 22) -----------------------------------------------


class SloppyDropPath(nn.Module):
    """A drop-path that forgets self.training (WangFeng18/Swin-Transformer #7)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.drop_prob = p

    def forward(self, x):
        keep = 1 - self.drop_prob
        mask = torch.rand(x.shape[0], 1, device=x.device) < keep
        return x * mask / keep


class DropPath(SloppyDropPath):
    """timm's shape: identity when not training."""

    def forward(self, x):
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1 - self.drop_prob
        return x * x.new_empty(x.shape[0], 1).bernoulli_(keep) / keep


class Residual(nn.Module):
    def __init__(self, drop_path: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.drop_path = drop_path

    def forward(self, x):
        return x + self.drop_path(self.fc(x))


def test_drop_path_ignoring_eval_is_flagged():
    model = nn.Sequential(Residual(SloppyDropPath(0.2)), nn.Linear(16, 4))
    (hit,) = found(model, X16, "nondeterministic-eval-output")
    assert hit.module == "0.drop_path" and hit.severity == "error"


def test_drop_path_ignoring_eval_is_flagged_on_meta_from_the_random_call():
    with torch.device("meta"):
        model = nn.Sequential(Residual(SloppyDropPath(0.2)), nn.Linear(16, 4))
    report = audit(model, X16)
    (hit,) = report.by_slug("nondeterministic-eval-output")
    assert hit.module == "0.drop_path" and "torch.rand" in hit.message
    assert report.checks["eval_determinism"].startswith("skipped: the model is on the meta")


def test_timm_style_drop_path_is_not_flagged():
    report = audit(nn.Sequential(Residual(DropPath(0.2)), nn.Linear(16, 4)), X16)
    assert report.findings == []
    assert [(s.module, s.kind, s.p) for s in report.sites] == [("0.drop_path", "drop-path", 0.2)]


class PythonRandomDepth(nn.Module):
    """Stochastic depth drawn with Python's random module: invisible to torch, caught by comparing outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.branch = nn.Linear(16, 16)

    def forward(self, x):
        return x if random.random() < 0.5 else x + self.branch(x)


def test_randomness_outside_torch_is_caught_by_comparing_two_eval_outputs():
    model = nn.Sequential(nn.Linear(16, 16), PythonRandomDepth(), nn.Linear(16, 4))
    hits = found(model, X16, "nondeterministic-eval-output", seed=3)
    assert [h.module for h in hits] == ["1"]


def test_functional_dropout_is_not_reported_twice_as_nondeterminism():
    assert slugs(FunctionalNoTraining(), X16) == {"functional-dropout-ignores-eval"}


# ---- dropout-before-batchnorm (DRP101; bug 14) -----------------------------------------------------


class OrderedBlock(nn.Module):
    """Registers bn before drop; `drop_first` decides the order they execute in."""

    def __init__(self, drop_first: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(16, 4)
        self.drop_first = drop_first

    def forward(self, x):
        h = F.relu(self.fc(x))
        h = self.bn(self.drop(h)) if self.drop_first else self.drop(self.bn(h))
        return self.out(h)


def test_dropout_feeding_batchnorm_in_execution_order_is_flagged():
    (hit,) = found(OrderedBlock(drop_first=True), X16, "dropout-before-batchnorm")
    assert hit.module == "drop" and "BatchNorm1d bn" in hit.message


def test_batchnorm_then_dropout_is_not_flagged_although_registered_the_other_way():
    assert slugs(OrderedBlock(drop_first=False), X16) == set()


def test_dropout_before_batchnorm_in_a_sequential_is_flagged():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.3), nn.BatchNorm1d(16), nn.Linear(16, 4))
    assert "dropout-before-batchnorm" in slugs(model, X16)


def test_dropout_before_batchnorm_through_a_reshape_is_flagged():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout2d(0.2), nn.Flatten(), nn.BatchNorm1d(144), nn.Linear(144, 2))
    assert "dropout-before-batchnorm" in slugs(model, IMG)


def test_wide_resnet_order_bn_relu_dropout_conv_is_not_flagged():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3), nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
    )  # fmt: skip
    assert "dropout-before-batchnorm" not in slugs(model, IMG)


# ---- dropout-after-output (DRP303; bug 17) ------------------------------------------------------


def test_dropout_after_the_last_linear_is_flagged():
    (hit,) = found(
        nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4), nn.Dropout(0.5)), X16, "dropout-after-output"
    )
    assert hit.module == "3" and "Linear 2" in hit.message


def test_dropout_before_the_last_linear_is_not_flagged():
    assert slugs(nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4)), X16) == set()


def test_dropout_on_logits_before_log_softmax_is_flagged():
    model = nn.Sequential(nn.Linear(16, 4), nn.Dropout(0.2), nn.LogSoftmax(-1))
    assert "dropout-after-output" in slugs(model, X16)


# ---- rnn-dropout-single-layer (DRP304; bug 7) ----------------------------------------------------


class RNNHead(nn.Module):
    def __init__(self, cell: type[nn.RNNBase], layers: int) -> None:
        super().__init__()
        self.rnn = cell(16, 16, num_layers=layers, dropout=0.5, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_rnn_dropout_with_one_layer_is_flagged(cell):
    with pytest.warns(UserWarning):  # torch warns at construction
        model = RNNHead(cell, layers=1)
    (hit,) = found(model, SEQ, "rnn-dropout-single-layer")
    assert hit.module == "rnn"


def test_rnn_dropout_with_two_layers_is_not_flagged():
    assert slugs(RNNHead(nn.LSTM, layers=2), SEQ) == set()


# ---- channel-dropout-wrong-rank (DRP305; bug 8) ---------------------------------------------------


def conv1d_with(drop: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), drop, nn.Conv1d(8, 2, 1))


def test_dropout2d_on_n_c_l_is_flagged():
    (hit,) = found(conv1d_with(nn.Dropout2d(0.2)), SEQ, "channel-dropout-wrong-rank")
    assert "3-D" in hit.message and "Dropout1d" in hit.fix


class LstmThenDropout2d(nn.Module):
    """Dropout2d on a batch-first LSTM output (N, L, F): features are last, not second."""

    def __init__(self, drop: nn.Module) -> None:
        super().__init__()
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.drop = drop
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.drop(out))


def test_dropout2d_on_features_last_sequences_is_not_told_to_use_dropout1d():
    lstm = LstmThenDropout2d(nn.Dropout2d(0.2))
    (hit,) = found(lstm, SEQ, "channel-dropout-wrong-rank")
    assert "features are last" in hit.message and "LSTM" in hit.message
    assert "would drop whole time steps" in hit.fix and "use nn.Dropout1d" not in hit.fix
    linear_first = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Dropout2d(0.2), nn.Linear(16, 2))
    (hit,) = found(linear_first, SEQ, "channel-dropout-wrong-rank")
    assert "Linear" in hit.message and "use nn.Dropout for element-wise" in hit.fix


def test_dropout1d_on_n_c_l_is_not_flagged():
    assert slugs(conv1d_with(nn.Dropout1d(0.2)), SEQ) == set()


def test_dropout2d_on_n_f_is_flagged():
    (hit,) = found(mlp(nn.ReLU(), nn.Dropout2d(0.2)), X16, "channel-dropout-wrong-rank")
    assert "2-D" in hit.message


def test_dropout1d_on_images_is_reported_instead_of_crashing():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout1d(0.2), nn.Conv2d(4, 2, 1))
    with pytest.raises(RuntimeError):
        model(IMG)  # what the user would see
    (hit,) = found(model, IMG, "channel-dropout-wrong-rank")
    assert hit.module == "2" and "raises RuntimeError on 4-D" in hit.message


def test_dropout2d_on_images_is_not_flagged():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout2d(0.2), nn.Conv2d(4, 2, 1))
    assert slugs(model, IMG) == set()


def test_dropout3d_on_images_is_flagged():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout3d(0.2), nn.Conv2d(4, 2, 1))
    assert "channel-dropout-wrong-rank" in slugs(model, IMG)


# ---- inplace-dropout-hazard (DRP306; bug 9) ------------------------------------------------------

INPLACE_FLAGGED = {
    "relu": lambda: mlp(nn.ReLU(), nn.Dropout(0.5, inplace=True)),
    "leaky-relu-inplace": lambda: mlp(nn.LeakyReLU(0.2, inplace=True), nn.Dropout(0.25, inplace=True)),
    "tanh": lambda: mlp(nn.Tanh(), nn.Dropout(0.5, inplace=True)),
    "softmax": lambda: mlp(nn.Softmax(dim=-1), nn.Dropout(0.1, inplace=True)),  # timm TNT attn_drop_rate=0.1
}
INPLACE_CLEAN = {
    "after-linear": lambda: nn.Sequential(
        nn.Linear(16, 16), nn.Dropout(0.5, inplace=True), nn.ReLU(), nn.Linear(16, 4)
    ),
    "leaky-relu": lambda: mlp(nn.LeakyReLU(0.2), nn.Dropout(0.25, inplace=True)),
    "gelu": lambda: mlp(nn.GELU(), nn.Dropout(0.5, inplace=True)),
    "relu-p0": lambda: mlp(nn.ReLU(), nn.Dropout(0.0, inplace=True)),  # timm TNT attn_drop_rate=0: writes nothing
    "softmax-p0": lambda: mlp(nn.Softmax(dim=-1), nn.Dropout(0.0, inplace=True)),
}


@pytest.mark.parametrize("name", sorted(INPLACE_FLAGGED))
def test_inplace_dropout_on_a_saved_output_is_flagged_and_really_breaks_backward(name):
    model = INPLACE_FLAGGED[name]()
    assert "inplace-dropout-hazard" in slugs(model, X16)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        model.train()(X16).sum().backward()


@pytest.mark.parametrize("name", sorted(INPLACE_CLEAN))
def test_inplace_dropout_where_autograd_does_not_care_is_not_flagged(name):
    model = INPLACE_CLEAN[name]()
    assert "inplace-dropout-hazard" not in slugs(model, X16)
    model.train()(X16).sum().backward()


class LSTMInplace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.head = nn.LSTM(16, 16, batch_first=True), nn.Linear(16, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(F.dropout(out, 0.3, self.training, inplace=True))


def test_inplace_functional_dropout_on_lstm_output_is_flagged():
    assert "inplace-dropout-hazard" in slugs(LSTMInplace(), SEQ)


# ---- rate-out-of-range (DRP204) and rate-suspicious (DRP203; bug 10-13) --------------------------


def test_p_equal_to_one_is_flagged_as_out_of_range():
    (hit,) = found(mlp(nn.ReLU(), nn.Dropout(1.0)), X16, "rate-out-of-range")
    assert hit.severity == "error" and "p=1" in hit.message


def test_p_above_one_set_after_construction_is_reported_instead_of_crashing():
    model = mlp(nn.ReLU(), nn.Dropout(0.5))
    model[2].p = 1.5
    (hit,) = found(model, X16, "rate-out-of-range")
    assert "1.5" in hit.message


def test_negative_functional_p_is_flagged():
    class Neg(FunctionalNoTraining):
        def forward(self, x):
            return self.fc2(F.dropout(self.fc1(x), p=-0.1, training=self.training))

    assert "rate-out-of-range" in slugs(Neg(), X16)


def test_usual_rates_are_not_flagged():
    assert slugs(mlp(nn.ReLU(), nn.Dropout(0.0)), X16) == set()
    assert slugs(mlp(nn.ReLU(), nn.Dropout(0.5)), X16) == set()


def test_p_of_0_9_looks_like_a_keep_probability():
    (hit,) = found(mlp(nn.ReLU(), nn.Dropout(0.9)), X16, "rate-suspicious")
    assert "keep probability" in hit.message and "p=0.1" in hit.fix


class KeepProbNet(nn.Module):
    def __init__(self, convert: bool) -> None:
        super().__init__()
        self.keep_prob = 0.8
        self.fc1, self.fc2 = nn.Linear(16, 16), nn.Linear(16, 4)
        self.convert = convert

    def forward(self, x):
        h = F.relu(self.fc1(x))
        if self.convert:
            h = F.dropout(h, 1 - self.keep_prob, self.training)
        else:
            h = F.dropout(h, self.keep_prob, self.training)
        return self.fc2(h)


def test_keep_prob_passed_as_p_is_flagged():
    (hit,) = found(KeepProbNet(convert=False), X16, "rate-suspicious")
    assert "keep_prob" in hit.message


def test_keep_prob_converted_to_a_drop_probability_is_not_flagged():
    assert slugs(KeepProbNet(convert=True), X16) == set()


def test_high_attention_dropout_is_not_called_a_keep_probability():
    assert "rate-suspicious" not in slugs(SelfAttention(p=0.9), SEQ)


# ---- dropout-never-called (DRP307; bug 15) -------------------------------------------------------


class Head(nn.Module):
    """timm's NormMlpClassifierHead before issue #1726 was fixed."""

    def __init__(self, call_drop: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(16, 4)
        self.call_drop = call_drop

    def forward(self, x):
        x = self.norm(x)
        if self.call_drop:
            x = self.drop(x)
        return self.fc(x)


def test_dropout_registered_but_never_called_is_flagged():
    (hit,) = found(Head(call_drop=False), X16, "dropout-never-called")
    assert hit.module == "drop"


def test_dropout_that_runs_is_not_flagged():
    assert slugs(Head(call_drop=True), X16) == set()


def test_dropout_only_used_in_training_is_not_flagged():
    class TrainOnly(Head):
        def forward(self, x):
            x = self.norm(x)
            return self.fc(self.drop(x) if self.training else x)

    assert slugs(TrainOnly(call_drop=True), X16) == set()


# ---- elementwise-dropout-on-feature-maps (DRP005, info) -------------------------------------------


def conv_with(drop: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), drop, nn.Conv2d(8, 2, 1))


def test_elementwise_dropout_on_a_conv_feature_map_is_info():
    (hit,) = found(conv_with(nn.Dropout(0.1)), IMG, "elementwise-dropout-on-feature-maps")
    assert hit.severity == "info" and hit.rule_id == "DRP005"


def test_channel_dropout_on_a_conv_feature_map_is_not_flagged():
    assert slugs(conv_with(nn.Dropout2d(0.1)), IMG) == set()


class WideBlock(nn.Module):
    """Wide ResNet's pre-activation block: element-wise dropout between the two convs (DRP009's recipe)."""

    def __init__(self, residual: bool = True) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
        self.conv1, self.conv2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
        self.dropout = nn.Dropout(0.3)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return x + out if self.residual else out


def test_elementwise_dropout_inside_a_wide_resnet_block_is_not_flagged():
    assert slugs(nn.Sequential(WideBlock(), WideBlock()), IMG) == set()


def test_the_same_dropout_in_a_plain_conv_stack_is_still_info():
    (hit,) = found(nn.Sequential(WideBlock(residual=False)), IMG, "elementwise-dropout-on-feature-maps")
    assert hit.module == "0.dropout"


class AttentionProbsDropout(nn.Module):
    """BERT drops 4-D attention probabilities element-wise: not a feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.drop = nn.Linear(16, 48), nn.Dropout(0.1)

    def forward(self, x):
        q, k, v = self.qkv(x).view(2, 8, 3, 2, 8).permute(2, 0, 3, 1, 4)
        probs = self.drop((q @ k.transpose(-1, -2)).softmax(-1))
        return (probs @ v).transpose(1, 2).reshape(2, 8, 16)


def test_elementwise_dropout_on_attention_probabilities_is_not_flagged():
    assert slugs(AttentionProbsDropout(), SEQ) == set()


# ---- sites --------------------------------------------------------------------------------------


def test_sites_are_listed_once_in_execution_order_with_call_counts():
    class Reused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = nn.Dropout(0.2)  # registered first, runs last
            self.early = nn.Dropout(0.1)
            self.fcs = nn.ModuleList(nn.Linear(16, 16) for _ in range(3))

        def forward(self, x):
            x = self.early(x)
            for fc in self.fcs:
                x = self.late(F.relu(fc(x)))
            return x.sum(-1)

    sites = audit(Reused(), X16).sites
    assert [(s.id, s.module, s.calls) for s in sites] == [("S1", "early", 1), ("S2", "late", 3)]
    assert sites[0].before == "input" and sites[0].after == "Linear fcs.0"
    assert sites[1].before == "relu() in <root>"


def test_site_kinds_cover_attention_rnn_drop_path_and_weight_drop():
    class WeightDropLinear(nn.Linear):
        def forward(self, x):
            return F.linear(x, F.dropout(self.weight, 0.2, self.training), self.bias)

    class StochasticDepth(nn.Module):  # torchvision.ops naming
        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = p

        def forward(self, x):
            return x

    class Zoo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, dropout=0.1, batch_first=True)
            self.rnn = nn.LSTM(16, 16, num_layers=2, dropout=0.25, batch_first=True)
            self.sd = StochasticDepth(0.1)
            self.wd = WeightDropLinear(16, 4)

        def forward(self, x):
            x = x + self.sd(self.attn(x, x, x, need_weights=False)[0])
            return self.wd(self.rnn(x)[0])

    kinds = {s.module: (s.kind, s.p) for s in audit(Zoo(), torch.randn(2, 5, 16)).sites}
    assert kinds == {
        "attn": ("attention-dropout", 0.1),
        "rnn": ("dropout", 0.25),
        "sd": ("drop-path", 0.1),
        "wd": ("weight-drop", 0.2),
    }


def test_hand_written_mask_is_a_site():
    class MaskDrop(nn.Module):
        def forward(self, x):
            if self.training:
                x = x * torch.bernoulli(torch.full_like(x, 0.9)) / 0.9
            return x

    sites = audit(nn.Sequential(nn.Linear(16, 16), MaskDrop(), nn.Linear(16, 2)), X16).sites
    assert [(s.module, s.source, s.calls, s.eval_calls) for s in sites] == [("1", "random", 1, 0)]


# ---- the audit leaves the model and the random generators as it found them ---------------------------


def test_audit_restores_modes_buffers_and_rng():
    model = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 2))
    model.eval()
    model[2].train()
    stats = model[1].running_mean.clone()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    audit(model, X16)
    assert torch.equal(torch.rand(3), expected)
    assert [m.training for m in model.modules()] == [False, False, False, True, False]
    assert torch.equal(model[1].running_mean, stats)


def test_package_call_and_function_call_are_the_same_api():
    model = mlp(nn.ReLU(), nn.Dropout(0.5))
    assert advisor.audit(model, X16).sites == audit(model, X16).sites


def test_a_non_module_is_a_usage_error():
    from advisor.errors import UsageError

    with pytest.raises(UsageError, match=r"needs a torch\.nn\.Module"):
        audit(lambda x: x, X16)


def test_a_submodule_error_caught_inside_forward_does_not_confuse_the_trace():
    class Fallback(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.picky = nn.Linear(3, 3)  # rejects the input
            self.fc = nn.Linear(16, 16)
            self.drop = nn.Dropout(0.2)
            self.out = nn.Linear(16, 2)

        def forward(self, x):
            try:
                x = self.picky(x)
            except RuntimeError:
                x = self.fc(x)
            return self.out(self.drop(x))

    report = audit(Fallback(), X16)
    assert report.findings == []
    assert [(s.module, s.before, s.after) for s in report.sites] == [("drop", "Linear fc", "Linear out")]


def test_in_place_first_layers_do_not_change_the_callers_input():
    x = X16.clone()
    audit(nn.Sequential(nn.Dropout(0.5, inplace=True), nn.Linear(16, 2)), x)
    assert torch.equal(x, X16)


# ---- the registry ---------------------------------------------------------------------------------


def test_every_rule_module_declares_its_slug_id_severity_examples_and_check():
    from advisor.audit.rules import RULES, SLUGS

    assert len({r.SLUG for r in RULES}) == len(RULES) == len(SLUGS)
    for rule in RULES:
        assert rule.SEVERITY in ("error", "warning", "info"), rule.__name__
        assert rule.ID.startswith("DRP") and len(rule.ID) == 6, rule.__name__
        doc = rule.__doc__ or ""
        assert doc.startswith(f"{rule.SLUG} ({rule.ID}"), rule.__name__
        assert "Must flag::" in doc and "Must not flag::" in doc, rule.__name__
        assert callable(rule.check), rule.__name__


def test_the_v01_import_path_of_the_analysis_still_works():
    from advisor.audit.analysis import Analysis
    from advisor.audit.rules import Analysis as Legacy

    assert Legacy is Analysis


def test_elementwise_dropout_on_a_one_by_one_map_is_not_flagged():
    # torchvision inception_v3, timm dla/dpn/vgg heads: dropout after global pooling on (N, C, 1, 1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Dropout(0.2), nn.Conv2d(8, 4, 1))
    assert audit(model, IMG).findings == []


def test_elementwise_dropout_on_a_real_feature_map_is_still_flagged():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.2), nn.Conv2d(8, 4, 1))
    assert [f.slug for f in audit(model, IMG).findings] == ["elementwise-dropout-on-feature-maps"]
