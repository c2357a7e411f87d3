"""The knowledge base: schema, names, cross-references, examples, coverage, and error reporting."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from advisor.errors import KnowledgeError, NotFoundError
from advisor.knowledge import data_root, load
from advisor.schema import Citation, Recommendation

ROOT = data_root()


def test_whole_knowledge_base_validates_with_examples_compiled():
    kb = load(check_examples=True)
    assert len(kb.citations) >= 30
    assert len(kb.active()) >= 25


@pytest.mark.parametrize("path", sorted((ROOT / "citations").glob("*.toml")), ids=lambda p: p.stem)
def test_citation_file_name_is_its_key(path: Path):
    cit = Citation.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    assert cit.key == path.stem


@pytest.mark.parametrize("path", sorted((ROOT / "recommendations").glob("*.toml")), ids=lambda p: p.stem)
def test_recommendation_file_name_is_its_id(path: Path):
    rec = Recommendation.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    assert rec.id == path.stem


def test_every_reference_resolves(kb):
    for rec in kb.recommendations.values():
        keys = (
            set(rec.citations)
            | set(rec.rate.citations if rec.rate else [])
            | {k for p in rec.positions for k in p.citations}
        )
        assert keys <= set(kb.citations), rec.id
        assert set(rec.related) <= set(kb.recommendations), rec.id


def test_every_rate_is_a_drop_probability_with_a_source(kb):
    for rec in kb.recommendations.values():
        if rec.rate is not None:
            assert 0 <= rec.rate.low <= rec.rate.default <= rec.rate.high < 1, rec.id
            assert rec.rate.citations, rec.id
    for cit in kb.citations.values():
        for f in cit.findings:
            if f.p is not None:
                assert 0 <= f.p < 1, cit.key
            if f.converted_from_retain:
                assert f.rate_text, cit.key


def test_contested_entries_give_both_sides(kb):
    contested = [r for r in kb.active() if r.contested]
    assert contested, "the knowledge base must record contested advice as contested"
    for rec in contested:
        assert len(rec.positions) >= 2
        assert len({tuple(p.citations) for p in rec.positions}) >= 2 or rec.confidence != "high", rec.id


def test_audit_rules_are_unique_and_complete(kb):
    slugs = kb.by_slug()
    required = {
        "functional-dropout-ignores-eval",
        "nondeterministic-eval-output",
        "dropout-before-batchnorm",
        "dropout-after-output",
        "rnn-dropout-single-layer",
        "channel-dropout-wrong-rank",
        "inplace-dropout-hazard",
        "rate-out-of-range",
        "rate-suspicious",
        "dropout-never-called",
        "elementwise-dropout-on-feature-maps",
    }
    assert required <= set(slugs)


@pytest.mark.filterwarnings("ignore:dropout option adds dropout:UserWarning")
@pytest.mark.filterwarnings("ignore:dropout2d. Received a 3D input:UserWarning")
def test_examples_run(kb):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for rec in kb.active():
        for part in ("before", "after"):
            namespace: dict[str, object] = {"__name__": f"example_{rec.id}_{part}"}
            exec(compile(getattr(rec.example, part), f"{rec.id}.example.{part}", "exec"), namespace)


def test_lookup_by_id_is_case_insensitive_and_by_slug(kb):
    assert kb.recommendation("drp001").id == "DRP001"
    rec = kb.recommendation("dropout-before-batchnorm")
    assert rec.audit is not None and rec.audit.slug == "dropout-before-batchnorm"


def test_unknown_id_suggests_close_matches(kb):
    with pytest.raises(NotFoundError) as exc:
        kb.recommendation("DRP0011")
    assert exc.value.hint is not None and "DRP0" in exc.value.hint
    with pytest.raises(NotFoundError) as exc:
        kb.citation("srivastava2015")
    assert "srivastava2014" in (exc.value.hint or "")


@pytest.fixture
def broken_copy(tmp_path: Path) -> Path:
    root = tmp_path / "knowledge"
    shutil.copytree(ROOT, root)
    return root


def test_loader_reports_every_broken_file_and_field(broken_copy: Path):
    rec = broken_copy / "recommendations" / "DRP001.toml"
    rec.write_text(
        rec.read_text(encoding="utf-8").replace('confidence = "high"', 'confidence = "certain"\nsumary = "x"'),
        encoding="utf-8",
    )
    cit = broken_copy / "citations" / "srivastava2014.toml"
    cit.write_text(cit.read_text(encoding="utf-8").replace("year = 2014", 'year = "two thousand"'), encoding="utf-8")
    with pytest.raises(KnowledgeError) as exc:
        load(broken_copy)
    message = exc.value.message
    assert "recommendations/DRP001.toml: confidence:" in message
    assert "recommendations/DRP001.toml: sumary: Extra inputs are not permitted" in message
    assert "citations/srivastava2014.toml: year:" in message
    # The recommendations that cite the broken source are reported too, with their field.
    assert "unknown citation 'srivastava2014'" in message


def test_loader_rejects_file_name_mismatch_and_bad_toml(broken_copy: Path):
    (broken_copy / "recommendations" / "DRP001.toml").rename(broken_copy / "recommendations" / "DRP999.toml")
    (broken_copy / "citations" / "broken.toml").write_text("key = [unclosed", encoding="utf-8")
    with pytest.raises(KnowledgeError) as exc:
        load(broken_copy)
    assert "recommendations/DRP999.toml: id: 'DRP001' does not match the file name 'DRP999'" in exc.value.message
    assert "citations/broken.toml: not valid TOML" in exc.value.message


def test_example_that_does_not_compile_is_reported(broken_copy: Path):
    rec = broken_copy / "recommendations" / "DRP001.toml"
    text = rec.read_text(encoding="utf-8").replace("import torch.nn as nn", "import torch.nn as", 1)
    rec.write_text(text, encoding="utf-8")
    with pytest.raises(KnowledgeError) as exc:
        load(broken_copy, check_examples=True)
    assert "recommendations/DRP001.toml: example.before: does not compile" in exc.value.message


def test_removed_ids_stay_reserved(kb):
    # A retired entry keeps its file with status "removed"; no two files share an ID (checked above),
    # and removed entries are not offered as advice.
    assert all(r.status == "active" for r in kb.active())


def test_cache_serves_the_same_knowledge_and_notices_edits(broken_copy: Path, tmp_path: Path, monkeypatch):
    from advisor.knowledge import cache_dir, load_cached

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = load_cached(broken_copy)
    cached = list(cache_dir().glob("kb-*.pickle"))
    assert len(cached) == 1
    second = load_cached(broken_copy)
    assert second.recommendations == first.recommendations and second.citations == first.citations
    rec = broken_copy / "recommendations" / "DRP001.toml"
    rec.write_text(rec.read_text(encoding="utf-8").replace("In a fully connected net", "In an MLP"), encoding="utf-8")
    third = load_cached(broken_copy)
    assert third.recommendations["DRP001"].summary.startswith("In an MLP")


def test_unreadable_cache_is_rebuilt(broken_copy: Path, tmp_path: Path, monkeypatch):
    from advisor.knowledge import cache_dir, load_cached

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_cached(broken_copy)
    for path in cache_dir().glob("kb-*.pickle"):
        path.write_bytes(b"not a pickle")
    assert len(load_cached(broken_copy).recommendations) == len(load(broken_copy).recommendations)


def test_broken_knowledge_is_never_served_from_cache(broken_copy: Path, tmp_path: Path, monkeypatch):
    from advisor.knowledge import load_cached

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_cached(broken_copy)
    (broken_copy / "citations" / "bad.toml").write_text("key = 1\n", encoding="utf-8")
    with pytest.raises(KnowledgeError):
        load_cached(broken_copy)
