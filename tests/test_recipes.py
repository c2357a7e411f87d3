"""Reference recipes: one file per published model configuration, strict schema, resolvable names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from advisor.cli import app
from advisor.errors import KnowledgeError, NotFoundError
from advisor.knowledge import data_root, load
from advisor.schema import SCHEMA_VERSION, Recipe

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


# ---- the collection: size, evidence, names ----

REQUIRED = [
    "alexnet", "vgg16", "resnet-50", "wrn-28-10", "densenet-121", "efficientnet-b0", "efficientnet-b7",
    "convnext-t", "vit-b-16", "deit-b", "swin-t", "bert-base", "roberta-base", "gpt2", "pythia-160m",
    "llama-7b", "llama-2-7b", "llama-3-8b", "mistral-7b", "t5-base", "t5-v1.1-base", "bart-large",
    "transformer-base", "transformer-big", "zaremba-medium", "zaremba-large", "awd-lstm", "gcn", "gat", "snn",
]  # fmt: skip


def test_every_model_the_issue_names_has_a_recipe(kb):
    assert len(kb.recipes) >= 30
    assert set(REQUIRED) <= set(kb.recipes)


def _all_sources(recipe: Recipe):
    yield from recipe.no_dropout_sources
    for site in recipe.sites:
        yield from site.sources


@pytest.mark.parametrize("key", REQUIRED)
def test_every_fact_of_a_recipe_names_its_evidence(kb, key):
    recipe = kb.recipes[key]
    assert recipe.sites or recipe.no_dropout_sources
    for site in recipe.sites:
        assert site.sources, f"{key}: {site.role} has no source"
    for src in _all_sources(recipe):
        # Code and configs are read at a commit, or (libraries) at a named release version.
        if src.evidence in ("official-config", "reference-code"):
            assert src.commit or re.search(r"\b\d+\.\d+\.\d+\b", src.locator), f"{key}: {src.locator}"


def test_field_names_follow_library_conventions(kb):
    known = {
        "transformers": {
            "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "resid_pdrop",
            "embd_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout", "dropout_rate", "dropout",
            "activation_dropout", "drop_path_rate", "drop_connect_rate",
        },
        "timm": {"drop_rate", "drop_path_rate", "attn_drop_rate", "proj_drop_rate", "pos_drop_rate"},
        "torchvision": {"dropout", "attention_dropout", "stochastic_depth_prob", "dropout_aux"},
    }  # fmt: skip
    for r in kb.recipes.values():
        for site in r.sites:
            for field in site.fields:
                lib, _, name = field.partition(":")
                if lib in known:
                    assert name in known[lib], f"{r.key}: {field}"


# Every spelling a user may pass as --base, and the recipe it must resolve to.
BASE_NAMES = [
    ("bert-base-uncased", "bert-base"),
    ("google-bert/bert-base-uncased", "bert-base"),
    ("llama-2-7b", "llama-2-7b"),
    ("meta-llama/Llama-2-7b-hf", "llama-2-7b"),
    ("Llama-2-7b-hf", "llama-2-7b"),
    ("llama-7b", "llama-7b"),
    ("llama-3-8b", "llama-3-8b"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"),
    ("mistralai/Mistral-7B-v0.1", "mistral-7b"),
    ("vit-b-16", "vit-b-16"),
    ("ViT-B/16", "vit-b-16"),
    ("vit_base_patch16_224", "vit-b-16"),
    ("google/vit-base-patch16-224", "vit-b-16"),
    ("vit_b_16", "vit-b-16"),
    ("ViT-L/16", "vit-l-16"),
    ("deit_base_patch16_224", "deit-b"),
    ("resnet50", "resnet-50"),
    ("vgg16", "vgg16"),
    ("alexnet", "alexnet"),
    ("efficientnet_b0", "efficientnet-b0"),
    ("tf_efficientnet_b7", "efficientnet-b7"),
    ("google/efficientnet-b7", "efficientnet-b7"),
    ("convnext_tiny", "convnext-t"),
    ("swin_t", "swin-t"),
    ("microsoft/swin-tiny-patch4-window7-224", "swin-t"),
    ("densenet121", "densenet-121"),
    ("FacebookAI/roberta-base", "roberta-base"),
    ("roberta-base", "roberta-base"),
    ("gpt2", "gpt2"),
    ("openai-community/gpt2", "gpt2"),
    ("EleutherAI/pythia-160m", "pythia-160m"),
    ("EleutherAI/gpt-neox-20b", "gpt-neox-20b"),
    ("t5-base", "t5-base"),
    ("google-t5/t5-base", "t5-base"),
    ("google/t5-v1_1-base", "t5-v1.1-base"),
    ("t5-v1.1-base", "t5-v1.1-base"),
    ("facebook/bart-large", "bart-large"),
    ("wrn-28-10", "wrn-28-10"),
    ("transformer-big", "transformer-big"),
    ("awd-lstm", "awd-lstm"),
    ("gat", "gat"),
]


@pytest.mark.parametrize(("typed", "key"), BASE_NAMES)
def test_base_names_resolve(kb, typed, key):
    assert kb.recipe(typed).key == key


def test_display_names_with_a_slash_do_not_collide(kb):
    # 'ViT-B/16' and 'ViT-L/16' must not both shorten to '16'.
    assert kb.recipe("vit-b/16").key == "vit-b-16"
    assert kb.recipe("vit-l/16").key == "vit-l-16"
    with pytest.raises(NotFoundError):
        kb.recipe("16")


def test_hub_identifier_names_are_unique_across_recipes(tmp_path: Path):
    root = _copy_kb(tmp_path)
    path = root / "recipes" / "roberta-base.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("FacebookAI/roberta-base", "google-bert/bert-base-uncased")
    )
    with pytest.raises(KnowledgeError, match="bert-base-uncased' is also used by recipe 'bert-base'"):
        load(root)


# ---- the verified facts that matter most for the advice ----


def _roles(kb, key: str) -> dict[str, float]:
    return {s.role: s.p for s in kb.recipes[key].sites}


def test_bert_and_gpt2_have_no_dropout_inside_the_ffn(kb):
    for key in ("bert-base", "gpt2"):
        assert "ffn-inner" not in _roles(kb, key), key
    assert _roles(kb, "gpt2") == {
        "embedding": 0.1, "attention-weights": 0.1, "attention-output": 0.1, "ffn-output": 0.1,
    }  # fmt: skip


@pytest.mark.parametrize("key", ["llama-7b", "llama-2-7b", "llama-3-8b", "mistral-7b"])
def test_llama_family_and_mistral_have_no_dropout_sites(kb, key):
    recipe = kb.recipes[key]
    assert recipe.sites == []
    assert any(s.evidence == "reference-code" and s.commit for s in recipe.no_dropout_sources)


def test_t5_v1_1_has_no_dropout_in_pretraining_and_0_1_in_fine_tuning(kb):
    from advisor.recipes_view import active_sites

    recipe = kb.recipes["t5-v1.1-base"]
    assert active_sites(recipe, "pretraining") == []
    pre = {s.role for s in recipe.sites if s.regime == ["pretraining"]}
    fine = {s.role: s.p for s in recipe.sites if s.regime == ["fine-tuning"]}
    assert (
        pre == set(fine) == {"embedding", "attention-weights", "attention-output", "ffn-inner", "ffn-output", "final"}
    )
    assert set(fine.values()) == {0.1}
    # The original T5 keeps dropout on in pretraining.
    assert {s.p for s in active_sites(kb.recipes["t5-base"], "pretraining")} == {0.1}


def test_vit_b_16_releases_zero_dropout_and_deit_uses_drop_path_0_1(kb):
    vit = kb.recipes["vit-b-16"]
    released = [s for s in vit.sites if s.regime != ["scratch"]]
    assert released and all(s.p == 0.0 for s in released)
    assert all(s.role != "drop-path" for s in released)
    # From scratch the recipe follows DeiT (its disagreement says so): drop-path 0.1, the same answer as deit-b.
    assert [(s.role, s.p) for s in vit.sites if s.regime == ["scratch"]] == [("drop-path", 0.1)]
    deit = _roles(kb, "deit-b")
    assert deit.pop("drop-path") == 0.1
    assert set(deit.values()) == {0.0}
    assert kb.recipes["deit-b"].sites[0].schedule == "linspace"  # timm: torch.linspace(0, p, depth)


def test_alexnet_drops_0_5_before_fc6_and_fc7_only(kb):
    # torchvision: Dropout -> Linear(fc6) -> ReLU -> Dropout -> Linear(fc7) -> ReLU -> Linear
    assert [(s.role, s.p, s.scope) for s in kb.recipes["alexnet"].sites] == [("fc", 0.5, "all")]
    assert kb.recipes["alexnet"].spec["fc_layers"] == 2


def test_vgg_drops_0_5_after_fc6_and_fc7_only(kb):
    # torchvision: Linear(fc6) -> ReLU -> Dropout -> Linear(fc7) -> ReLU -> Dropout -> Linear
    sites = [(s.role, s.p, s.scope) for s in kb.recipes["vgg16"].sites]
    assert sites == [("fc", 0.5, "all-but-first"), ("head", 0.5, "all")]
    assert kb.recipes["vgg16"].spec["fc_layers"] == 2


def test_resnet_50_has_no_dropout(kb):
    assert kb.recipes["resnet-50"].sites == []
    assert kb.recipes["resnet-50"].no_dropout_sources


def test_wrn_drops_0_3_between_the_convolutions_of_each_block(kb):
    assert [(s.role, s.p) for s in kb.recipes["wrn-28-10"].sites] == [("block-mid", 0.3)]


def test_efficientnet_head_rate_grows_from_0_2_to_0_5_and_drop_path_stays_0_2(kb):
    assert _roles(kb, "efficientnet-b0") == {"head": 0.2, "drop-path": 0.2}
    assert _roles(kb, "efficientnet-b7") == {"head": 0.5, "drop-path": 0.2}


def test_zaremba_medium_0_5_and_large_0_65_on_non_recurrent_connections(kb):
    for key, p in (("zaremba-medium", 0.5), ("zaremba-large", 0.65)):
        assert _roles(kb, key) == {"rnn-input": p, "rnn-between": p, "rnn-output": p}
        assert kb.recipes[key].spec["width"] == {"zaremba-medium": 650, "zaremba-large": 1500}[key]


def test_gat_has_its_three_reference_dropouts_at_0_6(kb):
    assert _roles(kb, "gat") == {"graph-input": 0.6, "graph-attention": 0.6, "graph-features": 0.6}


def test_gcn_drops_0_5_on_each_graph_conv_input(kb):
    assert _roles(kb, "gcn") == {"graph-input": 0.5}


def test_pretraining_recipes_of_pythia_and_neox_drop_nothing(kb):
    from advisor.recipes_view import active_sites

    for key in ("pythia-160m", "gpt-neox-20b"):
        assert kb.recipes[key].sites and active_sites(kb.recipes[key]) == []


def test_awd_lstm_uses_locked_dropout_and_weight_drop(kb):
    kinds = {s.role: (s.kind, s.p) for s in kb.recipes["awd-lstm"].sites}
    assert kinds == {
        "embedding-dropout": ("embedding-dropout", 0.1),
        "rnn-input": ("locked-dropout", 0.4),
        "rnn-between": ("locked-dropout", 0.25),
        "rnn-output": ("locked-dropout", 0.4),
        "weight-drop": ("weight-drop", 0.5),
    }


def test_snn_uses_alpha_dropout(kb):
    assert [(s.role, s.kind, s.p) for s in kb.recipes["snn"].sites] == [("hidden", "alpha-dropout", 0.05)]


def test_transformer_base_and_big_follow_the_paper(kb):
    for key, p in (("transformer-base", 0.1), ("transformer-big", 0.3)):
        roles = _roles(kb, key)
        assert {r: roles[r] for r in ("embedding", "attention-output", "ffn-output")} == dict.fromkeys(
            ("embedding", "attention-output", "ffn-output"), p
        )
        assert roles["attention-weights"] == roles["ffn-inner"] == 0.0


# ---- rendering and the CLI ----


def test_sites_summary_groups_regimes_per_role(kb):
    from advisor.recipes_view import sites_summary

    assert sites_summary(kb.recipes["resnet-50"]) == "no dropout"
    assert "ffn-inner=0 (pretraining) / 0.1 (fine-tuning)" in sites_summary(kb.recipes["t5-v1.1-base"])


def test_recipes_list_prints_one_line_per_recipe(runner, kb):
    result = runner.invoke(app, ["recipes", "list"])
    assert result.exit_code == 0
    assert result.stderr == ""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(kb.recipes) + 1
    vgg = next(line for line in lines if line.startswith("vgg16 "))
    assert "fc=0.5" in vgg and "head=0.5" in vgg and " high " in vgg


def test_recipes_list_json_has_schema_version_and_sites(runner, kb):
    result = runner.invoke(app, ["recipes", "list", "--format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["schema_version"] == SCHEMA_VERSION
    gcn = next(r for r in data["recipes"] if r["key"] == "gcn")
    assert gcn["sites"] == [
        {"role": "graph-input", "kind": "dropout", "p": 0.5, "schedule": "constant", "regime": None, "scope": "all"}
    ]


def test_recipes_show_markdown_has_sites_sources_and_disagreements(runner):
    result = runner.invoke(app, ["recipes", "show", "vit_base_patch16_224", "--format", "markdown"])
    assert result.exit_code == 0
    md = result.stdout
    assert md.startswith("# ViT-B/16 (`vit-b-16`)")
    assert "`transformers:hidden_dropout_prob`" in md
    assert "c6de1e5378c9831a8477feb30994971bdc409e46" in md
    assert "## Where sources disagree" in md


def test_recipes_show_json_round_trips_the_schema(runner, kb):
    result = runner.invoke(app, ["recipes", "show", "bert-base-uncased", "llama-2-7b", "-f", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["schema_version"] == SCHEMA_VERSION
    assert [Recipe.model_validate({k: v for k, v in r.items() if k != "sites_summary"}) for r in data["recipes"]] == [
        kb.recipes["bert-base"],
        kb.recipes["llama-2-7b"],
    ]


def test_recipes_show_without_sites_says_no_dropout(runner):
    result = runner.invoke(app, ["recipes", "show", "resnet50", "-f", "markdown"])
    assert result.exit_code == 0
    assert "No dropout anywhere in this configuration." in result.stdout
    assert "We do not use dropout" in result.stdout


def test_recipes_show_unknown_name_exits_1_with_close_matches(runner):
    result = runner.invoke(app, ["recipes", "show", "vit-bb-16"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: no reference recipe named 'vit-bb-16'", lines[1]]
    assert lines[1].startswith("hint: did you mean") and "'vit-b-16'" in lines[1]


def test_recipes_commands_never_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from advisor.cli import app\n"
        "r = CliRunner()\n"
        "cases = (['recipes', 'list'], ['recipes', 'show', 'gat'], ['recipes', 'show', 'vit-b-16', '-f', 'json'])\n"
        "for args in cases:\n"
        "    assert r.invoke(app, args).exit_code == 0, args\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
