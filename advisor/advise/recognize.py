"""Which reference recipe (``knowledge/recipes``) a built model is, if any, and how we know.

In order: the transformers config (``config._name_or_path``, then ``config.model_type`` with the
size that fits best), timm's ``pretrained_cfg`` architecture name, a torchvision model built like a
recipe's torchvision builder, then the structure alone (every architecture field of a recipe's spec
equals the model's; never for a library model that names an architecture no recipe has), and last a
family signature that no other family shares (a decoder with rotary positions and a gated SiLU
feed-forward: the LLaMA family). A recognised recipe is what ``--base`` would name; ``--base NAME``
or ``--base none`` overrides it.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import Counter
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
    if _library_name(model):
        # a library architecture with a name of its own that no recipe has (RegNet, ResNet-D, BEiT ...): the
        # structure alone would take it for another; only a family signature (the LLaMA family) still holds
        return _signature(values, kb)
    return _structure(values, kb) or _signature(values, kb)


def _library_name(model: Any) -> bool:
    """Whether the model names its own architecture: a torchvision class, a timm model with a
    ``pretrained_cfg`` architecture, or a transformers model with a ``config.model_type``."""
    if type(model).__module__.startswith("torchvision.models"):
        return True
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, dict) and isinstance(cfg.get("architecture"), str):
        return True
    return isinstance(getattr(getattr(model, "config", None), "model_type", None), str)


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
    """A torchvision model whose modules are those of a recipe's torchvision builder.

    The builder named in the recipe's identifiers (``torchvision.models.vgg16`` ...) is built on the meta
    device (no weights, no memory) and the model's module classes are compared with it, counted: so
    ``vgg11_bn`` is not VGG-16 (same class, about the same parameter count) and ``swin_v2_t`` is not
    Swin-T (same class, another block class). Constructor options such as the number of classes or the
    dropout rate change no module class.
    """
    if not type(model).__module__.startswith("torchvision.models"):
        return None
    cls = type(model).__name__
    prefix = TORCHVISION_PREFIX.get(cls, "")
    mine = Counter(type(m).__name__ for m in model.modules())
    for r in sorted(kb.recipes.values(), key=lambda r: r.key):
        for ident in r.identifiers:
            if ident.library != "torchvision" or not ident.name or not ident.name.startswith(prefix):
                continue
            if _torchvision_modules(ident.name) == mine:
                return Recognized(r, f"torchvision {cls} built like torchvision.models.{ident.name}", True)
    return None


@functools.lru_cache(maxsize=32)
def _torchvision_modules(name: str) -> Counter[str] | None:
    """Module classes (counted) of ``torchvision.models.<name>()``, built on the meta device."""
    import torch
    import torchvision.models

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = torchvision.models.get_model(name, weights=None)
    except Exception:  # a builder this torchvision does not have
        return None
    return Counter(type(m).__name__ for m in built.modules())


def _agrees(r: Recipe, values: dict[str, Any]) -> bool:
    keys = [k for k in STRUCTURAL if k in r.spec]
    return r.spec.get("arch") == values.get("arch") and all(values.get(k) == r.spec[k] for k in keys)


#: residual recipes built from inverted-residual (MBConv) blocks, with no shortcut on the blocks that change
#: resolution or width (Tan & Le 2019). The other residual recipes (ResNet-50, WRN-28-10, ConvNeXt-T) have a
#: shortcut on every block (He et al. 2016; Zagoruyko & Komodakis 2016; Liu et al. 2022), so a MobileNet,
#: MNASNet or EfficientNet-style model is never one of them by structure.
INVERTED_RESIDUAL = ("efficientnet",)


def _structure(values: dict[str, Any], kb: KnowledgeBase) -> Recognized | None:
    """A recipe whose every architecture field but the width equals the model's (CIFAR-sized VGG-16s too);
    a residual recipe also needs the same kind of block (inverted residual or not)."""
    inverted = bool(values.get("inverted_residual"))
    for r in sorted(kb.recipes.values(), key=lambda r: r.key):
        keys = [k for k in STRUCTURAL if k in r.spec and k != "width"]
        if r.spec.get("arch") == "resnet" and inverted != r.key.startswith(INVERTED_RESIDUAL):
            continue
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
