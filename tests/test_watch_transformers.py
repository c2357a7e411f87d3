"""advisor.watch on real transformers models built from small configs (no weights are downloaded).

BERT hands ``self.dropout.p`` of its attention layer to an attention function (``sdpa`` or ``eager``); GPT-2
does the same with ``attn_dropout``; LLaMA keeps a float ``attention_dropout``. The watcher must link these
rates to their holders in both wrong modes, and stay silent in correct loops.
"""

from __future__ import annotations

import pytest
import torch

from advisor.audit.watch import OFF_IN_TRAINING, ON_IN_EVALUATION, watch

transformers = pytest.importorskip("transformers")

IDS = torch.randint(0, 100, (2, 12))


def bert(impl: str):
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        attn_implementation=impl,
    )
    return transformers.BertForSequenceClassification(config)


def gpt2(impl: str):
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, attn_implementation=impl)
    return transformers.GPT2LMHeadModel(config)


def llama():
    config = transformers.LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        attention_dropout=0.1,
    )
    return transformers.LlamaForCausalLM(config)


MODELS = {
    "bert-sdpa": (lambda: bert("sdpa"), "bert.encoder.layer.0.attention.self.dropout"),
    "bert-eager": (lambda: bert("eager"), "bert.encoder.layer.0.attention.self.dropout"),
    "gpt2-sdpa": (lambda: gpt2("sdpa"), "transformer.h.0.attn.attn_dropout"),
    "llama": (llama, "model.layers.0.self_attn.attention_dropout"),
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", list(MODELS))
def test_evaluation_in_train_mode_reports_the_attention_rate_holder(name: str) -> None:
    build, holder = MODELS[name]
    model = build().train()
    w = watch(model, warn=False)
    with w, torch.no_grad():
        model(IDS)
    assert (ON_IN_EVALUATION, holder) in [(e.kind, e.module) for e in w.events]


@pytest.mark.parametrize("name", list(MODELS))
def test_training_in_eval_mode_reports_the_attention_rate_holder(name: str) -> None:
    # from_pretrained() returns models in eval mode; a loop that never calls train() trains without dropout
    build, holder = MODELS[name]
    model = build().eval()
    w = watch(model, warn=False)
    with w:
        model(IDS).logits.sum().backward()
    assert (OFF_IN_TRAINING, holder) in [(e.kind, e.module) for e in w.events]


@pytest.mark.parametrize("name", list(MODELS))
def test_correct_loop_reports_nothing(name: str) -> None:
    build, _ = MODELS[name]
    model = build()
    w = watch(model, warn=False)
    with w:
        model.train()
        model(IDS).logits.sum().backward()
        model.eval()
        with torch.no_grad():
            model(IDS)
        model(IDS)  # validation without no_grad: no backward, no report
    assert w.events == []


def test_every_bert_dropout_is_reported_in_no_grad_evaluation() -> None:
    model = bert("sdpa").train()
    w = watch(model, warn=False)
    with w, torch.no_grad():
        model(IDS)
    expected = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert {e.module for e in w.events} == expected
