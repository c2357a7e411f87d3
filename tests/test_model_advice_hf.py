"""`--hf-config`: each dropout field of a local transformers or timm config, with the recipe's value and source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.advise.hf_config import advice_markdown, advice_text, advise_config
from advisor.errors import SpecError


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def fields(advice) -> dict:
    return {f.name: f for f in advice.fields}


def test_bert_fine_tuning_keeps_point_one_everywhere(tmp_path):
    path = write(
        tmp_path,
        {
            "model_type": "bert",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "classifier_dropout": None,
            "num_hidden_layers": 12,
            "hidden_size": 768,
        },
    )
    advice = advise_config(path, regime="fine-tuning")
    f = fields(advice)
    assert advice.recipe == "bert-base"
    assert (f["hidden_dropout_prob"].recommended, f["hidden_dropout_prob"].change) == (0.1, "keep")
    assert (f["attention_probs_dropout_prob"].recommended, f["attention_probs_dropout_prob"].change) == (0.1, "keep")
    # unset: transformers' BERT heads use hidden_dropout_prob (0.1), already the recipe's head rate
    assert (f["classifier_dropout"].recommended, f["classifier_dropout"].change) == (0.1, "keep")
    assert "use hidden_dropout_prob = 0.1 instead" in f["classifier_dropout"].reason
    assert any("eedf5716" in s for s in f["hidden_dropout_prob"].sources)


@pytest.mark.parametrize(("model_type", "hidden", "change"), [("bert", 0.2, "set"), ("roberta", 0.1, "keep")])
def test_an_unset_classifier_rate_is_judged_by_the_hidden_rate_it_falls_back_to(tmp_path, model_type, hidden, change):
    data = {"model_type": model_type, "hidden_dropout_prob": hidden, "classifier_dropout": None}
    f = fields(advise_config(write(tmp_path, data), regime="fine-tuning", base="bert-base"))
    assert f["classifier_dropout"].change == change
    assert f"use hidden_dropout_prob = {hidden:g} instead" in f["classifier_dropout"].reason


def test_bert_pretraining_leaves_the_fine_tuning_head_alone(tmp_path):
    path = write(tmp_path, {"model_type": "bert", "hidden_dropout_prob": 0.1, "classifier_dropout": None})
    f = fields(advise_config(path, regime="pretraining"))
    assert f["classifier_dropout"].recommended is None and "only in fine-tuning" in f["classifier_dropout"].reason


def test_t5_v1_1_is_off_in_pretraining_and_point_one_in_fine_tuning(tmp_path):
    path = write(tmp_path, {"model_type": "t5", "_name_or_path": "google/t5-v1_1-base", "dropout_rate": 0.1})
    pre = advise_config(path, regime="pretraining")
    fine = advise_config(path, regime="fine-tuning")
    assert pre.recipe == fine.recipe == "t5-v1.1-base"
    assert fields(pre)["dropout_rate"].recommended == 0.0 and fields(pre)["dropout_rate"].change == "change"
    assert fields(fine)["dropout_rate"].recommended == 0.1 and fields(fine)["dropout_rate"].change == "keep"


def test_llama_attention_dropout_stays_zero_with_the_no_dropout_source(tmp_path):
    path = write(
        tmp_path, {"model_type": "llama", "attention_dropout": 0.0, "num_hidden_layers": 32, "hidden_size": 4096}
    )
    advice = advise_config(path, regime="fine-tuning")
    f = fields(advice)["attention_dropout"]
    assert advice.recipe and advice.recipe.startswith("llama")
    assert (f.recommended, f.change) == (0.0, "keep") and "no dropout anywhere" in f.reason


def test_gpt2_fields_by_model_type(tmp_path):
    path = write(tmp_path, {"model_type": "gpt2", "embd_pdrop": 0.1, "attn_pdrop": 0.1, "resid_pdrop": 0.1})
    f = fields(advise_config(path))
    assert {f[k].recommended for k in ("embd_pdrop", "attn_pdrop", "resid_pdrop")} == {0.1}


def test_an_unknown_model_type_keeps_the_values_and_says_so(tmp_path):
    path = write(tmp_path, {"model_type": "my-own-net", "hidden_dropout": 0.3})
    advice = advise_config(path)
    assert advice.recipe is None
    assert fields(advice)["hidden_dropout"].change == "keep"
    assert any("No reference recipe" in n for n in advice.notes)


def test_the_lines_set_the_recommended_values(tmp_path):
    path = write(
        tmp_path,
        {
            "model_type": "bert",
            "_name_or_path": "bert-base-uncased",
            "hidden_dropout_prob": 0.2,
            "architectures": ["BertForMaskedLM"],
        },
    )
    advice = advise_config(path, regime="fine-tuning")
    assert advice.code[0].startswith('config = AutoConfig.from_pretrained("bert-base-uncased", ')
    assert "hidden_dropout_prob=0.1" in advice.code[0]
    assert advice.code[1].startswith('model = BertForMaskedLM.from_pretrained("bert-base-uncased", config=config)')
    assert fields(advice)["hidden_dropout_prob"].change == "change"


def test_timm_configs_give_create_model_arguments(tmp_path):
    path = write(tmp_path, {"architecture": "vit_base_patch16_224", "num_classes": 1000})
    advice = advise_config(path, regime="fine-tuning")
    assert advice.library == "timm" and advice.recipe == "vit-b-16"
    assert advice.code[0] == "import timm"
    assert advice.code[1].startswith('model = timm.create_model("vit_base_patch16_224", pretrained=True')
    assert "attn_drop_rate=0" in advice.code[1]


def test_a_base_replaces_the_recipe_found(tmp_path):
    path = write(tmp_path, {"model_type": "bert", "hidden_dropout_prob": 0.1})
    assert advise_config(path, base="roberta-base").recipe == "roberta-base"
    with pytest.raises(SpecError, match="no reference recipe"):
        advise_config(path, base="not-a-model")


def test_text_and_markdown_views(tmp_path):
    path = write(tmp_path, {"model_type": "bert", "hidden_dropout_prob": 0.1})
    advice = advise_config(path)
    text = advice_text(advice)
    assert "Dropout fields of" in text and "hidden_dropout_prob" in text and "AutoConfig" in text
    md = advice_markdown(advice)
    assert md.startswith("# Dropout fields of") and "| `hidden_dropout_prob` |" in md


def test_a_top_level_that_is_not_an_object(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(SpecError, match="JSON object"):
        advise_config(path)
