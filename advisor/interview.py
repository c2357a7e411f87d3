"""The architecture interview: which questions to ask, in which order, and how to read the answers.

Pure: the question flow is data plus predicates over the answers so far, and :func:`run_interview`
takes the prompt function as an argument, so the CLI can use rich's prompts and tests a script.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from typing import Any

from advisor.errors import SpecError
from advisor.spec import DEFAULTS, build_spec

BACK = "back"

Answers = dict[str, Any]


@dataclass(frozen=True)
class Question:
    field: str
    text: str
    kind: str  # "choice", "int", "count", "bool", "base" (a recipe name)
    choices: tuple[str, ...] = ()
    when: Callable[[Answers], bool] = dc_field(default=lambda a: True)
    optional: bool = False  # blank answer = unknown
    help: str = ""
    options: Callable[[Answers], tuple[str, ...]] | None = None  # choices that depend on earlier answers

    def choices_for(self, answers: Answers) -> tuple[str, ...]:
        return self.options(answers) if self.options is not None else self.choices

    def default(self, answers: Answers) -> Any:
        arch = answers.get("arch")
        if self.field == "overfitting":
            return "unknown"
        if self.field in ("regime",):
            return "scratch"
        if self.field == "uncertainty":
            return False
        if self.field == "input_dtype":
            return "float"
        if arch and self.field in DEFAULTS.get(arch, {}):
            return DEFAULTS[arch][self.field]
        return None


def _arch(*names: str) -> Callable[[Answers], bool]:
    return lambda a: a.get("arch") in names


NO_BASE = "none"


def base_choices(answers: Answers) -> tuple[str, ...]:
    """The recipes of the family chosen so far, then 'none' (a model without a recipe here)."""
    from advisor.knowledge import default_kb

    keys = sorted(r.key for r in default_kb().recipes.values() if r.spec.get("arch") == answers.get("arch"))
    return (*keys, NO_BASE)


def base_fields(answers: Answers) -> set[str]:
    """The answers the chosen base recipe gives (its spec); the interview does not ask them."""
    name = answers.get("base")
    if not name:
        return set()
    from advisor.knowledge import default_kb

    try:
        return set(default_kb().recipe(str(name)).spec)
    except Exception:  # an unknown name is reported where it is parsed, not here
        return set()


#: answers read from the model itself when the user has a model file (see recommend TARGET)
READ_FROM_MODEL = frozenset(
    {
        "layers",
        "width",
        "batch_norm",
        "activation",
        "pooling",
        "head",
        "fc_layers",
        "wide",
        "cell",
        "bidirectional",
        "rnn_task",
        "embeddings",
        "transformer",
        "norm",
        "modality",
        "gnn",
        "params",
        "base",
        "positions",
        "embedding_norm",
    }
)
#: the family answer that means "I already have the model in a file"
MODEL_FILE = "file"


def _has_model(answers: Answers) -> bool:
    return answers.get("arch") == MODEL_FILE


QUESTIONS: tuple[Question, ...] = (
    Question(
        "arch",
        "Which family is the network? (or 'file' if you already have it in a Python file)",
        "choice",
        ("mlp", "cnn", "resnet", "rnn", "transformer", "gnn", MODEL_FILE),
        help="mlp: fully connected; cnn: plain conv net; resnet: BatchNorm/residual CNN (incl. Wide ResNet); "
        "rnn: LSTM/GRU; transformer; gnn: GCN/GAT; file: your model's code, read as `recommend TARGET` does, "
        "so the plan names your own modules",
    ),
    Question(
        "model_file",
        "Where is it? path/to/file.py:ClassName (a class or a function that builds the model)",
        "target",
        when=_has_model,
    ),
    Question(
        "input_shape",
        "An example input shape, batch first (e.g. 8,3,32,32 for images, 8,128 for token ids)?",
        "shape",
        when=_has_model,
    ),
    Question("input_dtype", "Is the input float, or long (token ids)?", "choice", ("float", "long"), when=_has_model),
    Question(
        "regime",
        "Training from scratch, fine-tuning a pretrained model, or large-scale pretraining?",
        "choice",
        ("scratch", "fine-tuning", "pretraining"),
    ),
    Question(
        "base",
        "Which pretrained model are you fine-tuning? ('none' if it is not listed: its own dropout is then kept)",
        "base",
        when=lambda a: a.get("regime") == "fine-tuning",
        optional=True,
        options=base_choices,
        help="a recipe name or alias, e.g. bert-base-uncased; the same as --base",
    ),
    Question(
        "layers",
        "How many layers (hidden layers, conv blocks, residual blocks, recurrent or Transformer layers)?",
        "int",
    ),
    Question("width", "How wide (hidden units, channels, d_model)?", "int"),
    Question("batch_norm", "Does it use BatchNorm?", "bool", when=_arch("mlp", "cnn")),
    Question(
        "activation",
        "Which activation?",
        "choice",
        ("relu", "leaky-relu", "gelu", "silu", "tanh", "sigmoid", "selu", "elu"),
        when=_arch("mlp", "cnn"),
    ),
    Question("pooling", "Pooling after each conv block?", "choice", ("max", "avg", "none"), when=_arch("cnn")),
    Question(
        "head",
        "Classifier head: flatten + fully connected layers (fc), or global average pooling (gap)?",
        "choice",
        ("fc", "gap"),
        when=_arch("cnn"),
    ),
    Question(
        "fc_layers",
        "How many hidden fully connected layers in the head?",
        "count",
        when=lambda a: a.get("arch") == "cnn" and a.get("head", "fc") == "fc",
    ),
    Question("wide", "Is it a Wide ResNet (WRN)?", "bool", when=_arch("resnet")),
    Question("cell", "Which recurrent cell?", "choice", ("lstm", "gru"), when=_arch("rnn")),
    Question("bidirectional", "Bidirectional?", "bool", when=_arch("rnn")),
    Question(
        "rnn_task",
        "What does it do: language model (lm), classifier, or seq2seq decoder?",
        "choice",
        ("lm", "classifier", "seq2seq"),
        when=_arch("rnn"),
    ),
    Question("embeddings", "Does it start from token embeddings?", "bool", when=_arch("rnn")),
    Question(
        "transformer",
        "Encoder, decoder-only, or encoder-decoder?",
        "choice",
        ("encoder", "decoder", "encoder-decoder"),
        when=_arch("transformer"),
    ),
    Question(
        "norm",
        "Pre-norm (LayerNorm before each sub-layer) or post-norm (after the residual add)?",
        "choice",
        ("pre", "post"),
        when=_arch("transformer"),
    ),
    Question(
        "modality",
        "What is the input?",
        "choice",
        ("text", "image", "audio", "sequence", "other"),
        when=_arch("transformer"),
    ),
    Question("gnn", "GCN or GAT?", "choice", ("gcn", "gat"), when=_arch("gnn")),
    Question(
        "samples",
        "How many training examples (e.g. 50k, 1.2M; tokens for a language model)? Blank if unknown.",
        "count",
        optional=True,
    ),
    Question(
        "params",
        "How many parameters does the model have (e.g. 25M, 7B)? Blank if unknown.",
        "count",
        optional=True,
    ),
    Question(
        "overfitting",
        "What do you see: a train/validation gap (mild/strong), none, underfitting, or not trained yet (unknown)?",
        "choice",
        ("unknown", "none", "mild", "strong", "underfitting"),
    ),
    Question("uncertainty", "Do you want uncertainty estimates from MC dropout at inference?", "bool"),
)

_SUFFIX = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000, "t": 1_000_000_000_000}


def parse_count(text: str) -> int:
    """'50k' -> 50000, '1.2M' -> 1200000, '7B' -> 7000000000, '60000' and '60_000' as written."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmbgt]?)", t)
    if not m:
        raise ValueError(f"'{text}' is not a count: write a whole number, optionally with k, M or B (e.g. 50k)")
    value = float(m.group(1)) * _SUFFIX.get(m.group(2), 1)
    if value != int(value):
        raise ValueError(f"'{text}' is not a whole number")
    if int(value) < 0:
        raise ValueError("must not be negative")
    return int(value)


def parse_answer(q: Question, raw: str) -> Any:
    """Read one answer; raise ValueError with a reason the prompt shows before asking again."""
    text = raw.strip()
    if q.kind == "base":
        return _parse_base(text)
    if q.kind == "choice":
        low = text.lower()
        if low in q.choices:
            return low
        import difflib

        close = difflib.get_close_matches(low, q.choices, n=1, cutoff=0.5)
        raise ValueError(
            f"'{text}' is not one of {', '.join(q.choices)}" + (f"; did you mean '{close[0]}'?" if close else "")
        )
    if q.kind in ("target", "shape"):
        return _parse_model_answer(q, text)
    if q.kind == "bool":
        if text.lower() in ("y", "yes", "true", "1"):
            return True
        if text.lower() in ("n", "no", "false", "0"):
            return False
        raise ValueError("answer yes or no")
    value = parse_count(text)
    if q.kind == "int" and value < 1:
        raise ValueError("must be at least 1")
    if q.field in ("samples", "params") and value < 1:
        raise ValueError("must be at least 1")
    return value


def _parse_base(text: str) -> str | None:
    if text.lower() in ("", NO_BASE):
        return None
    from advisor.errors import NotFoundError
    from advisor.knowledge import default_kb

    try:
        return default_kb().recipe(text).key
    except NotFoundError as exc:
        raise ValueError(
            f"no recipe named '{text}'" + (f"; {exc.hint}" if exc.hint and "did you mean" in exc.hint else "")
        ) from None


def _parse_model_answer(q: Question, text: str) -> Any:
    """A model target (FILE.py:NAME, the file must exist) or an input shape, as `recommend TARGET` reads them."""
    from pathlib import Path

    from advisor.audit.load import parse_shape, split_target
    from advisor.errors import AdvisorError

    try:
        if q.kind == "shape":
            return ",".join(str(d) for d in parse_shape(text))
        where, _name = split_target(text)
    except AdvisorError as exc:
        raise ValueError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None
    if where.endswith(".py") and not Path(where).is_file():
        raise ValueError(f"no such file: {where}")
    return text


def to_spec_values(answers: Answers) -> dict[str, Any]:
    """Map interview answers to spec fields (the 'underfitting' symptom is its own flag)."""
    values = dict(answers)
    if values.get("overfitting") == "underfitting":
        values["overfitting"] = "unknown"
        values["underfitting"] = True
    return values


def pending(answers: Answers) -> list[Question]:
    """The questions still to ask: those that apply, unanswered, and not given by the base recipe."""
    given = base_fields(answers)
    if _has_model(answers):
        given |= READ_FROM_MODEL  # read from the model file
    return [q for q in QUESTIONS if q.when(answers) and q.field not in answers and q.field not in given]


Prompt = Callable[[Question, Any], str]


class InputEnded(Exception):
    """The input ended (EOF) mid-interview; carries the answers given so far."""

    def __init__(self, answers: Answers) -> None:
        super().__init__("input ended")
        self.answers = answers


def run_interview(given: Answers, prompt: Prompt, *, show_error: Callable[[str], None]) -> Answers:
    """Ask every applicable question not already ``given``; ``back`` revises the previous answer.

    ``prompt(question, default)`` returns the raw text typed (empty = default); it may raise
    KeyboardInterrupt, which propagates, or EOFError, re-raised as :class:`InputEnded` with the answers so
    far.
    """
    answers: Answers = dict(given)
    asked: list[str] = []
    while True:
        todo = pending(answers)
        if not todo:
            return answers
        q = todo[0]
        if q.options is not None:
            q = replace(q, choices=q.choices_for(answers), options=None)
        default = q.default(answers)
        try:
            raw = prompt(q, default)
        except EOFError:
            raise InputEnded(answers) from None
        if raw.strip().lower() == BACK:
            if asked:
                answers.pop(asked.pop(), None)
                # Answers that depended on the revised one are asked again.
                answers = {k: v for k, v in answers.items() if k in given or k in asked}
            else:
                show_error("nothing to go back to")
            continue
        if raw.strip() == "":
            if default is None and not q.optional:
                show_error("this question needs an answer")
                continue
            if default is None:
                answers[q.field] = None
                asked.append(q.field)
                continue
            raw = str(default).lower() if not isinstance(default, bool) else ("yes" if default else "no")
        try:
            answers[q.field] = parse_answer(q, raw)
        except ValueError as exc:
            show_error(str(exc))
            continue
        asked.append(q.field)


def finish(answers: Answers, origins: dict[str, str] | None = None) -> Any:
    """Validate the answers; an error names the answers file or flag it came from, else 'interview'.

    A base recipe fills the answers it gives (the interview did not ask them).
    """
    values = {k: v for k, v in to_spec_values(answers).items() if v is not None}
    source = {k: (origins or {}).get(k, "interview") for k in values}
    if values.get("base"):
        from advisor.advise.base import fill_from_base
        from advisor.knowledge import default_kb

        values, _ = fill_from_base(values, default_kb())
    return build_spec(values, source=source)


def missing_required(answers: Answers) -> list[str]:
    if answers.get("base") and "arch" in base_fields(answers):
        return []
    return [q.field for q in pending(answers) if q.field in ("arch", "model_file", "input_shape")]


def require_complete(answers: Answers, source: str) -> None:
    missing = missing_required(answers)
    if missing:
        raise SpecError(
            f"{source}: no answer for: {', '.join(missing)}",
            hint="pass --arch (and any other flags), --answers FILE, or run 'dropout-advisor ask' in a terminal",
        )
