"""The knowledge-base cache: installs sharing one cache folder keep their own files, the key covers Python and
pydantic, and a hit parses no TOML and unpickles only what a command reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from advisor import knowledge
from advisor.knowledge import LazyMap, cache_dir, cache_path, load, load_cached

ROOT = Path(__file__).resolve().parent.parent / "knowledge"


@pytest.fixture
def two_installs(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, second = tmp_path / "a" / "knowledge", tmp_path / "b" / "knowledge"
    shutil.copytree(ROOT, first)
    shutil.copytree(ROOT, second)
    return first, second


def _no_load(*args, **kwargs):
    raise AssertionError("the knowledge base was loaded from its files: a cache miss")


def test_two_installs_sharing_a_cache_folder_do_not_evict_each_other(two_installs, monkeypatch):
    first, second = two_installs
    load_cached(first)
    load_cached(second)
    assert len(list(cache_dir().glob("kb-*.pickle"))) == 2
    monkeypatch.setattr(knowledge, "load", _no_load)
    assert load_cached(first).recommendation("DRP001").id == "DRP001"
    assert load_cached(second).recommendation("DRP001").id == "DRP001"


def test_an_edit_replaces_only_that_installs_cache_file(two_installs):
    first, second = two_installs
    load_cached(first)
    load_cached(second)
    other = cache_path(second)
    rec = first / "recommendations" / "DRP001.toml"
    rec.write_text(rec.read_text(encoding="utf-8").replace("In a fully connected net", "In an MLP"), encoding="utf-8")
    assert load_cached(first).recommendations["DRP001"].summary.startswith("In an MLP")
    assert other.exists()
    assert sorted(cache_dir().glob("kb-*.pickle")) == sorted([cache_path(first), other])


def test_the_key_covers_the_python_and_pydantic_versions(two_installs, monkeypatch):
    import pydantic

    first, _ = two_installs
    before = cache_path(first)
    monkeypatch.setattr(pydantic, "VERSION", "0.0.0-other")
    assert cache_path(first) != before
    monkeypatch.undo()
    monkeypatch.setattr(sys, "version", sys.version + " (another build)")
    assert cache_path(first) != before


def test_a_hit_serves_the_same_knowledge_lazily(two_installs, monkeypatch):
    first, _ = two_installs
    fresh = load(first)
    load_cached(first)
    monkeypatch.setattr(knowledge, "load", _no_load)
    cached = load_cached(first)
    assert isinstance(cached.recommendations, LazyMap)
    assert list(cached.recommendations) == list(fresh.recommendations)
    for name in ("citations", "recommendations", "recipes"):
        assert dict(getattr(cached, name).items()) == dict(getattr(fresh, name).items())
    assert cached.derived["knowledge_index"].query("batch norm", limit=3)


def test_a_cached_command_parses_no_toml_and_unpickles_one_entry(two_installs):
    first, _ = two_installs
    load_cached(first)
    code = (
        "import sys\n"
        "from advisor.knowledge import load_cached, _Pickled\n"
        f"kb = load_cached(__import__('pathlib').Path({str(first)!r}))\n"
        "kb.recommendation('DRP009')\n"
        "left = sum(isinstance(v, _Pickled) for v in kb.recommendations._items.values())\n"
        "print('tomli' in sys.modules, 'tomllib' in sys.modules, left, len(kb.recommendations))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["False", "False"]
    assert int(out[2]) == int(out[3]) - 1
