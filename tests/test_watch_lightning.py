"""The Lightning callback, run inside a real ``lightning.Trainer.fit`` on the CPU (shared/facts/dropout-bugs.md
case 5: Lightning >= 2.2 keeps each submodule's mode, so a backbone returned in eval mode stays there)."""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import advisor
from advisor.audit.watch import OFF_IN_TRAINING, ON_IN_EVALUATION
from advisor.audit.watch_lightning import watch_callback
from advisor.errors import MissingDependencyError

L = pytest.importorskip("lightning")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(torch.relu(self.fc(x)))


class FineTune(L.LightningModule):
    """A 'pretrained' backbone put in eval mode in __init__ (as from_pretrained() does) and a new head."""

    def __init__(self, freeze: bool = False, mark: bool = False, head_train_in_val: bool = False) -> None:
        super().__init__()
        self.backbone = Backbone().eval()
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(16, 2))
        if freeze:
            self.backbone.requires_grad_(False)
        if mark:
            advisor.frozen(self.backbone, "kept in eval on purpose")
        self.head_train_in_val = head_train_in_val

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def on_validation_start(self) -> None:
        if self.head_train_in_val:
            self.head.train()  # a hook that switches part of the model back: dropout on in validation

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class MeanTeacher(L.LightningModule):
    """An EMA teacher evaluated under no_grad, but never switched to eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.student = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, _ = batch
        with torch.no_grad():
            target = self.teacher(x)
        return (self.student(x) - target).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.student.parameters(), lr=0.1)


def fit(module: L.LightningModule, tmp_path: Path, **kw) -> list[tuple[str, str]]:
    callback = watch_callback(warn=False, **kw)
    data = TensorDataset(torch.randn(16, 8), torch.randint(0, 2, (16,)))
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        has_val = hasattr(type(module), "validation_step")
        trainer.fit(module, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4) if has_val else None)
    return [(e.kind, e.module) for e in callback.events]


def test_backbone_left_in_eval_is_reported_at_the_first_training_batch(tmp_path: Path) -> None:
    assert fit(FineTune(), tmp_path) == [(OFF_IN_TRAINING, "backbone.drop")]


def test_frozen_backbone_in_eval_is_not_reported(tmp_path: Path) -> None:
    assert fit(FineTune(freeze=True), tmp_path) == []


def test_backbone_marked_frozen_is_not_reported(tmp_path: Path) -> None:
    assert fit(FineTune(mark=True), tmp_path) == []


def test_allow_glob_silences_the_callback(tmp_path: Path) -> None:
    assert fit(FineTune(), tmp_path, allow=["backbone.*"]) == []


def test_dropout_switched_on_during_validation_is_reported(tmp_path: Path) -> None:
    module = FineTune(freeze=True, head_train_in_val=True)
    assert fit(module, tmp_path) == [(ON_IN_EVALUATION, "head.0")]


def test_teacher_in_train_mode_inside_training_step_is_reported_at_run_time(tmp_path: Path) -> None:
    assert fit(MeanTeacher(), tmp_path) == [(ON_IN_EVALUATION, "teacher.2")]


def test_runtime_checks_can_be_turned_off(tmp_path: Path) -> None:
    assert fit(MeanTeacher(), tmp_path, runtime=False) == []


def test_callback_is_a_lightning_callback() -> None:
    assert isinstance(watch_callback(), L.pytorch.Callback)


def test_module_imports_and_explains_without_lightning(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError) as info:
        watch_callback()
    assert "pip install lightning" in (info.value.hint or "")
