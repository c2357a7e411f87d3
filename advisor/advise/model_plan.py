"""A placement plan for a built model, at its own module paths, and the change list against today.

:func:`recommend_for` reads the model (:mod:`advisor.advise.read_model`), infers its family and
features (:mod:`advisor.advise.infer`), recognises a reference recipe when there is one
(:mod:`advisor.advise.recognize`), runs the engine on the model's real operation list
(:func:`advisor.recommend.recommend` with ``ops=``), and compares the plan with the dropout the model
has now: each site is kept, re-rated (p from -> to), added or removed, and each change says how
:func:`advisor.advise.apply.apply_plan` makes it, or why it cannot without editing code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from advisor.plan import AvoidEntry, Note

MODEL_PLAN_SCHEMA_VERSION = 1

#: the module a new site of each kind becomes (apply_plan); kinds not listed need code
INSERTABLE = {
    "dropout": "Dropout",
    "dropout1d": "Dropout1d",
    "dropout2d": "Dropout2d",
    "dropout3d": "Dropout3d",
    "alpha-dropout": "AlphaDropout",
    "feature-alpha-dropout": "FeatureAlphaDropout",
    "drop-path": "DropPath",
}


def describe(path: str, cls: str) -> str:
    """How a plan names one side of a gap: 'features.3 (ReLU)', 'add() in blocks.0.forward', 'the input'."""
    if cls == "input":
        return "the input"
    if cls.endswith(")") and "(" in cls and not cls.startswith("nn."):
        return f"{cls} in {path + '.forward' if path else '<root>.forward'}"
    return f"{path or '<root>'} ({cls})"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layer(_Frozen):
    """One operation of the model, top to bottom, as the engine saw it."""

    kind: str
    label: str
    path: str = Field(description="The module it comes from ('' is the model itself).")
    module_class: str
    tags: list[str] = Field(default_factory=list)
    block: int | None = None


class Step(_Frozen):
    """What apply_plan does for one change (machine-readable)."""

    action: Literal["set", "insert", "identity"]
    path: str = Field(description="Module path the action applies to.")
    attr: str | None = Field(default=None, description="set: the attribute the forward reads its rate from.")
    value: float | None = None
    hook: Literal["forward", "forward-pre"] | None = Field(
        default=None, description="insert: a forward hook on the module (its output) or a pre-hook (its input)."
    )
    child: str | None = Field(default=None, description="insert: the name the new dropout module is registered as.")
    dropout: str | None = Field(default=None, description="insert: the class (Dropout, Dropout2d, DropPath ...).")
    positions: list[int] = Field(default_factory=list, description="Layers gaps this step covers.")


class ModelSite(_Frozen):
    """A planned dropout site, between two of the model's own operations."""

    id: str
    position: int = Field(description="Index in 'layers' of the operation this site precedes.")
    module_path: str = Field(
        description="Where the dropout is or will be (its module, or the module holding its rate)."
    )
    after_path: str
    after_class: str
    after: str
    before_path: str
    before_class: str
    before: str
    block: int | None = None
    kind: str
    module: str = Field(description="The PyTorch module or call this kind of site is.")
    p: float
    p_range: tuple[float, float]
    schedule: str = "constant"
    reason: str
    recommendations: list[str]
    citations: list[str]
    change: Literal["add", "keep", "change", "cannot"] = "add"


class Change(_Frozen):
    """One difference between the model's dropout today and the plan."""

    action: Literal["add", "remove", "change", "keep", "cannot"]
    site: str | None = Field(default=None, description="The plan site (S1 ...), for add, change and keep.")
    existing: str | None = Field(default=None, description="The auditor's site id of today's dropout.")
    module_path: str
    kind: str
    p_from: float | None = None
    p_to: float | None = None
    where: str = Field(description="After/before, in the model's own names.")
    how: str = Field(description="What apply_plan does, or what to edit by hand.")
    reason: str
    steps: list[Step] = Field(default_factory=list)


class Inferred(_Frozen):
    """What was read from the model, and what the flags changed."""

    spec: dict[str, Any]
    evidence: dict[str, str]
    overridden: list[str] = Field(default_factory=list, description="Fields set by flags instead of the model.")
    recipe: str | None = None
    recipe_how: str | None = None


class ModelPlan(_Frozen):
    schema_version: int = MODEL_PLAN_SCHEMA_VERSION
    model_class: str
    target: str | None = None
    inputs: str
    device: str
    inferred: Inferred
    layers: list[Layer]
    sites: list[ModelSite]
    changes: list[Change]
    avoid: list[AvoidEntry]
    notes: list[Note]
    skipped: list[str] = Field(default_factory=list, description="What the reader could not place in the plan.")
    modules: dict[str, str] = Field(
        default_factory=dict, description="Module path -> class, for every module on a layer's or a change's path."
    )

    def counts(self) -> dict[str, int]:
        out = {a: 0 for a in ("keep", "change", "add", "remove", "cannot")}
        for c in self.changes:
            out[c.action] += 1
        return out


# ---- computing the plan -------------------------------------------------------------------------


def recommend_for(
    model: Any,
    example_inputs: Any,
    *,
    samples: int | None = None,
    regime: str = "scratch",
    overfitting: str = "unknown",
    underfitting: bool = False,
    uncertainty: bool = False,
    base: str | None = None,
    overrides: dict[str, Any] | None = None,
    target: str | None = None,
    notes: list[str] | None = None,
    kb: Any = None,
) -> ModelPlan:
    """A placement plan for a built ``nn.Module``, at its module paths, with the change list.

    ``example_inputs``: one tensor, a tuple of positional inputs or a dict of keyword inputs, as for
    :func:`advisor.audit`. ``samples``: training examples; ``regime``: scratch, fine-tuning or
    pretraining; ``overfitting``: none, mild, strong or unknown. ``base``: a reference recipe to
    follow (key, alias or hub name), or ``"none"`` to ignore the one recognised from the model.
    ``overrides``: spec fields that replace what was read (``{"arch": "cnn", "batch_norm": False}``).
    ``target`` and ``notes`` are shown with the plan (the CLI passes the target and its loading notes).
    The model is not changed. Raises :class:`~advisor.errors.SpecError` for contradictory fields,
    :class:`~advisor.audit.api.ModelRunError` when the model rejects the inputs.
    """
    from advisor.advise.infer import infer_spec, layer_ops
    from advisor.advise.read_model import read_model
    from advisor.advise.recognize import Recognized, recognize
    from advisor.errors import NotFoundError, SpecError
    from advisor.knowledge import default_kb
    from advisor.recommend import recommend
    from advisor.spec import FIELDS, build_spec

    kb = kb or default_kb()
    reading = read_model(model, example_inputs)
    inferred = infer_spec(reading, model)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    situation = {
        "samples": samples,
        "regime": regime,
        "overfitting": overfitting,
        "underfitting": underfitting or None,
        "uncertainty": uncertainty or None,
    }
    values = {k: v for k, v in inferred.values.items() if k in FIELDS}
    overridden = sorted(k for k, v in given.items() if k in inferred.values and inferred.values[k] != v)
    if "arch" in given and given["arch"] != inferred.values.get("arch"):
        values = {k: v for k, v in values.items() if k in ("params",)}  # another family: its own defaults
    values.update(given)
    values.update({k: v for k, v in situation.items() if v is not None})

    recognized: Recognized | None = None
    if base is not None and base.strip().lower() != "none":
        try:
            recipe = kb.recipe(base)
        except NotFoundError as exc:
            raise SpecError(f"--base: no reference recipe named '{base}'", hint=exc.hint) from None
        recognized = Recognized(recipe, "--base", True)
    elif base is None:
        recognized = recognize(model, {**inferred.values, **given}, kb)
    if recognized is not None and recognized.recipe.spec.get("arch") not in (None, values.get("arch")):
        raise SpecError(
            f"--base {recognized.recipe.key} is a {recognized.recipe.spec.get('arch')}, "
            f"but this model reads as a {values.get('arch')}",
            hint="name a recipe of the model's family, or leave out --base",
        )
    if recognized is not None and "base" in FIELDS:
        values["base"] = recognized.recipe.key
    spec = build_spec(values, source="model")
    resolved = spec.resolved()
    tagged = layer_ops(reading, resolved.model_dump())
    plan = recommend(spec, kb, ops=tagged.ops)
    reading.notes.extend(notes or [])
    if isinstance(getattr(getattr(model, "config", None), "model_type", None), str):
        reading.notes.append(
            "apply_plan changes the built modules, not model.config: a model saved and loaded again takes its "
            "rates from the config, so set the same values there too ('recommend --hf-config' lists the fields)"
        )
    return _build(reading, inferred, overridden, recognized, tagged, plan, spec, target)


def _build(
    reading: Any,
    inferred: Any,
    overridden: list[str],
    recognized: Any,
    tagged: Any,
    plan: Any,
    spec: Any,
    target: str | None,
) -> ModelPlan:
    from advisor.advise.changes import change_list

    refs = tagged.refs
    layers = [
        Layer(kind=op.kind, label=op.label, path=ref.path, module_class=ref.cls, tags=list(op.tags), block=op.block)
        for op, ref in zip(tagged.ops, refs, strict=True)
    ]
    sites, changes = change_list(reading, tagged, plan, spec)
    notes = list(plan.notes)
    torch_layers = {"TransformerEncoderLayer", "TransformerDecoderLayer"} & set(reading.module_classes.values())
    if not torch_layers:  # the note on PyTorch's one-argument Transformer layers concerns models built with them
        notes = [n for n in notes if "pytorch-transformer-layers" not in n.citations]
    if recognized is not None and recognized.how != "--base":
        # the recipe was recognised from the model, not named: turning it off takes --base none
        notes = [
            n.model_copy(update={"text": n.text.replace("leave out --base", "pass --base none")})
            if "leave out --base" in n.text
            else n
            for n in notes
        ]
    for line in reading.notes:
        notes.append(Note(text=line, recommendations=[], citations=[]))
    modules = _modules(reading, layers, changes)
    return ModelPlan(
        model_class=reading.model_class,
        target=target,
        inputs=reading.input_desc,
        device=reading.device,
        inferred=Inferred(
            spec={k: v for k, v in spec.resolved().model_dump(exclude_none=True).items()},
            evidence=dict(inferred.why),
            overridden=overridden,
            recipe=recognized.recipe.key if recognized is not None else None,
            recipe_how=recognized.how if recognized is not None else None,
        ),
        layers=layers,
        sites=sites,
        changes=changes,
        avoid=list(plan.avoid),
        notes=notes,
        skipped=list(reading.skipped),
        modules=modules,
    )


def _modules(reading: Any, layers: list[Layer], changes: list[Change]) -> dict[str, str]:
    classes = reading.module_classes
    wanted: set[str] = set()
    steps = [s.path for c in changes for s in c.steps]
    for path in [layer.path for layer in layers] + [c.module_path for c in changes] + steps:
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            wanted.add(".".join(parts[:i]))
    return {p: classes[p] for p in classes if p in wanted}
