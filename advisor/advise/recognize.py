"""Which reference recipe (``knowledge/recipes``) a built model is, if any, and how we know.

In order: the transformers config (``config._name_or_path``, then ``config.model_type`` with the
size that fits best), timm's ``pretrained_cfg`` architecture name, a torchvision class with the
structure of one of its recipes, then the structure alone (every architecture field of a recipe's
spec equals the model's), and last a family signature that no other family shares (a decoder with
rotary positions and a gated SiLU feed-forward: the LLaMA family). A recognised recipe is what
``--base`` would name; ``--base NAME`` or ``--base none`` overrides it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from advisor.errors import NotFoundError
from advisor.knowledge import KnowledgeBase
from advisor.schema import Recipe

#: spec fields that describe the architecture (not data, regime or symptoms)
STRUCTURAL = (
    "arch",
    "transformer",
    "layers",
    "width",
    "norm",
    "cell",
    "gnn",
    "wide",
    "head",
    "fc_layers",
    "pooling",
    "batch_norm",
    "activation",
)


@dataclass(frozen=True)
class Recognized:
    recipe: Recipe
    how: str  # what it was recognised by, in words
    exact: bool  # the model's size is the recipe's (else: same family, another size)


def recognize(model: Any, values: dict[str, Any], kb: KnowledgeBase) -> Recognized | None:
    """The recipe this model follows, or None. ``values``: the spec fields read from the model."""
    arch = values.get("arch")
    found = _transformers(model, values, kb) or _timm(model, kb) or _torchvision(model, values, kb)
    if found is not None and found.recipe.spec.get("arch") in (None, arch):
        return found
    return _structure(values, kb) or _signature(values, kb)


def _lookup(kb: KnowledgeBase, name: str) -> Recipe | None:
    try:
        return kb.recipe(name)
    except NotFoundError:
        return None


def _size(values: dict[str, Any]) -> str:
    return f"{values.get('layers', '?')} layers × {values.get('width', '?')} wide"


def _closest(cands: list[Recipe], values: dict[str, Any]) -> tuple[Recipe, bool]:
    def distance(r: Recipe) -> float:
        d = 0.0
        for key in ("layers", "width"):
            a, b = values.get(key), r.spec.get(key)
            if isinstance(a, int) and isinstance(b, int) and a > 0 and b > 0:
                d += abs(math.log(a / b))
        return d

    best = min(sorted(cands, key=lambda r: r.key), key=distance)
    return best, distance(best) == 0.0


def _transformers(model: Any, values: dict[str, Any], kb: KnowledgeBase) -> Recognized | None:
    cfg = getattr(model, "config", None)
    model_type = getattr(cfg, "model_type", None)
    if cfg is None or not isinstance(model_type, str):
        return None
    name = getattr(cfg, "_name_or_path", "") or ""
    if name:
        r = _lookup(kb, name)
        if r is not None:
            return Recognized(r, f"transformers config._name_or_path '{name}'", True)
    cands = [r for r in kb.recipes.values() if any(i.model_type == model_type for i in r.identifiers)]
    if not cands:
        return None
    best, exact = _closest(cands, values)
    size = "" if exact else f"; this model is {_size(values)}, the recipe {_size(dict(best.spec))}"
    return Recognized(best, f"transformers config.model_type '{model_type}'{size}", exact)


def _timm(model: Any, kb: KnowledgeBase) -> Recognized | None:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    arch = cfg.get("architecture") if isinstance(cfg, dict) else None
    if not isinstance(arch, str):
        return None
    r = _lookup(kb, arch)
    return Recognized(r, f"timm pretrained_cfg architecture '{arch}'", True) if r is not None else None


#: torchvision model classes and the prefix of their builders' names (torchvision.models.<prefix>...)
TORCHVISION_PREFIX = {
    "AlexNet": "alexnet",
    "VGG": "vgg",
    "ResNet": "resnet",
    "DenseNet": "densenet",
    "GoogLeNet": "googlenet",
    "EfficientNet": "efficientnet",
    "ConvNeXt": "convnext",
    "VisionTransformer": "vit",
    "SwinTransformer": "swin",
}


def _torchvision(model: Any, values: dict[str, Any], kb: KnowledgeBase) -> Recognized | None:
    """A torchvision class: the recipe with its structure, else the builder of that class whose size fits."""
    if not type(model).__module__.startswith("torchvision.models"):
        return None
    cls = type(model).__name__
    cands = [r for r in kb.recipes.values() if any(i.library == "torchvision" for i in r.identifiers)]
    for r in cands:
        if _agrees(r, values):
            return Recognized(r, f"torchvision {cls} with the structure of {r.name}", True)
    prefix = TORCHVISION_PREFIX.get(cls)
    named = [
        r
        for r in cands
        if prefix and any(i.library == "torchvision" and i.name.startswith(prefix) for i in r.identifiers)
    ]
    params = values.get("params")
    sized = [r for r in named if isinstance(r.spec.get("params"), int)]
    if not sized or not isinstance(params, int) or params <= 0:
        return None
    best = min(sorted(sized, key=lambda r: r.key), key=lambda r: abs(math.log(params / int(r.spec["params"]))))
    ratio = params / int(best.spec["params"])
    if not 0.9 <= ratio <= 1.1:
        return None  # another size of the family: no recipe for it
    return Recognized(
        best, f"torchvision {cls} with {params:,} parameters ({best.name} has {best.spec['params']:,})", True
    )


def _agrees(r: Recipe, values: dict[str, Any]) -> bool:
    keys = [k for k in STRUCTURAL if k in r.spec]
    return r.spec.get("arch") == values.get("arch") and all(values.get(k) == r.spec[k] for k in keys)


def _structure(values: dict[str, Any], kb: KnowledgeBase) -> Recognized | None:
    """A recipe whose every architecture field but the width equals the model's (CIFAR-sized VGG-16s too)."""
    for r in sorted(kb.recipes.values(), key=lambda r: r.key):
        keys = [k for k in STRUCTURAL if k in r.spec and k != "width"]
        if (
            len(keys) >= 5
            and r.spec.get("arch") == values.get("arch")
            and all(values.get(k) == r.spec[k] for k in keys)
        ):
            shown = ", ".join(f"{k}={r.spec[k]}" for k in keys if k != "arch")
            exact = values.get("width") == r.spec.get("width")
            width = "" if exact else f"; width {values.get('width')} here, {r.spec.get('width')} in {r.name}"
            return Recognized(r, f"the structure ({shown}{width})", exact)
    return None


def _signature(values: dict[str, Any], kb: KnowledgeBase) -> Recognized | None:
    """Families recognisable at any size by features no other family has."""
    if (
        values.get("arch") == "transformer"
        and values.get("transformer") == "decoder"
        and values.get("positions") == "rotary"
        and values.get("gated_ffn")
        and values.get("activation") == "silu"
    ):
        cands = [r for r in kb.recipes.values() if any(i.model_type == "llama" for i in r.identifiers)]
        cands = cands or [r for r in kb.recipes.values() if r.key.startswith("llama")]
        if cands:
            best, exact = _closest(cands, values)
            return Recognized(
                best,
                "the LLaMA family's signature: a decoder with rotary positions and a gated SiLU feed-forward"
                + ("" if exact else f" (this model is {_size(values)}, {best.name} {_size(dict(best.spec))})"),
                exact,
            )
    return None
