"""The architecture spec: what the user told us about their network, data and symptoms.

One model serves the interview, the flags of ``recommend`` and the answers file, so a session can be
replayed exactly. Defaults that depend on the family are filled in by :func:`Spec.resolved`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from advisor.errors import SpecError

ANSWERS_VERSION = 1

Arch = Literal["mlp", "cnn", "resnet", "rnn", "transformer", "gnn"]
Activation = Literal["relu", "leaky-relu", "gelu", "silu", "tanh", "sigmoid", "selu", "elu"]
Regime = Literal["scratch", "fine-tuning", "pretraining"]
Overfitting = Literal["none", "mild", "strong", "unknown"]
Modality = Literal["tabular", "image", "text", "audio", "graph", "sequence", "other"]
Positions = Literal["additive", "rotary", "relative"]


class Spec(BaseModel):
    """A validated architecture description. Every field is also a ``recommend`` flag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: Arch
    layers: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="hidden layers (mlp), conv blocks (cnn), residual blocks (resnet), recurrent layers (rnn), "
        "Transformer layers, graph-conv layers (gnn)",
    )
    width: int | None = Field(default=None, ge=1, le=1_000_000, description="hidden width / channels / d_model")
    batch_norm: bool | None = Field(
        default=None,
        description="BatchNorm after the convs or linears; a resnet without it is normalized with LayerNorm, in "
        "ConvNeXt's block layout",
    )
    activation: Activation | None = None
    # CNN
    pooling: Literal["max", "avg", "none"] | None = None
    head: Literal["fc", "gap"] | None = Field(default=None, description="fc: flatten + FC layers; gap: global pool")
    fc_layers: int | None = Field(default=None, ge=0, le=10, description="hidden FC layers in a CNN's head")
    wide: bool | None = Field(default=None, description="resnet: a Wide ResNet (WRN)")
    # RNN
    cell: Literal["lstm", "gru"] | None = None
    bidirectional: bool | None = None
    rnn_task: Literal["lm", "classifier", "seq2seq"] | None = None
    embeddings: bool | None = Field(default=None, description="token embeddings at the input (rnn)")
    # Transformer
    transformer: Literal["encoder", "decoder", "encoder-decoder"] | None = None
    norm: Literal["pre", "post"] | None = None
    positions: Positions | None = Field(
        default=None,
        description="transformer: additive (learned or sinusoidal, summed with the token embeddings), rotary "
        "(RoPE, inside attention: no embedding sum) or relative (a bias on the attention logits, T5)",
    )
    embedding_norm: bool | None = Field(
        default=None, description="transformer: LayerNorm on the embedding sum before the first layer (BERT)"
    )
    # GNN
    gnn: Literal["gcn", "gat"] | None = None
    # Data, size, regime, symptoms
    samples: int | None = Field(
        default=None,
        ge=1,
        description="training examples; for a language model (RNN task lm, Transformer decoder), training tokens",
    )
    params: int | None = Field(default=None, ge=1, description="model parameters")
    modality: Modality | None = None
    regime: Regime = "scratch"
    overfitting: Overfitting = "unknown"
    underfitting: bool = False
    uncertainty: bool = Field(default=False, description="MC-dropout uncertainty estimates wanted")
    base: str | None = Field(
        default=None,
        min_length=1,
        description="the reference recipe (knowledge/recipes): the pretrained model being fine-tuned, or the "
        "published configuration a model trained from scratch follows",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        for name, families in FAMILY_FIELDS.items():
            if getattr(self, name) is not None and self.arch not in families:
                flag = "--task" if name == "rnn_task" else "--" + name.replace("_", "-")
                raise ValueError(
                    f"{flag} applies to --arch {' or '.join(families)} only, not to --arch {self.arch}: leave it out"
                )
        if self.underfitting and self.overfitting in ("mild", "strong"):
            raise ValueError("a model cannot both underfit and overfit: choose --underfitting or --overfitting")
        if self.arch == "resnet" and self.batch_norm is False and self.wide:
            raise ValueError("a Wide ResNet has BatchNorm in every block: leave out --no-batch-norm with --wide")
        return self

    def resolved(self) -> Spec:
        """Fill family defaults, so the engine and the text view never see None where it matters."""
        d = DEFAULTS[self.arch]
        values = self.model_dump()
        for key, default in d.items():
            if values.get(key) is None:
                values[key] = default
        return Spec.model_validate(values)

    def answers(self) -> dict[str, Any]:
        """What was given (not defaults), in the answers-file shape."""
        return self.model_dump(exclude_defaults=True, exclude_none=True)


#: Fields that describe one family's structure; giving one for another family is a usage error, never
#: silently ignored (``--wide`` on an RNN).
FAMILY_FIELDS: dict[str, tuple[str, ...]] = {
    "pooling": ("cnn",),
    "head": ("cnn", "resnet"),
    "fc_layers": ("cnn", "resnet"),
    "wide": ("resnet",),
    "cell": ("rnn",),
    "bidirectional": ("rnn",),
    "rnn_task": ("rnn",),
    "embeddings": ("rnn",),
    "transformer": ("transformer",),
    "norm": ("transformer",),
    "positions": ("transformer",),
    "embedding_norm": ("transformer",),
    "gnn": ("gnn",),
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"layers": 2, "width": 512, "batch_norm": False, "activation": "relu", "modality": "tabular"},
    "cnn": {
        "layers": 3,
        "width": 64,
        "batch_norm": False,
        "activation": "relu",
        "pooling": "max",
        "head": "fc",
        "fc_layers": 2,
        "modality": "image",
    },
    "resnet": {
        "layers": 8,
        "width": 64,
        "batch_norm": True,
        "activation": "relu",
        "head": "gap",
        "wide": False,
        "fc_layers": 0,
        "modality": "image",
    },
    "rnn": {
        "layers": 2,
        "width": 650,
        "batch_norm": False,
        "activation": "tanh",
        "cell": "lstm",
        "bidirectional": False,
        "rnn_task": "lm",
        "embeddings": True,
        "modality": "text",
    },
    "transformer": {
        "layers": 6,
        "width": 512,
        "batch_norm": False,
        "activation": "gelu",
        "transformer": "encoder",
        "norm": "pre",
        "positions": "additive",
        "embedding_norm": False,
        "modality": "text",
    },
    "gnn": {
        "layers": 2,
        "width": 16,
        "batch_norm": False,
        "activation": "relu",
        "gnn": "gcn",
        "modality": "graph",
    },
}

FIELDS = tuple(Spec.model_fields)


def spec_error(exc: ValidationError, source: str | dict[str, str]) -> SpecError:
    """One readable error naming the source (a file, 'flags', 'interview') and the field.

    ``source`` may map field names to where each value came from (answers file or flags).
    """
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        import difflib

        close = difflib.get_close_matches(str(err["loc"][-1]), FIELDS, n=1)
        msg = "unknown field" + (f"; did you mean '{close[0]}'?" if close else "")
    field = str(err["loc"][0]) if err["loc"] else ""
    where = source if isinstance(source, str) else source.get(field, "flags")
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    what = f"field '{loc}': " if loc else ""  # a check across fields names no single field
    return SpecError(f"{where}: {what}{msg}{more}", hint="see 'dropout-advisor recommend --help' for every field")


def check_given(values: dict[str, Any], source: str | dict[str, str] = "flags") -> None:
    """Validate each given field on its own, before an interview asks for the rest (a bad --arch is
    reported at once, not after the questions). Raises :class:`SpecError` naming the first bad field."""
    from pydantic import create_model

    given = {k: v for k, v in values.items() if k in Spec.model_fields and v is not None}
    fields: dict[str, Any] = {k: (Spec.model_fields[k].annotation, Spec.model_fields[k]) for k in given}
    partial = create_model("GivenAnswers", **fields)
    try:
        partial.model_validate(given)
    except ValidationError as exc:
        raise spec_error(exc, source) from None


def build_spec(values: dict[str, Any], source: str | dict[str, str] = "flags") -> Spec:
    try:
        return Spec.model_validate(values)
    except ValidationError as exc:
        raise spec_error(exc, source) from None


def load_answers(path: Path) -> dict[str, Any]:
    """Read an answers file (TOML or JSON) into a dict of spec fields; errors name the file and field."""
    import json
    import tomllib

    from advisor.fileio import read_user_text

    text = read_user_text(path, "answers file", "TOML or JSON")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}",
            hint="fix the syntax, or save the answers again with 'dropout-advisor ask'",
        ) from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a table of answers", hint='e.g. arch = "cnn"')
    if {"sites", "layers", "spec"} <= set(data):
        raise SpecError(
            f"{path} is a placement plan (the output of 'recommend --format json'), not an answers file",
            hint=f"generate code from it with 'dropout-advisor generate --plan {path}'; "
            "save answers with 'recommend --save-answers FILE'",
        )
    version = data.pop("answers_version", ANSWERS_VERSION)
    if version != ANSWERS_VERSION:
        raise SpecError(
            f"{path}: field 'answers_version': unsupported version {version!r}",
            hint=f"this dropout-advisor reads answers_version = {ANSWERS_VERSION}",
        )
    data.pop("tool", None)
    return data


def given_answers(spec: Spec, base_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answers given, less those equal to the base recipe's spec (``--base`` fills them again)."""
    answers = spec.answers()
    if base_spec and spec.base:
        answers = {k: v for k, v in answers.items() if k not in base_spec or base_spec[k] != v}
    return answers


def spec_flags(spec: Spec, base_spec: dict[str, Any] | None = None) -> list[str]:
    """The command-line flags that reproduce the answers given (not the defaults, nor what --base fills)."""
    parts: list[str] = []
    for key, value in given_answers(spec, base_spec).items():
        flag = "--task" if key == "rnn_task" else "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else flag.replace("--", "--no-", 1))
        else:
            parts += [flag, str(value)]
    return parts


def answers_toml(spec: Spec, base_spec: dict[str, Any] | None = None) -> str:
    """The answers file that replays this spec (fields the base recipe fills are left to it)."""
    import json

    from advisor import __version__

    lines = [
        f"# dropout-advisor {__version__} answers; replay with: dropout-advisor recommend --answers FILE",
        f"answers_version = {ANSWERS_VERSION}",
    ]
    for key, value in given_answers(spec, base_spec).items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"
