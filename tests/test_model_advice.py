"""``advisor.recommend_for``: reading real models (every family the engine knows, transformers models built
from small configs, plain-torch torchvision and timm shapes), the plan at module paths, the change list."""

from __future__ import annotations

import importlib.util

import model_advice_zoo as zoo
import pytest
import torch

import advisor
from advisor.errors import SpecError


def plan_for(model, x, **kw):
    torch.manual_seed(0)
    return advisor.recommend_for(model, x, **kw)


def kinds(plan, tag=None):
    return [layer.kind for layer in plan.layers if tag is None or tag in layer.tags]


def change(plan, module_path):
    return next(c for c in plan.changes if c.module_path == module_path)


# ---- reading each family ------------------------------------------------------------------------


def test_mlp_is_read_with_its_hidden_layers():
    plan = plan_for(zoo.MLP(), zoo.features())
    spec = plan.inferred.spec
    assert (spec["arch"], spec["layers"], spec["width"], spec["activation"]) == ("mlp", 2, 64, "relu")
    assert kinds(plan) == ["input", "linear", "activation", "linear", "activation", "output"]
    assert [layer.path for layer in plan.layers[1:]] == ["fc1", "act1", "fc2", "act2", "out"]


def test_batchnorm_is_read_as_a_feature():
    plan = plan_for(zoo.BatchNormMLP(), zoo.features())
    assert plan.inferred.spec["batch_norm"] is True
    assert "batchnorm" in kinds(plan, "hidden")


def test_selu_network_keeps_its_alpha_dropout():
    plan = plan_for(zoo.SNN(), zoo.features(), samples=5_000)
    assert plan.inferred.spec["activation"] == "selu"
    assert {c.kind for c in plan.changes} == {"alpha-dropout"}


def test_plain_cnn_is_read_with_its_head():
    plan = plan_for(zoo.SmallCNN(), zoo.image(2, 16))
    spec = plan.inferred.spec
    assert (spec["arch"], spec["layers"], spec["pooling"], spec["head"], spec["fc_layers"]) == (
        "cnn",
        2,
        "max",
        "fc",
        1,
    )
    assert kinds(plan, "conv") == ["conv", "activation", "pool"] * 2
    assert kinds(plan, "head") == ["flatten", "linear", "activation"]


def test_vgg16_shape_is_recognised_by_its_structure():
    plan = plan_for(zoo.VGG(), zoo.image(2, 32))
    spec = plan.inferred.spec
    assert (spec["layers"], spec["fc_layers"], spec["batch_norm"]) == (13, 2, False)
    assert plan.inferred.recipe == "vgg16"
    assert "structure" in (plan.inferred.recipe_how or "")


def test_resnet_shortcut_convolutions_are_not_on_the_main_path():
    plan = plan_for(zoo.ResNet(), zoo.image(2, 32))
    spec = plan.inferred.spec
    assert (spec["arch"], spec["layers"], spec["batch_norm"], spec["wide"]) == ("resnet", 8, True, False)
    assert not any("downsample" in layer.path for layer in plan.layers)
    assert kinds(plan).count("residual-add") == 8
    # in each block the add follows the second BatchNorm: conv, bn, act (mid), conv, bn, add, act (post)
    block = [layer for layer in plan.layers if layer.block == 1]
    assert [layer.kind for layer in block] == [
        "conv",
        "batchnorm",
        "activation",
        "conv",
        "batchnorm",
        "residual-add",
        "activation",
    ]
    assert [layer.tags for layer in block][2] == ["branch-mid"]


def test_batchnorm_resnet_gets_no_dropout_inside_its_blocks():
    plan = plan_for(zoo.ResNet(), zoo.image(2, 32), samples=1_280_000)
    assert not [s for s in plan.sites if s.block is not None]
    assert not [c for c in plan.changes if c.action == "add" and c.module_path.startswith("layer")]


def test_wide_resnet_is_read_from_its_dropout_between_convolutions():
    plan = plan_for(zoo.WideResNet(), zoo.image(2, 16), samples=50_000)
    assert plan.inferred.spec["wide"] is True
    keep = [c for c in plan.changes if c.module_path.endswith(".dropout")]
    assert [c.where for c in keep] == [
        "after relu() in blocks.0.forward, before blocks.0.conv2 (Conv2d)",
        "after relu() in blocks.1.forward, before blocks.1.conv2 (Conv2d)",
    ]


def test_efficientnet_drop_path_sits_before_the_residual_add():
    plan = plan_for(zoo.EfficientNetish(), zoo.image(2, 32))
    assert plan.inferred.spec["arch"] == "resnet"
    # five MBConv blocks, two of them (stride 2 or new width) without a shortcut: all five are blocks
    assert plan.inferred.spec["layers"] == 5
    assert plan.inferred.evidence["layers"] == "5 residual block(s), 3 of them with a shortcut"
    drop_path = [c for c in plan.changes if c.kind == "drop-path"]
    assert drop_path
    assert all(c.where.endswith(f"before add() in {c.module_path.rsplit('.', 1)[0]}.forward") for c in drop_path)
    head = change(plan, "dropout")
    assert (
        head.where == "after global_pool (AdaptiveAvgPool2d) + flatten() in <root>.forward, before classifier (Linear)"
        or head.where.endswith("before classifier (Linear)")
    )


def test_lstm_language_model_is_read_per_layer():
    plan = plan_for(zoo.LSTMLM(), zoo.tokens())
    spec = plan.inferred.spec
    assert (spec["arch"], spec["cell"], spec["layers"], spec["width"], spec["rnn_task"]) == ("rnn", "lstm", 2, 32, "lm")
    rnn = [layer for layer in plan.layers if layer.kind == "rnn-layer"]
    assert [layer.path for layer in rnn] == ["rnn", "rnn"]
    between = change(plan, "rnn")
    assert between.where == "after rnn (LSTM), before rnn (LSTM)"


def test_gru_classifier_on_float_sequences():
    plan = plan_for(zoo.GRUClassifier(), torch.randn(2, 5, 8))
    spec = plan.inferred.spec
    assert (spec["arch"], spec["cell"], spec["rnn_task"], spec["embeddings"]) == ("rnn", "gru", "classifier", False)


def test_torch_transformer_encoder_is_post_norm_with_four_sites_per_layer():
    plan = plan_for(zoo.TinyEncoder(), zoo.tokens(), samples=5_000)
    spec = plan.inferred.spec
    assert (spec["arch"], spec["transformer"], spec["norm"], spec["layers"]) == ("transformer", "encoder", "post", 2)
    today = {c.module_path for c in plan.changes if c.existing}
    assert {
        "encoder.layers.0.self_attn",
        "encoder.layers.0.dropout1",
        "encoder.layers.0.dropout",
        "encoder.layers.0.dropout2",
    } <= today


def test_gpt_shape_is_a_pre_norm_decoder():
    plan = plan_for(zoo.TinyGPT(), zoo.tokens(vocab=64))
    spec = plan.inferred.spec
    assert (spec["transformer"], spec["norm"]) == ("decoder", "pre")
    assert kinds(plan)[:4] == ["input", "embedding", "positional-encoding", "layernorm"]
    sdpa = change(plan, "h.0")
    assert sdpa.kind == "attention-dropout" and sdpa.p_from == 0.1


def test_llama_shape_is_recognised_by_its_signature():
    plan = plan_for(zoo.TinyLlama(), zoo.tokens(vocab=64))
    assert plan.inferred.recipe is not None and plan.inferred.recipe.startswith("llama")
    assert "rotary" in (plan.inferred.recipe_how or "")
    assert "positional-encoding" not in kinds(plan)
    gate = [layer for layer in plan.layers if "gate_proj" in layer.label]
    assert gate and "up_proj" in gate[0].label  # the gated FFN's two input projections are one operation


def test_vit_shape_reads_a_patch_embedding_and_drop_path_holders():
    plan = plan_for(zoo.ViT(), zoo.image(2, 16), samples=50_000)
    spec = plan.inferred.spec
    assert (spec["arch"], spec["modality"], spec["norm"]) == ("transformer", "image", "pre")
    assert plan.layers[1].kind == "embedding" and plan.layers[1].path == "patch_embed"
    # timm's attention reads attn_drop.p: a rate holder, never called, not a second site
    assert not [c for c in plan.changes if c.module_path.endswith("attn_drop") and c.action == "remove"]


def test_gcn_is_read_as_graph_convolutions():
    plan = plan_for(zoo.GCN(), zoo.graph_inputs())
    spec = plan.inferred.spec
    assert (spec["arch"], spec["gnn"], spec["layers"]) == ("gnn", "gcn", 2)
    assert kinds(plan) == ["input", "graph-conv", "activation", "output"]


def test_gat_is_read_with_its_coefficients():
    plan = plan_for(zoo.GAT(), zoo.graph_inputs())
    assert plan.inferred.spec["gnn"] == "gat"
    layer = ["linear", "attention-weights", "attention"]  # W·h, the coefficients, the values the sum reads
    assert kinds(plan, "gat") == [*layer, "graph-conv", *layer, "output"]
    # the dropout on W·h feeds the aggregation's values: it sits before the sum, whatever the order it ran in
    values = [c for c in plan.changes if c.where.startswith("after values(W·h) in l1.forward")]
    assert len(values) == 1 and values[0].p_from == 0.6


# ---- transformers models built from small configs -----------------------------------------------

needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="transformers is in the dev extra"
)


def _transformers():
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


def bert():
    transformers = _transformers()
    cfg = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return transformers.BertForSequenceClassification(cfg), zoo.tokens(vocab=100)


def gpt2():
    transformers = _transformers()
    cfg = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    return transformers.GPT2LMHeadModel(cfg), zoo.tokens(vocab=100)


def llama():
    transformers = _transformers()
    cfg = transformers.LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(cfg), zoo.tokens(vocab=100)


@needs_transformers
def test_bert_is_a_post_norm_encoder_recognised_by_its_model_type():
    model, x = bert()
    plan = plan_for(model, x, regime="fine-tuning", samples=8_000)
    spec = plan.inferred.spec
    assert (spec["transformer"], spec["norm"], spec["layers"], spec["width"]) == ("encoder", "post", 2, 32)
    assert plan.inferred.recipe == "bert-base"
    assert "model_type 'bert'" in (plan.inferred.recipe_how or "")


@needs_transformers
def test_bert_attention_dropout_is_one_site_read_through_its_rate_holder():
    model, x = bert()
    plan = plan_for(model, x, regime="fine-tuning", samples=8_000)
    attn = change(plan, "bert.encoder.layer.0.attention.self")
    assert attn.kind == "attention-dropout" and attn.p_from == 0.1
    assert attn.where.startswith("after bert.encoder.layer.0.attention.self (F.scaled_dot_product_attention)")
    # the nn.Dropout that only holds the rate is not a second site of its own
    assert not [c for c in plan.changes if c.module_path == "bert.encoder.layer.0.attention.self.dropout"]


@needs_transformers
def test_gpt2_is_a_pre_norm_decoder_with_conv1d_projections():
    model, x = gpt2()
    plan = plan_for(model, x)
    spec = plan.inferred.spec
    assert (spec["transformer"], spec["norm"]) == ("decoder", "pre")
    assert plan.inferred.recipe == "gpt2"
    ffn = [layer for layer in plan.layers if layer.block == 0 and "ffn-out" in layer.tags]
    assert [layer.path for layer in ffn] == ["transformer.h.0.mlp.c_proj"]


@needs_transformers
def test_llama_reads_rotary_positions_and_its_attention_dropout_attribute():
    model, x = llama()
    plan = plan_for(model, x)
    assert plan.inferred.recipe is not None and plan.inferred.recipe.startswith("llama")
    assert "positional-encoding" not in kinds(plan)
    assert kinds(plan).count("attention-weights") == 2


# ---- the plan and the change list ---------------------------------------------------------------


def test_sites_name_the_modules_on_each_side():
    plan = plan_for(zoo.VGG(), zoo.image(2, 32), samples=1_280_000)
    head = [s for s in plan.sites if s.after_path == "classifier.1"]
    assert head and head[0].before_path == "classifier.3"
    assert (head[0].after_class, head[0].before_class) == ("ReLU", "Linear")


def test_json_has_the_documented_fields():
    plan = plan_for(zoo.VGG(), zoo.image(2, 32))
    data = plan.model_dump(mode="json")
    assert data["schema_version"] == 1
    assert {"sites", "changes", "avoid", "notes", "inferred", "layers"} <= set(data)
    assert {"module_path", "after_path", "before_path"} <= set(data["sites"][0])
    assert {"action", "p_from", "p_to", "how", "where"} <= set(data["changes"][0])


def test_flags_override_what_was_read_and_say_so():
    plan = plan_for(zoo.BatchNormMLP(), zoo.features(), overrides={"batch_norm": False, "width": 128})
    assert plan.inferred.spec["batch_norm"] is False
    assert plan.inferred.overridden == ["batch_norm", "width"]


def test_base_none_turns_recognition_off():
    plan = plan_for(zoo.VGG(), zoo.image(2, 32), base="none")
    assert plan.inferred.recipe is None


def test_a_base_of_another_family_is_a_spec_error():
    with pytest.raises(SpecError, match="gpt2 is a transformer"):
        plan_for(zoo.VGG(), zoo.image(2, 32), base="gpt2")


def test_an_unknown_base_is_a_spec_error_with_suggestions():
    with pytest.raises(SpecError, match="no reference recipe named 'vgg-17'") as info:
        plan_for(zoo.VGG(), zoo.image(2, 32), base="vgg-17")
    assert info.value.hint


def test_a_model_the_tracer_cannot_read_inside_still_gets_a_plan_and_says_what_it_skipped():
    x, adj = zoo.graph_inputs()
    plan = plan_for(zoo.OpaqueGraphNet(), (x, adj))
    assert any("l1 (OpaqueGATLayer)" in s for s in plan.skipped)
    assert plan.changes  # the dropout it could read is still compared with the plan


def test_layers_never_called_are_listed_as_skipped():
    class WithAux(zoo.MLP):
        def __init__(self) -> None:
            super().__init__()
            self.aux = torch.nn.Linear(64, 2)

    plan = plan_for(WithAux(), zoo.features())
    assert any("aux (Linear)" in s for s in plan.skipped)


def test_the_model_is_left_as_it_was_found():
    model = zoo.MLP()
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    advisor.recommend_for(model, zoo.features())
    assert not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert [n for n, _ in model.named_modules()] == ["", "fc1", "act1", "drop1", "fc2", "act2", "drop2", "out"]


def test_meta_device_models_are_planned_without_weights():
    with torch.device("meta"):
        model = zoo.TinyGPT()
    plan = plan_for(model, zoo.tokens(vocab=64).to("meta"))
    assert plan.device == "meta"
    assert plan.inferred.spec["transformer"] == "decoder"


def test_import_advisor_stays_torch_free():
    import subprocess
    import sys

    code = "import sys, advisor; advisor.recommend_for; advisor.apply_plan; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_a_torchscript_module_is_refused_with_a_hint():
    from advisor.errors import UsageError

    scripted = torch.jit.script(zoo.MLP())
    with pytest.raises(UsageError, match="frozen graph") as info:
        advisor.recommend_for(scripted, zoo.features())
    assert "eager" in (info.value.hint or "")


def test_something_else_than_a_module_is_refused():
    from advisor.errors import UsageError

    with pytest.raises(UsageError, match=r"needs a torch\.nn\.Module"):
        advisor.recommend_for(lambda x: x, zoo.features())


def test_one_rate_attribute_shared_by_places_that_need_different_rates_is_left_to_the_user():
    """Input dropout (0.2 or lower) and hidden dropout (0.5) both read self.p: no single value serves both."""
    plan = plan_for(zoo.SharedRateMLP(), zoo.features(), samples=5_000)
    by_action = {c.action: c for c in plan.changes}
    assert set(by_action) == {"keep", "cannot"}
    assert by_action["keep"].p_to == 0.5 and by_action["cannot"].p_to < 0.5
    assert "<root>.p sets the rate of several places" in by_action["cannot"].how
    assert not by_action["cannot"].steps


# ---- the outcomes the issue names -----------------------------------------------------------------


def test_vgg16_from_scratch_on_imagenet_sized_data_keeps_its_two_fc_dropouts():
    plan = plan_for(zoo.VGG(), zoo.image(2, 32), samples=1_281_167, regime="scratch")
    assert plan.inferred.recipe == "vgg16"
    assert [(c.action, c.module_path, c.p_to) for c in plan.changes] == [
        ("keep", "classifier.2", 0.5),
        ("keep", "classifier.5", 0.5),
    ]


@needs_transformers
def test_bert_fine_tune_keeps_point_one_everywhere_it_has_dropout():
    model, x = bert()
    plan = plan_for(model, x, regime="fine-tuning", samples=8_000)
    assert plan.counts() == {"keep": 8, "change": 0, "add": 0, "remove": 0, "cannot": 0}
    assert {c.p_to for c in plan.changes} == {0.1}


@needs_transformers
def test_llama_from_transformers_gets_no_dropout():
    model, x = llama()
    plan = plan_for(model, x, regime="fine-tuning", samples=50_000)
    assert plan.sites == [] and plan.changes == []


def test_llama_shaped_plain_torch_decoder_gets_no_dropout():
    plan = plan_for(zoo.TinyLlama(), zoo.tokens(vocab=64), samples=1_000_000)
    assert plan.sites == [] and plan.changes == []
    assert any("no dropout" in n.text for n in plan.notes)


@needs_transformers
def test_bart_is_a_post_norm_encoder_decoder_whose_embedding_sums_are_not_residual_adds():
    transformers = _transformers()
    cfg = transformers.BartConfig(
        vocab_size=100,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
    )
    x = zoo.tokens(vocab=100)
    plan = plan_for(
        transformers.BartForConditionalGeneration(cfg),
        {"input_ids": x, "decoder_input_ids": x},
        regime="fine-tuning",
        samples=8_000,
    )
    spec = plan.inferred.spec
    assert (spec["transformer"], spec["norm"], spec["layers"]) == ("encoder-decoder", "post", 2)
    assert kinds(plan).count("residual-add") == 2 * 2 + 2 * 3  # encoder: attention, FFN; decoder: + cross
    assert kinds(plan).count("positional-encoding") == 2
    assert plan.inferred.recipe == "bart-large"


@needs_transformers
def test_t5_reads_relative_positions_and_keeps_its_dropout():
    transformers = _transformers()
    cfg = transformers.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)
    x = zoo.tokens(vocab=100)
    plan = plan_for(
        transformers.T5ForConditionalGeneration(cfg),
        {"input_ids": x, "decoder_input_ids": x},
        regime="fine-tuning",
        samples=8_000,
    )
    spec = plan.inferred.spec
    assert (spec["transformer"], spec["norm"], spec["positions"]) == ("encoder-decoder", "pre", "relative")
    assert {c.action for c in plan.changes} == {"keep"}


def test_a_resnet_50_shaped_net_is_recognised_by_its_structure():
    plan = plan_for(zoo.ResNet(blocks=(3, 4, 6, 3), width=4), zoo.image(2, 32), samples=1_280_000)
    assert plan.inferred.spec["layers"] == 16
    assert plan.inferred.recipe == "resnet-50"


def test_an_inverted_residual_net_is_not_resnet_50_by_structure_and_keeps_its_head_dropout():
    plan = plan_for(zoo.MNASNetish(), zoo.image(2, 32), regime="fine-tuning", samples=50_000)
    spec = plan.inferred.spec
    assert (spec["arch"], spec["layers"], spec["activation"], spec["head"]) == ("resnet", 16, "relu", "gap")
    assert "inverted_residual" in plan.inferred.evidence
    assert plan.inferred.recipe is None
    assert change(plan, "classifier.0").action == "keep"


def test_an_auxiliary_head_is_left_out_of_the_plan_and_its_dropout_as_it_is():
    plan = plan_for(zoo.AuxHeadNet(), zoo.image(2, 16), samples=50_000, overfitting="strong")
    assert not [layer for layer in plan.layers if layer.path.startswith("aux")]
    assert not [c for c in plan.changes if c.module_path.startswith("aux")]
    assert change(plan, "dropout").action in ("keep", "change")
    assert any(s.startswith("auxiliary heads that feed a second output") and "aux.4 p=0.7" in s for s in plan.skipped)


def test_a_timm_model_of_an_architecture_without_a_recipe_is_not_guessed_from_its_structure():
    model = zoo.ResNet(blocks=(3, 4, 6, 3), width=4)
    model.pretrained_cfg = {"architecture": "resnet50d"}  # timm's ResNet-D: another stem and downsampling
    plan = plan_for(model, zoo.image(2, 32), samples=1_280_000)
    assert plan.inferred.spec["layers"] == 16
    assert plan.inferred.recipe is None


def test_a_rate_the_plan_states_to_three_decimals_is_kept_not_changed():
    model = zoo.VGG()
    model.classifier[2].p = 0.5 + 1 / 3000  # 0.50033: the plan's 0.5 to three decimals
    model.classifier[5].p = 0.51
    plan = plan_for(model, zoo.image(2, 32), samples=1_281_167, regime="scratch")
    assert [(c.action, c.module_path) for c in plan.changes] == [("keep", "classifier.2"), ("change", "classifier.5")]


def test_a_plan_without_sites_that_keeps_todays_dropout_says_so():
    from advisor.advise.model_view import plan_text

    plan = plan_for(zoo.MLP(), zoo.features(), regime="fine-tuning", samples=5_000, base=None)
    assert plan.sites == [] and {c.action for c in plan.changes} == {"keep"}
    text = plan_text(plan)
    assert "dropout site(s) of today stay as they are" in text
    assert "puts no dropout in this model" not in text


def test_convnext_shape_is_a_layernorm_resnet_that_keeps_its_drop_path():
    plan = plan_for(zoo.ConvNeXtish(), zoo.image(2, 64), regime="fine-tuning", samples=50_000)
    spec = plan.inferred.spec
    assert (spec["arch"], spec["batch_norm"], spec["layers"]) == ("resnet", False, 18)
    assert plan.inferred.recipe == "convnext-t"
    assert [(c.action, c.kind) for c in plan.changes] == [("keep", "drop-path")] * 17  # block 1 runs at p = 0


@needs_transformers
def test_a_recipe_recognised_at_another_size_points_to_base_none():
    model, x = bert()
    plan = plan_for(model, x, regime="fine-tuning", samples=8_000)
    texts = [n.text for n in plan.notes]
    assert any("differs in size" in t and "pass --base none" in t for t in texts)
    assert not any("leave out --base" in t for t in texts)


@needs_transformers
def test_a_transformers_bert_is_not_told_about_pytorchs_transformer_layers():
    model, x = bert()
    plan = plan_for(model, x, regime="fine-tuning", samples=8_000)
    assert plan.sites
    assert not [s.module for s in plan.sites if s.module.startswith(("nn.Transformer", "nn.MultiheadAttention"))]
    assert not [n for n in plan.notes if "pytorch-transformer-layers" in n.citations]


def test_a_model_built_from_pytorchs_transformer_layers_keeps_the_note_on_their_one_dropout_argument():
    plan = plan_for(zoo.TinyEncoder(), zoo.tokens(), samples=5_000, overfitting="mild")
    by_path = {s.module_path: s.module for s in plan.sites}
    assert by_path["encoder.layers.0.dropout1"] == "nn.Dropout"
    assert by_path["encoder.layers.0.self_attn"] == "nn.MultiheadAttention(dropout=)"
    has_ffn_dropout = "encoder.layers.0.dropout" in by_path
    noted = [n for n in plan.notes if "pytorch-transformer-layers" in n.citations]
    assert bool(noted) == (not has_ffn_dropout)  # the note is for plans without the feed-forward dropout


class FunctionalDropout(torch.nn.Module):
    """F.dropout without training=: it keeps dropping in eval mode (DRP301)."""

    def __init__(self, training_flag: bool) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(20, 64), torch.nn.Linear(64, 4)
        self.training_flag = training_flag

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        if self.training_flag:
            h = torch.nn.functional.dropout(h, 0.5, training=self.training)
        else:
            h = torch.nn.functional.dropout(h, 0.5)
        return self.fc2(h)


def test_a_site_broken_in_eval_mode_needs_an_edit_not_a_keep():
    x = torch.randn(8, 20)
    broken = advisor.recommend_for(FunctionalDropout(False), x, samples=5000)
    (change,) = [c for c in broken.changes if c.existing]
    assert change.action == "cannot" and not change.steps
    assert "fix it by hand first (DRP301" in change.how and "training=self.training" in change.how
    fine = advisor.recommend_for(FunctionalDropout(True), x, samples=5000)
    assert [c.action for c in fine.changes if c.existing] == ["keep"]


def test_a_removal_the_auditor_also_flags_says_which_rule():
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4), torch.nn.Dropout(0.3))
    plan = advisor.recommend_for(model, torch.randn(8, 20), samples=60_000)
    (removal,) = [c for c in plan.changes if c.action == "remove"]
    assert removal.module_path == "3" and removal.reason.startswith(
        "The auditor flags it too (DRP303 dropout-after-output)"
    )
