"""Models from transformers, built from small configs (no weights), audit with no warning.

Their dropout is placed by the library and must not be flagged; the two real upstream defects the audit
finds are reported as info, naming transformers as the place to fix them: ALBERT's AlbertLayer builds a
dropout for its feed-forward output and never calls it, and Falcon's attention (rotary, no ALiBi) never
applies attention_dropout (SDPA gets dropout_p=0.0). ``include_third_party`` turns them back into warnings.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from advisor.audit import load
from advisor.audit.api import audit

T = pytest.importorskip("transformers")

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
RATES = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def ids() -> torch.Tensor:
    return torch.randint(0, 100, (2, 8))


def seq2seq() -> dict[str, torch.Tensor]:
    return {"input_ids": ids(), "decoder_input_ids": ids()}


BART = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2)
BART_FFN = dict(encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, attention_dropout=0.1, activation_dropout=0.1)
WAV2VEC2 = dict(conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16)

MODELS = {
    "bert": (lambda: T.BertModel(T.BertConfig(vocab_size=100, **SMALL)), ids),
    "bert-classifier": (lambda: T.BertForSequenceClassification(T.BertConfig(vocab_size=100, **SMALL)), ids),
    "roberta": (lambda: T.RobertaModel(T.RobertaConfig(vocab_size=100, **SMALL)), ids),
    "distilbert": (
        lambda: T.DistilBertModel(T.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=100)),
        ids,
    ),
    "electra": (lambda: T.ElectraModel(T.ElectraConfig(embedding_size=16, vocab_size=100, **SMALL)), ids),
    "gpt2": (
        lambda: T.GPT2LMHeadModel(
            T.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, bos_token_id=0, eos_token_id=0)
        ),
        ids,
    ),
    "llama": (
        lambda: T.LlamaForCausalLM(
            T.LlamaConfig(vocab_size=100, num_key_value_heads=2, attention_dropout=0.1, **SMALL)
        ),
        ids,
    ),
    "mistral": (
        lambda: T.MistralForCausalLM(
            T.MistralConfig(vocab_size=100, num_key_value_heads=2, attention_dropout=0.1, **SMALL)
        ),
        ids,
    ),
    "t5": (
        lambda: T.T5ForConditionalGeneration(
            T.T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=100)
        ),
        seq2seq,
    ),
    "bart": (lambda: T.BartForConditionalGeneration(T.BartConfig(**BART, **BART_FFN)), seq2seq),
    "vit": (
        lambda: T.ViTForImageClassification(T.ViTConfig(image_size=32, patch_size=8, **RATES, **SMALL)),
        lambda: torch.randn(2, 3, 32, 32),
    ),
    "wav2vec2": (
        lambda: T.Wav2Vec2Model(T.Wav2Vec2Config(num_conv_pos_embedding_groups=2, **WAV2VEC2, **SMALL)),
        lambda: torch.randn(2, 400),
    ),
}

#: the real upstream defects: model -> modules whose dropout never runs
UPSTREAM = {
    "albert": (
        lambda: T.AlbertModel(T.AlbertConfig(vocab_size=100, embedding_size=16, **RATES, **SMALL)),
        ["encoder.albert_layer_groups.0.albert_layers.0.dropout"],
    ),
    "falcon": (
        lambda: T.FalconModel(
            T.FalconConfig(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, vocab_size=100, attention_dropout=0.1
            )
        ),
        ["h.0.self_attention.attention_dropout", "h.1.self_attention.attention_dropout"],
    ),
}


@pytest.fixture(autouse=True)
def _quiet():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("name", list(MODELS))
def test_library_model_audits_without_findings(name):
    build, make_input = MODELS[name]
    report = audit(build(), make_input())
    assert [(f.slug, f.module, f.message) for f in report.findings] == []
    assert report.sites, "every one of these models has dropout with p > 0"


def test_bert_attention_dropout_is_one_site_with_its_rate_holder():
    report = audit(T.BertModel(T.BertConfig(vocab_size=100, **SMALL)), ids())
    attention = [s for s in report.sites if s.rate_from is not None]
    assert [(s.rate_from, s.p, s.calls) for s in attention] == [
        ("encoder.layer.0.attention.self.dropout", 0.1, 1),
        ("encoder.layer.1.attention.self.dropout", 0.1, 1),
    ]
    assert not any(s.module.endswith("attention.self.dropout") for s in report.sites)


@pytest.mark.parametrize("name", list(UPSTREAM))
def test_upstream_defects_are_info_and_name_transformers(name):
    build, modules = UPSTREAM[name]
    report = audit(build(), ids())
    assert sorted(f.module for f in report.findings) == modules
    for f in report.findings:
        assert (f.slug, f.severity) == ("dropout-never-called", "info")
        assert f.third_party is not None and f.third_party.startswith("transformers ")
        assert "report it upstream or allow it" in f.message


def test_upstream_defects_keep_their_severity_with_include_third_party():
    build, _ = UPSTREAM["albert"]
    report = audit(build(), ids(), include_third_party=True)
    assert {f.severity for f in report.findings} == {"warning"}


def test_wav2vec2_built_on_meta_falls_back_to_the_cpu(tmp_path):
    # masked_spec_embed uses the legacy torch.Tensor(n) constructor: half the model stays on the CPU
    file = tmp_path / "w2v.py"
    file.write_text(
        "import transformers as T\n\n"
        "def build():\n"
        "    cfg = T.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,\n"
        "                           conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),\n"
        "                           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)\n"
        "    return T.Wav2Vec2Model(cfg)\n"
    )
    report = load.audit_target(f"{file}:build", shapes=[(2, 400)])
    assert report.device == "cpu" and report.findings == []
    assert any("legacy torch.Tensor(n)" in n for n in report.notes)
