"""``recommend --hf-config config.json``: the dropout fields of a Hugging Face or timm config, and their values.

A local ``config.json`` is read (never the hub). A transformers config names its ``model_type``; a
timm hub config names its ``architecture``. The reference recipe for that model
(``knowledge/recipes``, matched by ``_name_or_path``, then model type and size, or the timm
architecture) says which dropout each field controls and at which rate, for the regime asked:
fine-tuning keeps the pretrained configuration (the recipe's own fine-tuning sites where it has
them, such as BERT's classifier dropout or T5 v1.1's 0.1), pretraining and from-scratch training
follow the published configuration. The result lists each field with its value today, the
recommended value and the reason with its source, and the two lines of code that set them
(``AutoConfig.from_pretrained(..., hidden_dropout_prob=0.1)``; ``timm.create_model(..., drop_rate=...)``).
No torch, no transformers import.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from advisor.advise.base import evidence_lines
from advisor.errors import NotFoundError, SpecError
from advisor.knowledge import KnowledgeBase
from advisor.schema import Recipe

CONFIG_ADVICE_SCHEMA_VERSION = 1

#: dropout-like config fields, besides those a recipe names (transformers and timm spellings)
_FIELD = re.compile(r"(dropout|pdrop|drop_path|drop_rate|layerdrop|drop_connect|drop_prob)", re.I)
#: timm.create_model arguments that set dropout (timm 1.x)
TIMM_ARGS = ("drop_rate", "drop_path_rate", "attn_drop_rate", "proj_drop_rate", "pos_drop_rate")
#: keys of a transformers config that give its depth and width, by model family
_DEPTH = ("num_hidden_layers", "n_layer", "num_layers", "encoder_layers", "depth")
_WIDTH = ("hidden_size", "n_embd", "d_model", "dim", "embed_dim")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigField(_Frozen):
    """One dropout field of the config, today and recommended."""

    name: str
    current: float | None = Field(description="The value in the file; null when unset or null.")
    present: bool = Field(description="Whether the file has the field at all.")
    recommended: float | None = Field(description="null: no recommendation (keep what it is).")
    change: Literal["keep", "change", "set", "none"]
    reason: str
    sources: list[str] = Field(default_factory=list, description="Where the recommended value was read.")


class ConfigAdvice(_Frozen):
    schema_version: int = CONFIG_ADVICE_SCHEMA_VERSION
    file: str
    library: Literal["transformers", "timm"]
    model: str = Field(description="transformers model_type, or the timm architecture.")
    recipe: str | None = None
    recipe_how: str | None = None
    regime: str
    recipe_regime: str | None = Field(default=None, description="The recipe's configuration the values follow.")
    fields: list[ConfigField]
    code: list[str] = Field(description="The lines that build the model with these values.")
    notes: list[str] = Field(default_factory=list)


# ---- reading ------------------------------------------------------------------------------------


def read_config(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a missing file, bad JSON or another top level is a SpecError (exit 2)."""
    from advisor.fileio import read_user_text

    text = read_user_text(path, "config file", "JSON (config.json)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            hint="give the config.json saved with the model (save_pretrained writes it)",
        ) from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a JSON object", hint="give a model's config.json")
    return data


def _library(data: dict[str, Any], path: Path) -> tuple[Literal["transformers", "timm"], str]:
    if isinstance(data.get("model_type"), str):
        return "transformers", data["model_type"]
    if isinstance(data.get("architecture"), str):
        return "timm", data["architecture"]
    raise SpecError(
        f"{path}: neither a transformers config (no 'model_type') nor a timm config (no 'architecture')",
        hint="give the config.json of a transformers or timm model; for any other model run "
        "'dropout-advisor recommend FILE.py:NAME --input-shape ...'",
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# ---- the recipe ---------------------------------------------------------------------------------


def _lookup(kb: KnowledgeBase, name: str) -> Recipe | None:
    try:
        return kb.recipe(name)
    except NotFoundError:
        return None


def _size(data: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = data.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def find_recipe(data: dict[str, Any], library: str, model: str, kb: KnowledgeBase) -> tuple[Recipe | None, str]:
    """The recipe of a config and how it was found (name, then model type and the closest size)."""
    if library == "timm":
        r = _lookup(kb, model)
        return (r, f"timm architecture '{model}'") if r else (None, f"no recipe for the timm architecture '{model}'")
    name = data.get("_name_or_path")
    if isinstance(name, str) and name:
        r = _lookup(kb, name)
        if r is not None:
            return r, f"_name_or_path '{name}'"
    cands = [r for r in kb.recipes.values() if any(i.model_type == model for i in r.identifiers)]
    if not cands:
        return None, f"no recipe for model_type '{model}'"
    depth, width = _size(data, _DEPTH), _size(data, _WIDTH)

    def distance(r: Recipe) -> float:
        d = 0.0
        for mine, theirs in ((depth, r.spec.get("layers")), (width, r.spec.get("width"))):
            if isinstance(mine, int) and isinstance(theirs, int) and theirs > 0:
                d += abs(math.log(mine / theirs))
        return d

    best = min(sorted(cands, key=lambda r: r.key), key=distance)
    how = f"model_type '{model}'"
    if distance(best) > 0:
        how += (
            f" ({depth or '?'} layers × {width or '?'} here; {best.name} is {best.spec.get('layers', '?')} × "
            f"{best.spec.get('width', '?')}: the rates, not the size, are what carry over)"
        )
    return best, how


def recipe_regime(recipe: Recipe, regime: str) -> str:
    """The recipe configuration a regime follows: its own if listed; fine-tuning keeps the pretrained one."""
    if regime in recipe.regime:
        return regime
    order = {
        "fine-tuning": ("pretraining", "scratch"),
        "scratch": ("pretraining", "fine-tuning"),
        "pretraining": ("scratch", "fine-tuning"),
    }[regime]
    return next((r for r in order if r in recipe.regime), recipe.regime[0])


# ---- advice -------------------------------------------------------------------------------------


def advise_config(
    path: Path,
    *,
    regime: str = "fine-tuning",
    overfitting: str = "unknown",
    base: str | None = None,
    kb: KnowledgeBase | None = None,
) -> ConfigAdvice:
    """Recommended values for the dropout fields of ``path`` (a transformers or timm config.json).

    ``regime``: fine-tuning (default), scratch or pretraining. ``base``: a recipe to follow instead of
    the one the config names. Raises :class:`SpecError` for an unreadable file or unknown base.
    """
    from advisor.knowledge import default_kb

    kb = kb or default_kb()
    data = read_config(path)
    library, model = _library(data, path)
    if base is not None:
        recipe = _lookup(kb, base)
        if recipe is None:
            raise SpecError(f"--base: no reference recipe named '{base}'", hint="see 'dropout-advisor recipes list'")
        how = "--base"
    else:
        recipe, how = find_recipe(data, library, model, kb)
    prefix = f"{library}:"
    names: list[str] = []
    for key, value in data.items():
        if _FIELD.search(key) and (value is None or _number(value) is not None):
            names.append(key)
    if recipe is not None:
        for site in recipe.sites:
            for f in site.fields:
                if (
                    f.startswith(prefix)
                    and f[len(prefix) :] not in names
                    and (library == "timm" or f[len(prefix) :] in data)
                ):
                    names.append(f[len(prefix) :])
    if library == "timm":
        names = [n for n in dict.fromkeys([*names, *TIMM_ARGS])]
    notes: list[str] = []
    used = recipe_regime(recipe, regime) if recipe is not None else None
    fields = [_field(name, data, recipe, used, regime, prefix) for name in names]
    if library == "transformers":
        fields = [_with_fallback(f, data, model) for f in fields]
    if recipe is None:
        notes.append(
            f"No reference recipe for {model}: the values in the file are kept. Build the model and run "
            "'dropout-advisor recommend FILE.py:NAME --input-shape ...' (or advisor.recommend_for) for a plan "
            "on its real layers."
        )
    else:
        notes += [f"{recipe.name}: {line}" for line in recipe.notes]
        if regime == "fine-tuning" and used != "fine-tuning":
            notes.append(
                f"Fine-tuning keeps {recipe.name}'s {used} configuration: no rate is raised and no dropout is added "
                "where the pretrained model has none."
            )
        if regime == "fine-tuning" and overfitting == "strong":
            notes.append(
                "Strong overfitting: the recipe records no higher fine-tuning rate, so the values stay; fewer "
                "epochs, weight decay or more data come first."
            )
    notes.append(
        "Rates are copied into the modules when the model is built: set them in the config before "
        "from_pretrained / create_model, not on config afterwards."
    )
    code = _code(path, data, library, model, fields)
    return ConfigAdvice(
        file=str(path),
        library=library,
        model=model,
        recipe=recipe.key if recipe is not None else None,
        recipe_how=how,
        regime=regime,
        recipe_regime=used,
        fields=fields,
        code=code,
        notes=notes,
    )


def _field(
    name: str, data: dict[str, Any], recipe: Recipe | None, used: str | None, regime: str, prefix: str
) -> ConfigField:
    present = name in data
    current = _number(data.get(name))
    if recipe is None or used is None:
        return ConfigField(
            name=name,
            current=current,
            present=present,
            recommended=current,
            change="keep" if present else "none",
            reason="no reference recipe for this model: keep the configured value",
        )
    sites = [s for s in recipe.sites if f"{prefix}{name}" in s.fields]
    active = [s for s in sites if s.regime is None or used in s.regime or regime in s.regime]
    explicit = [s for s in active if s.regime is not None]
    if explicit:
        active = explicit  # the recipe states this regime's value (T5 v1.1: 0 in pretraining, 0.1 fine-tuning)
    if not sites:
        if not recipe.sites:
            where = "; ".join(
                f"{s.citation}: {s.locator}" + (f" @ {s.commit}" if s.commit else "") for s in recipe.no_dropout_sources
            )
            return _decide(
                name,
                current,
                present,
                0.0,
                f"{recipe.name} has no dropout anywhere ({where})",
                [f"{s.citation}: {s.evidence}, {s.locator}" for s in recipe.no_dropout_sources],
            )
        return ConfigField(
            name=name,
            current=current,
            present=present,
            recommended=current,
            change="keep" if present else "none",
            reason=f"{recipe.name} sets no dropout through this field: keep the configured value",
        )
    if not active:
        regimes = sorted({r for s in sites for r in (s.regime or [])})
        return ConfigField(
            name=name,
            current=current,
            present=present,
            recommended=current,
            change="keep" if present else "none",
            reason=f"{recipe.name} uses this field only in {', '.join(regimes)}, not in {regime}",
        )
    rates = sorted({s.p for s in active})
    p = rates[0]
    roles = "; ".join(f"{s.role} p={s.p:g} ({s.where})" for s in active)
    why = f"{recipe.name} ({used}): {roles}"
    if len(rates) > 1:
        why += f" (the recipe's sites set this field to {', '.join(f'{r:g}' for r in rates)}; this follows {p:g})"
    sources = [e for s in active for e in evidence_lines(s)]
    return _decide(name, current, present, p, why, list(dict.fromkeys(sources)))


# transformers model types whose classification heads read ``classifier_dropout`` and, when it is None, use
# ``hidden_dropout_prob`` instead (read in transformers 5.24.0: ``config.classifier_dropout if
# config.classifier_dropout is not None else config.hidden_dropout_prob`` in each modeling file).
CLASSIFIER_FALLBACK = frozenset(
    {
        "bert", "big_bird", "camembert", "convbert", "data2vec-text", "electra", "ernie", "layoutlmv3", "lilt",
        "luke", "markuplm", "mobilebert", "roberta", "roberta-prelayernorm", "roc_bert", "xlm-roberta",
        "xlm-roberta-xl", "xmod",
    }
)  # fmt: skip


def _with_fallback(f: ConfigField, data: dict[str, Any], model: str) -> ConfigField:
    """An unset ``classifier_dropout`` of a model that falls back to ``hidden_dropout_prob``: judged by the
    rate its head really gets, so 'unset -> 0.1' with a hidden rate of 0.1 is a keep, not a set."""
    effective = _number(data.get("hidden_dropout_prob"))
    if f.name != "classifier_dropout" or f.current is not None or model not in CLASSIFIER_FALLBACK or effective is None:
        return f
    said = f" (unset: {model}'s heads use hidden_dropout_prob = {effective:g} instead)"
    if f.recommended is None or abs(effective - f.recommended) < 1e-12:
        return f.model_copy(update={"change": "keep", "reason": f.reason + said})
    return f.model_copy(update={"reason": f.reason + said})


def _decide(name: str, current: float | None, present: bool, p: float, why: str, sources: list[str]) -> ConfigField:
    if current is None:
        change: Literal["keep", "change", "set", "none"] = "set"
    elif abs(current - p) < 1e-12:
        change = "keep"
    else:
        change = "change"
    return ConfigField(
        name=name, current=current, present=present, recommended=p, change=change, reason=why, sources=sources
    )


def _code(path: Path, data: dict[str, Any], library: str, model: str, fields: list[ConfigField]) -> list[str]:
    args = ", ".join(f"{f.name}={f.recommended:g}" for f in fields if f.recommended is not None and f.sources)
    if library == "timm":
        return ["import timm", f'model = timm.create_model("{model}", pretrained=True{", " + args if args else ""})']
    name = data.get("_name_or_path") or str(path.parent if str(path.parent) else ".")
    archs = data.get("architectures")
    cls = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else "AutoModel"
    where = json.dumps(name)
    return [
        f"config = AutoConfig.from_pretrained({where}{', ' + args if args else ''})",
        f"model = {cls}.from_pretrained({where}, config=config)  # from transformers import AutoConfig, {cls}",
    ]


# ---- views --------------------------------------------------------------------------------------


def _v(x: float | None) -> str:
    return "unset" if x is None else f"{x:g}"


def advice_text(a: ConfigAdvice) -> str:
    lines = [f"Dropout fields of {a.file} ({a.library}, {a.model}), for {a.regime}"]
    if a.recipe:
        lines.append(
            f"Reference recipe: {a.recipe}, found by {a.recipe_how}"
            + (f"; values from its {a.recipe_regime} configuration" if a.recipe_regime else "")
        )
    else:
        lines.append(f"Reference recipe: none ({a.recipe_how})")
    lines.append("")
    width = max((len(f.name) for f in a.fields), default=10)
    for f in a.fields:
        mark = {"keep": "=", "change": "~", "set": "+", "none": " "}[f.change]
        lines.append(f"  {mark} {f.name:<{width}}  {_v(f.current):>6} -> {_v(f.recommended):<6}  {f.reason}")
        for s in f.sources[:2]:
            lines.append(f"      source: {s}")
    if not a.fields:
        lines.append("  (no dropout field in this config)")
    lines += ["", "Set them when building the model:"] + [f"  {c}" for c in a.code]
    if a.notes:
        lines += ["", "Notes:"] + [f"  - {n}" for n in a.notes]
    return "\n".join(lines) + "\n"


def advice_markdown(a: ConfigAdvice) -> str:
    out = [f"# Dropout fields of `{a.file}`", "", f"{a.library} `{a.model}`, {a.regime}."]
    if a.recipe:
        out.append(f"Reference recipe **{a.recipe}** ({a.recipe_how}).")
    out += ["", "| field | today | recommended | why |", "|---|---|---|---|"]
    for f in a.fields:
        out.append(f"| `{f.name}` | {_v(f.current)} | {_v(f.recommended)} | {f.reason.replace('|', '/')} |")
    out += ["", "```python", *a.code, "```"]
    if a.notes:
        out += ["", *[f"- {n}" for n in a.notes]]
    return "\n".join(out) + "\n"
