"""The code-generation benchmarks keep their promises: exit codes that say when they miss, no files left."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from advisor.generate import Generated

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAILING = """
def smoke_test(device="cpu", steps=None, seed=0, verbose=True):
    raise AssertionError("the eval loss went from 1.0 to 0.9 in 300 steps; it must at least halve")
"""


def _job(code: str) -> Generated:
    return Generated(
        code=code, template="mlp", title="t", model_class="MLP", sites=0, mc_dropout=False, audit_command=""
    )


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """tempfile's folders go here, so the test can see what a run leaves behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _ours(folder: Path) -> list[Path]:
    """What the benchmark left in the temporary folder (torch may cache its own things there)."""
    return [p for p in folder.iterdir() if p.name.startswith("dropout-advisor-smoke-")]


def test_smoke_all_devices_exits_1_on_a_failed_smoke_test_and_removes_its_files(private_tmp, monkeypatch, capsys):
    pytest.importorskip("torch")
    bench = _load("smoke_all_devices")
    monkeypatch.setattr(bench, "_jobs", lambda depths, recipes=False: [("broken", _job(FAILING))])
    monkeypatch.setattr(sys, "argv", ["smoke_all_devices.py", "--device", "cpu"])
    assert bench.main() == 1
    out = capsys.readouterr().out
    assert "broken" in out and "FAILED" in out and "0/1 passed" in out
    assert _ours(private_tmp) == []


def test_smoke_all_devices_exits_0_when_every_test_passes_and_removes_its_files(private_tmp, monkeypatch, capsys):
    pytest.importorskip("torch")
    from advisor.recommend import recommend
    from advisor.spec import Spec

    bench = _load("smoke_all_devices")
    spec = Spec(arch="mlp", layers=1)
    monkeypatch.setattr(bench, "_jobs", lambda depths, recipes=False: [("mlp", bench.generate(recommend(spec), spec))])
    monkeypatch.setattr(sys, "argv", ["smoke_all_devices.py", "--device", "cpu"])
    assert bench.main() == 0
    assert "1/1 passed" in capsys.readouterr().out
    assert _ours(private_tmp) == []


def test_smoke_all_devices_keeps_the_files_only_when_asked(private_tmp, monkeypatch):
    pytest.importorskip("torch")
    bench = _load("smoke_all_devices")
    keep = private_tmp / "kept"
    monkeypatch.setattr(bench, "_jobs", lambda depths, recipes=False: [("broken", _job(FAILING))])
    monkeypatch.setattr(sys, "argv", ["smoke_all_devices.py", "--device", "cpu", "--keep", str(keep)])
    assert bench.main() == 1
    assert _ours(private_tmp) == []
    assert (keep / "broken.py").is_file()


@pytest.mark.parametrize("argv", [["--depths", "1,x"], ["--depths", "0"], ["--device", "tpu"]])
def test_smoke_all_devices_bad_arguments_exit_2(argv, monkeypatch, capsys):
    pytest.importorskip("torch")
    bench = _load("smoke_all_devices")
    monkeypatch.setattr(sys, "argv", ["smoke_all_devices.py", *argv])
    assert bench.main() == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\nhint: " in err


def test_smoke_all_devices_depths_add_every_variant_at_each_depth():
    bench = _load("smoke_all_devices")
    names = [name for name, _ in bench._jobs([1, 12])]
    assert len(names) == len(bench.CASES) + 1 + 2 * len(bench.VARIANTS)
    assert "cnn_fc_none_batchnorm_12" in names and "transformer_vit_post_1" in names


def test_smoke_all_devices_recipes_add_every_recipe_a_template_writes():
    bench = _load("smoke_all_devices")
    names = [name for name, _ in bench._jobs([], recipes=True)]
    assert "recipe_llama_2_7b" in names and "recipe_bert_base" in names and "recipe_t5_base" not in names


@pytest.mark.parametrize(("seconds", "torch_imported", "code"), [(0.15, False, 0), (0.35, False, 1), (0.15, True, 1)])
def test_bench_generate_exits_1_when_it_misses_its_target(seconds, torch_imported, code, monkeypatch, capsys):
    bench = _load("bench_generate")

    def fake_time(cmd, runs, out=None):
        return 0.1 if cmd == bench.BASELINE else seconds  # generate takes 1.5x or 3.5x the baseline

    monkeypatch.setattr(bench, "_time", fake_time)
    monkeypatch.setattr(bench, "_imports_torch", lambda: torch_imported)
    monkeypatch.setattr(sys, "argv", ["bench_generate.py", "--runs", "1"])
    assert bench.main() == code
    out = capsys.readouterr().out
    assert f"worst ratio {seconds / 0.1:.2f}" in out
    assert ("MISSED" in out) == (code == 1)
