"""Reference recipes: one file per published model configuration, strict schema, resolvable names."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from advisor.errors import KnowledgeError, NotFoundError
from advisor.knowledge import data_root, load
from advisor.schema import Recipe

ROOT = data_root()
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_file_name_is_its_key(path: Path):
    recipe = Recipe.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    assert recipe.key == path.stem


def test_every_recipe_source_is_a_known_citation(kb):
    for r in kb.recipes.values():
        keys = set(r.citations) | {s.citation for site in r.sites for s in site.sources}
        keys |= {s.citation for s in r.no_dropout_sources}
        assert keys <= set(kb.citations), r.key


def test_recipes_are_found_by_alias_and_hub_name_in_any_spelling(kb):
    assert kb.recipe("bert-base-uncased").key == "bert-base"
    assert kb.recipe("BERT_Base_Uncased").key == "bert-base"


def test_unknown_recipe_suggests_close_names(kb):
    with pytest.raises(NotFoundError) as err:
        kb.recipe("bert-bse")
    assert "bert-base" in (err.value.hint or "")


def test_bert_base_has_no_ffn_inner_dropout(kb):
    roles = {s.role for s in kb.recipe("bert-base").sites}
    assert "ffn-inner" not in roles
    assert {"embedding", "attention-weights", "attention-output", "ffn-output", "head"} <= roles
    assert all(s.p == 0.1 for s in kb.recipe("bert-base").sites)


def _copy_kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    shutil.copytree(ROOT, root)
    return root


def test_recipe_with_unknown_citation_and_bad_spec_is_reported(tmp_path: Path):
    root = _copy_kb(tmp_path)
    path = root / "recipes" / "bert-base.toml"
    text = path.read_text(encoding="utf-8").replace('citation = "devlin2019"', 'citation = "devlin2091"', 1)
    path.write_text(text.replace('norm = "post"', 'norm = "sideways"'), encoding="utf-8")
    with pytest.raises(KnowledgeError) as err:
        load(root)
    msg = err.value.message
    assert "recipes/bert-base.toml: sites[0].sources[0].citation: unknown citation 'devlin2091'" in msg
    assert "recipes/bert-base.toml: spec.norm" in msg


def test_recipe_file_name_must_match_key(tmp_path: Path):
    root = _copy_kb(tmp_path)
    (root / "recipes" / "bert-base.toml").rename(root / "recipes" / "bert.toml")
    with pytest.raises(KnowledgeError, match="does not match the file name 'bert'"):
        load(root)
