"""advisor.watch: dropout mode bugs seen at run time (shared/facts/dropout-bugs.md cases 3, 4, 5).

Each bug pattern has a must-flag model next to the look-alike that must not be flagged. The rate-holder
models reproduce, in plain torch, the patterns of transformers (BERT's attention hands ``self.dropout.p``
to a helper that calls ``F.dropout(..., training=module.training)``; LLaMA keeps a float
``attention_dropout``) and timm (``F.scaled_dot_product_attention(dropout_p=self.attn_drop.p if
self.training else 0.)``), so they run without those libraries installed.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import advisor
from advisor.audit.watch import (
    OFF_IN_TRAINING,
    ON_IN_EVALUATION,
    DropoutModeWarning,
    Watch,
    frozen,
    watch,
)
from advisor.errors import UsageError

X = torch.randn(4, 8)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def mlp(p: float = 0.5) -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(p), nn.Linear(16, 2))


def kinds(w: Watch) -> list[tuple[str, str]]:
    return [(e.kind, e.module) for e in w.events]


def run(model: nn.Module, step, **kw) -> Watch:
    w = watch(model, warn=False, **kw)
    with w:
        step(model)
    return w


def evaluate_no_grad(m: nn.Module) -> None:
    with torch.no_grad():
        m(X)


def train_step(m: nn.Module) -> None:
    m(X).sum().backward()


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(torch.relu(self.fc(x)))


class Classifier(nn.Module):
    """A pretrained backbone and a new head, as in fine-tuning."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


# ---- evaluation without model.eval() (case 3) -----------------------------------------------------


def test_train_mode_under_no_grad_is_flagged_with_path_and_rate() -> None:
    w = run(mlp(0.5), evaluate_no_grad)
    [event] = w.events
    assert (event.kind, event.module, event.p, event.kb_id) == (ON_IN_EVALUATION, "2", 0.5, "DRP320")
    assert event.context == "under torch.no_grad()"


def test_train_mode_under_inference_mode_names_inference_mode() -> None:
    def step(m: nn.Module) -> None:
        with torch.inference_mode():
            m(X)

    assert [e.context for e in run(mlp(), step).events] == ["under torch.inference_mode()"]


def test_eval_mode_under_no_grad_is_not_flagged() -> None:
    model = mlp().eval()
    assert run(model, evaluate_no_grad).events == []


def test_message_names_the_fix_and_the_knowledge_entry() -> None:
    [event] = run(mlp(0.5), evaluate_no_grad).events
    assert "model.eval()" in event.message
    assert "dropout-advisor explain DRP320" in event.message
    assert "p=0.5" in event.message


def test_dropout_at_rate_zero_is_not_flagged() -> None:
    assert run(mlp(0.0), evaluate_no_grad).events == []


# ---- dropout off in a training step (cases 4 and 5) -----------------------------------------------


def test_eval_mode_in_a_training_backward_is_flagged() -> None:
    w = run(mlp(0.3).eval(), train_step)
    [event] = w.events
    assert (event.kind, event.module, event.kb_id) == (OFF_IN_TRAINING, "2", "DRP321")
    assert "model.train()" in event.message


def test_train_mode_training_step_is_not_flagged() -> None:
    assert run(mlp(), train_step).events == []


def test_validation_forward_without_no_grad_is_not_flagged() -> None:
    # eval mode, gradients on, but no backward: a validation pass, not a training step
    assert run(mlp().eval(), lambda m: m(X)).events == []


def test_input_gradients_in_eval_mode_are_not_flagged() -> None:
    # saliency / adversarial examples: autograd.grad reaches the input, never a parameter's .grad
    def step(m: nn.Module) -> None:
        x = X.clone().requires_grad_()
        torch.autograd.grad(m(x).sum(), x)

    assert run(mlp().eval(), step).events == []


def test_pretrained_backbone_left_in_eval_is_flagged() -> None:
    # from_pretrained() returns eval mode; model.train() on a wrapper that Lightning keeps per-module
    model = Classifier()
    model.backbone.eval()
    assert kinds(run(model, train_step)) == [(OFF_IN_TRAINING, "backbone.drop")]


def test_frozen_backbone_in_eval_is_not_flagged() -> None:
    model = Classifier()
    model.backbone.eval().requires_grad_(False)
    assert run(model, train_step).events == []


def test_frozen_block_between_trainable_parts_is_not_flagged() -> None:
    # prompt-tuning shape: gradients flow *through* a frozen block to a trainable module before it
    model = nn.Sequential(nn.Linear(8, 8), Backbone(), nn.Linear(16, 2))
    model[1].eval().requires_grad_(False)
    assert run(model, train_step).events == []


def test_frozen_mark_suppresses_dropout_off_in_training() -> None:
    model = Classifier()
    frozen(model.backbone.eval(), "feature extractor kept in eval on purpose")
    assert run(model, train_step).events == []


def test_frozen_mark_does_not_hide_dropout_on_in_evaluation() -> None:
    model = Classifier()
    frozen(model.backbone)
    assert (ON_IN_EVALUATION, "backbone.drop") in kinds(run(model, evaluate_no_grad))


def test_frozen_returns_the_module_and_rejects_other_objects() -> None:
    module = nn.Linear(2, 2)
    assert advisor.frozen(module) is module
    with pytest.raises(UsageError):
        frozen("backbone")  # type: ignore[arg-type]


# ---- EMA / teacher copies ------------------------------------------------------------------------


def test_teacher_copy_in_train_mode_without_no_grad_is_flagged() -> None:
    student = mlp(0.4)
    teacher = copy.deepcopy(student).requires_grad_(False)
    w = watch({"student": student, "teacher": teacher}, warn=False)
    with w:
        target = teacher(X)  # gradients on, nothing to differentiate: an evaluation in train mode
        (student(X) - target).pow(2).sum().backward()
    assert kinds(w) == [(ON_IN_EVALUATION, "teacher.2")]
    assert w.events[0].context == "in a forward whose output requires no gradient"


def test_teacher_copy_in_eval_mode_is_not_flagged() -> None:
    student = mlp(0.4)
    teacher = copy.deepcopy(student).requires_grad_(False).eval()
    w = watch({"student": student, "teacher": teacher}, warn=False)
    with w:
        (student(X) - teacher(X)).pow(2).sum().backward()
    assert w.events == []


def test_several_models_are_labelled_by_class_name() -> None:
    a, b = mlp(), Classifier()
    w = watch(a, b, warn=False)
    with w, torch.no_grad():
        a(X)
        b(X)
    assert {e.module for e in w.events} == {"Sequential.2", "Classifier.backbone.drop", "Classifier.head.0"}


# ---- once per path and kind; the warning itself --------------------------------------------------


def test_warns_once_per_module_path_and_kind() -> None:
    model = Classifier()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with advisor.watch(model), torch.no_grad():
            for _ in range(3):
                model(X)
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["backbone.drop", "head.0"]
    assert all(w.category is DropoutModeWarning for w in caught)


def test_warning_points_at_the_line_that_runs_the_model() -> None:
    model = Classifier()  # its forward is in this file too: the warning names the call, not the forward
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with advisor.watch(model), torch.no_grad():
            line = sys._getframe().f_lineno + 1
            model(X)
    assert {(w.filename, w.lineno) for w in caught} == {(__file__, line)}


def test_warnings_as_errors_raise_from_the_forward_and_keep_the_event() -> None:
    model = mlp()
    w = watch(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DropoutModeWarning)
        with w, torch.no_grad(), pytest.raises(DropoutModeWarning):
            model(X)
    assert len(w.events) == 1


def test_events_serialize_to_plain_dicts() -> None:
    [event] = run(mlp(), evaluate_no_grad).events
    data = event.to_dict()
    assert (data["kind"], data["module"], data["p"]) == (ON_IN_EVALUATION, "2", 0.5)
    assert data["where"].startswith(__file__ + ":")


# ---- suppression ---------------------------------------------------------------------------------


def test_allow_glob_covers_the_module_and_everything_inside() -> None:
    model = Classifier()
    assert kinds(run(model, evaluate_no_grad, allow=["backbone"])) == [(ON_IN_EVALUATION, "head.0")]


def test_allow_with_a_kind_suppresses_only_that_kind() -> None:
    model = Classifier()
    model.head.eval()
    w = watch(model, warn=False, allow=["*:dropout-off-in-training"])
    with w:
        train_step(model)
        with torch.no_grad():
            model(X)
    assert kinds(w) == [(ON_IN_EVALUATION, "backbone.drop")]


def test_allow_accepts_the_knowledge_id_for_a_kind() -> None:
    assert run(mlp(), evaluate_no_grad, allow=["*:DRP320"]).events == []


def test_unknown_kind_in_allow_is_a_usage_error_with_a_suggestion() -> None:
    with pytest.raises(UsageError) as info:
        watch(mlp(), allow=["head:dropout-on-in-eval"])
    assert "dropout-on-in-evaluation" in (info.value.hint or "")


def test_paused_suspends_checks() -> None:
    model = mlp()
    w = watch(model, warn=False)
    with w, w.paused(), torch.no_grad():
        model(X)  # MC dropout sampling on purpose
    assert w.events == []


# ---- what counts as dropout ----------------------------------------------------------------------


def test_multihead_attention_dropout_is_covered() -> None:
    mha = nn.MultiheadAttention(8, 2, dropout=0.2, batch_first=True)
    x = torch.randn(2, 5, 8)
    w = watch(mha, warn=False)
    with w, torch.no_grad():
        mha(x, x, x)
    assert kinds(w) == [(ON_IN_EVALUATION, "<root>")]


def test_lstm_dropout_between_layers_is_covered() -> None:
    lstm = nn.LSTM(8, 8, num_layers=2, dropout=0.3)
    w = watch(lstm, warn=False)
    with w, torch.no_grad():
        lstm(torch.randn(5, 2, 8))
    assert [e.p for e in w.events] == [0.3]


def test_single_layer_lstm_dropout_is_not_flagged() -> None:
    # dropout= has no effect with num_layers=1 (torch warns at construction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lstm = nn.LSTM(8, 8, num_layers=1, dropout=0.3)
    w = watch(lstm, warn=False)
    with w, torch.no_grad():
        lstm(torch.randn(5, 2, 8))
    assert w.events == []


class DropPath(nn.Module):
    """timm's stochastic depth: one Bernoulli draw per sample, off in eval."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = x.new_empty(x.shape[0], 1).bernoulli_(1 - self.drop_prob)
        return x * keep / (1 - self.drop_prob)


def test_drop_path_leaf_is_covered() -> None:
    block = nn.Sequential(nn.Linear(8, 8), DropPath(0.1))
    w = watch(block, warn=False)
    with w, torch.no_grad():
        block(X)
    assert kinds(w) == [(ON_IN_EVALUATION, "1")]


def eager_attention(module: nn.Module, q, k, v, dropout: float = 0.0) -> torch.Tensor:
    """transformers' eager_attention_forward: the layer comes in as ``module``."""
    weights = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return weights @ v


class BertLikeSelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.dropout = nn.Dropout(0.1)  # never called: its rate is handed to the helper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return eager_attention(self, q, k, v, dropout=0.0 if not self.training else self.dropout.p)


class TimmLikeAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.attn_drop = nn.Dropout(0.2)  # rate holder for the fused kernel
        self.proj = nn.Linear(8, 8)
        self.proj_drop = nn.Dropout(0.1)  # called

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        return self.proj_drop(self.proj(y))


class LlamaLikeAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.attention_dropout = 0.1  # a float, no module at all

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return eager_attention(self, q, k, v, dropout=0.0 if not self.training else self.attention_dropout)


SEQ = torch.randn(2, 5, 8)


@pytest.mark.parametrize(
    ("cls", "path"),
    [(BertLikeSelfAttention, "dropout"), (TimmLikeAttention, "attn_drop"), (LlamaLikeAttention, "attention_dropout")],
)
def test_rate_holder_in_train_mode_under_no_grad_is_flagged(cls: type[nn.Module], path: str) -> None:
    model = cls()
    w = watch(model, warn=False)
    with w, torch.no_grad():
        model(SEQ)
    assert (ON_IN_EVALUATION, path) in kinds(w)
    assert next(e for e in w.events if e.module == path).how.startswith(f"rate read by {cls.__name__}")


@pytest.mark.parametrize(
    ("cls", "path"),
    [(BertLikeSelfAttention, "dropout"), (TimmLikeAttention, "attn_drop"), (LlamaLikeAttention, "attention_dropout")],
)
def test_rate_holder_in_eval_mode_in_a_training_backward_is_flagged(cls: type[nn.Module], path: str) -> None:
    model = cls().eval()
    w = watch(model, warn=False)
    with w:
        model(SEQ).sum().backward()
    assert (OFF_IN_TRAINING, path) in kinds(w)


@pytest.mark.parametrize("cls", [BertLikeSelfAttention, TimmLikeAttention, LlamaLikeAttention])
def test_rate_holder_in_correct_modes_is_not_flagged(cls: type[nn.Module]) -> None:
    model = cls()
    w = watch(model, warn=False)
    with w:
        model(SEQ).sum().backward()
        model.eval()
        with torch.no_grad():
            model(SEQ)
    assert w.events == []


class UnusedHolder(nn.Module):
    """A configured dropout that nothing consumes: not a runtime mode bug (the auditor reports it)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.dropout = nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_rate_holder_that_nothing_consumes_is_not_flagged() -> None:
    model = UnusedHolder()
    w = watch(model, warn=False)
    with w, torch.no_grad():
        model(X)
    assert w.events == []


def test_no_function_mode_is_left_active_after_a_failing_forward() -> None:
    model = TimmLikeAttention()
    with watch(model, warn=False), torch.no_grad(), pytest.raises(RuntimeError):
        model(torch.randn(2, 5, 7))  # wrong width: qkv raises inside the recorded owner
    assert torch._C._len_torch_function_stack() == 0


# ---- the watcher leaves the model as it was -------------------------------------------------------


def test_hooks_are_removed_on_exit() -> None:
    model = TimmLikeAttention()
    with watch(model, warn=False):
        pass
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_deep_copy_made_while_watched_is_not_reported_as_the_original() -> None:
    # an EMA copy taken inside the loop: its dropout is not the watched model's dropout
    model = mlp()
    w = watch(model, warn=False)
    with w:
        ema = copy.deepcopy(model)
        with torch.no_grad():
            ema(X)
    assert w.events == []


def test_a_watched_model_can_be_saved_whole(tmp_path) -> None:
    model = mlp()
    with watch(model, warn=False):
        torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert loaded(X).shape == (4, 2)


def test_outputs_are_unchanged_by_watching() -> None:
    model = Classifier()
    torch.manual_seed(1)
    bare = model(X)
    with watch(model, warn=False):
        torch.manual_seed(1)
        watched = model(X)
    assert torch.equal(bare, watched)


# ---- decorator, errors ---------------------------------------------------------------------------


def test_decorator_with_a_model_reports_once_across_calls() -> None:
    model = mlp()
    w = watch(model, warn=False)

    @w
    def evaluate(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    evaluate(X)
    evaluate(X)
    assert len(w.events) == 1
    assert not model[2]._forward_hooks  # nothing left between calls


def test_decorator_without_a_model_watches_module_arguments() -> None:
    w = watch(warn=False)

    @w
    def evaluate(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    evaluate(mlp(), X)
    assert kinds(w) == [(ON_IN_EVALUATION, "2")]


def test_decorator_without_module_arguments_is_a_usage_error() -> None:
    @watch()
    def evaluate(x: torch.Tensor) -> torch.Tensor:
        return x

    with pytest.raises(UsageError):
        evaluate(X)


def test_context_manager_without_a_model_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info, watch():
        pass
    assert "watch(model)" in (info.value.hint or "")


def test_non_module_argument_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        watch("model.pt")  # type: ignore[arg-type]


# ---- static check --------------------------------------------------------------------------------


def test_check_train_reports_eval_mode_dropout_outside_frozen_layers() -> None:
    model = Classifier()
    model.backbone.eval()
    assert [(e.kind, e.module) for e in watch(model, warn=False).check("train")] == [(OFF_IN_TRAINING, "backbone.drop")]


def test_check_eval_reports_train_mode_dropout() -> None:
    model = Classifier().eval()
    model.head.train()
    assert [e.module for e in watch(model, warn=False).check("eval")] == ["head.0"]


def test_check_rejects_an_unknown_expectation() -> None:
    with pytest.raises(UsageError):
        watch(mlp()).check("training")


# ---- import cost ---------------------------------------------------------------------------------


def test_without_torch_watch_is_a_missing_dependency_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError) as info:
        advisor.watch(object())
    assert "pip install" in (info.value.hint or "")


def test_import_advisor_stays_torch_free() -> None:
    code = "import sys, advisor; advisor.watch; advisor.frozen; advisor.watch_callback; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
