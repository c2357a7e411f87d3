"""The v0.2 rules and behaviours not covered by the issue's cases: each must-flag next to its must-not-flag.

recurrent-state-dropout (Semeniuta et al. 2016; Gal & Ghahramani 2016), rate-never-used (a stored rate no
dropout uses), third-party findings reported as info, neighbour descriptions that skip no-ops.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from advisor.audit.api import audit


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def slugs(report) -> list[str]:
    return [f.slug for f in report.findings]


SEQ = torch.randn(5, 2, 8)  # (T, B, F)


# ---- recurrent-state-dropout --------------------------------------------------------------------------


class LoopLSTM(nn.Module):
    """A hand-written time loop over nn.LSTMCell; ``where`` picks what the dropout is applied to."""

    def __init__(self, where: str, p: float = 0.3) -> None:
        super().__init__()
        self.cell, self.drop, self.out = nn.LSTMCell(8, 16), nn.Dropout(p), nn.Linear(16, 4)
        self.where, self.p = where, p

    def forward(self, x):
        h = c = x.new_zeros(x.shape[1], 16)
        mask = x.new_empty(x.shape[1], 16).bernoulli_(1 - self.p) / (1 - self.p) if self.training else 1.0
        for t in range(x.shape[0]):
            inp = self.drop(x[t]) if self.where == "input" else x[t]
            h, c = self.cell(inp, (h, c))
            if self.where == "h":
                h = self.drop(h)
            elif self.where == "c":
                c = self.drop(c)
            elif self.where == "locked":
                h = h * mask
        return self.out(self.drop(h) if self.where == "locked" else h)  # on the output: not recurrent


def test_fresh_mask_on_the_hidden_state_each_step_is_flagged():
    report = audit(LoopLSTM("h"), SEQ)
    (finding,) = report.findings
    assert (finding.slug, finding.module, finding.rule_id) == ("recurrent-state-dropout", "drop", "DRP311")
    assert "hidden state h" in finding.message and "LSTMCell 'cell'" in finding.message
    assert "one mask per sequence" in finding.fix


def test_fresh_mask_on_the_cell_state_names_the_memory_loss():
    (finding,) = audit(LoopLSTM("c"), SEQ).findings
    assert "cell state c" in finding.message and "Semeniuta" in finding.message


def test_dropout_on_the_per_step_input_is_not_recurrent():
    assert audit(LoopLSTM("input"), SEQ).findings == []


def test_locked_mask_reused_every_step_is_not_flagged():
    assert audit(LoopLSTM("locked"), SEQ).findings == []


class SharedLayerStack(nn.Module):
    """ALBERT-style weight sharing: one layer called repeatedly with dropout between calls."""

    def __init__(self) -> None:
        super().__init__()
        self.layer, self.drop = nn.Linear(16, 16), nn.Dropout(0.1)

    def forward(self, x, mask):
        for _ in range(3):
            x = self.drop(self.layer(x)) * mask
        return x


def test_a_shared_layer_called_in_a_loop_is_not_a_recurrent_state():
    assert audit(SharedLayerStack(), (torch.randn(4, 16), torch.ones(4, 16))).findings == []


# ---- rate-never-used ----------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, attn_dropout: float = 0.1, use: bool = True) -> None:
        super().__init__()
        self.qkv, self.attn_dropout, self.use = nn.Linear(16, 48), attn_dropout, use

    def forward(self, x):
        q, k, v = self.qkv(x).view(2, 8, 3, 2, 8).permute(2, 0, 3, 1, 4)
        p = self.attn_dropout if self.training and self.use else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p).transpose(1, 2).reshape(2, 8, 16)


def test_a_stored_rate_that_no_dropout_uses_is_flagged():
    report = audit(Attention(use=False), torch.randn(2, 8, 16))
    (finding,) = report.findings
    assert (finding.slug, finding.module, finding.rule_id) == ("rate-never-used", "", "DRP312")
    assert "attn_dropout = 0.1" in finding.message


def test_a_stored_rate_handed_to_sdpa_is_used():
    assert audit(Attention(use=True), torch.randn(2, 8, 16)).findings == []


def test_a_stored_rate_of_zero_is_silent():
    assert audit(Attention(attn_dropout=0.0, use=False), torch.randn(2, 8, 16)).findings == []


class Backbone(nn.Module):
    """A stored rate handed to children at construction (timm's drop_path_rate with a depth schedule)."""

    def __init__(self, drop_path_rate: float = 0.2, drop_rate: float = 0.3) -> None:
        super().__init__()
        self.drop_path_rate, self.drop_rate = drop_path_rate, drop_rate
        rates = [drop_path_rate * i / 3 for i in range(3)]
        self.blocks = nn.ModuleList(Residual(r) for r in rates)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(F.dropout(x, self.drop_rate, self.training))


class Residual(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.fc, self.p = nn.Linear(16, 16), p

    def forward(self, x):
        y = self.fc(x)
        if self.training and self.p > 0:
            y = y * x.new_empty(x.shape[0], 1).bernoulli_(1 - self.p) / (1 - self.p)
        return x + y


def test_rates_consumed_by_children_and_functional_calls_are_used():
    assert audit(Backbone(), torch.randn(4, 16)).findings == []


# ---- third-party code ---------------------------------------------------------------------------------


def _installed_module(tmp_path, monkeypatch) -> types.ModuleType:
    """A module that lives in a folder named site-packages, as an installed library does."""
    pkg = tmp_path / "site-packages" / "fakelib"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import torch.nn as nn\n\n"
        "class Head(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.drop, self.fc = nn.Dropout(0.2), nn.Linear(16, 4)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    monkeypatch.delitem(sys.modules, "fakelib", raising=False)
    import fakelib

    return fakelib


class UserHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop, self.fc = nn.Dropout(0.2), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x)


def test_a_finding_in_an_installed_package_is_info_and_says_where_to_report_it(tmp_path, monkeypatch):
    lib = _installed_module(tmp_path, monkeypatch)
    model = nn.Sequential(lib.Head())
    (finding,) = audit(model, torch.randn(4, 16)).findings
    assert (finding.slug, finding.severity, finding.third_party) == ("dropout-never-called", "info", "fakelib")
    assert "report it upstream or allow it" in finding.message


def test_include_third_party_keeps_the_full_severity(tmp_path, monkeypatch):
    lib = _installed_module(tmp_path, monkeypatch)
    (finding,) = audit(nn.Sequential(lib.Head()), torch.randn(4, 16), include_third_party=True).findings
    assert finding.severity == "warning" and finding.third_party == "fakelib"


def test_the_users_own_code_keeps_its_severity():
    (finding,) = audit(nn.Sequential(UserHead()), torch.randn(4, 16)).findings
    assert (finding.severity, finding.third_party) == ("warning", None)


# ---- neighbours skip no-ops -----------------------------------------------------------------------------


def test_neighbours_skip_identity_and_zero_rate_dropout():
    model = nn.Sequential(nn.Linear(16, 16), nn.Identity(), nn.Dropout(0.2), nn.Dropout(0.0), nn.Linear(16, 4))
    site = next(s for s in audit(model, torch.randn(4, 16)).sites if s.module == "2")
    assert (site.before, site.after) == ("Linear 0", "Linear 4")
