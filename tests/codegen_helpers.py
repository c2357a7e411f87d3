"""Helpers shared by the code-generation tests: import a generated file, list its dropout, run ruff on it."""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

RUFF = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")

# ruff configurations generated code must pass, as people run them: the defaults; pycodestyle with the
# line length ruff format uses (88: E501 covers comments and docstrings too); zip(..., strict=True); and
# this project's own rule set at that line length. Each runs with --isolated (no project settings).
RUFF_CONFIGS: dict[str, list[str]] = {
    "defaults": [],
    "pycodestyle-88": ["--select", "E,W", "--line-length", "88"],
    "zip-strict": ["--extend-select", "B905", "--target-version", "py310"],
    "project-rules-88": [
        "--select",
        "E,F,W,I,B,UP,SIM,RUF",
        "--line-length",
        "88",
        "--target-version",
        "py311",
    ],
}

_counter = itertools.count()


def import_file(path: Path) -> ModuleType:
    """Import a generated file under a fresh module name (its __main__ block does not run)."""
    name = f"generated_{path.stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def dropout_sites(model) -> list[tuple[str, float]]:
    """(kind, p) of every dropout in the model, in registration order (= forward order in the templates)."""
    from torch import nn

    torch_kinds = [
        (nn.AlphaDropout, "alpha-dropout"),
        (nn.FeatureAlphaDropout, "feature-alpha-dropout"),
        (nn.Dropout1d, "dropout1d"),
        (nn.Dropout2d, "dropout2d"),
        (nn.Dropout3d, "dropout3d"),
        (nn.Dropout, "dropout"),
    ]
    own_kinds = {
        "DropPath": "drop-path",
        "LockedDropout": "locked-dropout",
        "EmbeddingDropout": "embedding-dropout",
        "WeightDrop": "weight-drop",
    }
    found: list[tuple[str, float]] = []
    for name, module in model.named_modules():
        if hasattr(module, "attn_p"):
            found.append(("attention-dropout", module.attn_p))
        if isinstance(module, nn.RNNBase) and module.num_layers > 1 and module.dropout > 0:
            found += [("dropout", module.dropout)] * (module.num_layers - 1)
        own = own_kinds.get(type(module).__name__)
        if own is not None:
            found.append((own, module.p))
            continue
        for cls, kind in torch_kinds:
            if type(module) is cls:
                attention = name.rsplit(".", 1)[-1].startswith("attn")
                found.append(("attention-dropout" if attention else kind, module.p))
                break
    return found


def ruff(config: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    """``ruff check`` with one of RUFF_CONFIGS and no project settings."""
    cmd = [RUFF, "check", "--isolated", "--no-cache", "--output-format", "concise", *RUFF_CONFIGS[config]]
    return subprocess.run([*cmd, *map(str, paths)], capture_output=True, text=True)


def ruff_format_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    cmd = [RUFF, "format", "--isolated", "--no-cache", "--check", "--diff", *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True)
