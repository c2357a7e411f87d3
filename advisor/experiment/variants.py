"""The dropout placements the experiment compares, and the one builder that turns each into a model.

A variant is a *blueprint* in the advisor's own plan shape: the network top to bottom as a list of
operations (:class:`advisor.plan.Op`) plus dropout sites, each placed before the operation at its
``position``. Hand-written variants start from the same base stack and add their sites; the ``advisor``
variant takes both from :func:`advisor.recommend.recommend`. One builder maps every blueprint to an
``nn.Sequential`` whose weighted layers have the same names, shapes and construction order in every
variant, so one ``torch.manual_seed`` gives every variant identical initial weights.

This module imports torch only inside :func:`build_model` and the plan helpers only when called, so the
CLI can list variant names cheaply.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advisor.errors import AdvisorError, UsageError
from advisor.experiment.datasets import Arch

if TYPE_CHECKING:
    from torch import nn

    from advisor.plan import Op, Plan
    from advisor.spec import Spec

# The base networks (kept small: the default run must finish in well under 90 s on two CPU cores).
CONV_BLOCKS = 2  # conv 3x3 -> [BatchNorm] -> ReLU -> MaxPool(2), twice: 8x8 -> 4x4 -> 2x2
CONV_WIDTH = 8  # channels of the first conv, doubling per block (advisor.stack's layout); small, for a 2-core CPU
FC_LAYERS = 1  # hidden FC layers in the CNN head
HIDDEN_WIDTH = 128  # every hidden Linear (CNN head and MLP)
MLP_LAYERS = 2

# Rates of the hand-written variants.
HEAD_P = 0.5  # Hinton et al. 2012, AlexNet, Srivastava et al. 2014: 0.5 on FC hidden units
CONV_P = (0.1, 0.2)  # the seed thread: "p=0.1 or 0.2 ... CONV->RELU->DROP", rising with depth
INPUT_P = 0.2  # Srivastava et al. 2014: retain 0.8 on the inputs
HIDDEN_P = 0.5  # Srivastava et al. 2014: retain 0.5 on hidden units

ADVISOR = "advisor"


class PlanMappingError(AdvisorError):
    """A plan uses an operation or dropout kind the experiment cannot build for this dataset."""

    exit_code = 3


@dataclass(frozen=True)
class DropSite:
    position: int  # index in ``ops`` of the operation this site precedes
    kind: str
    p: float
    after: str
    before: str
    id: str | None = None
    recommendations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Blueprint:
    ops: tuple[Op, ...]
    sites: tuple[DropSite, ...]


Placer = Callable[[Sequence["Op"]], list[tuple[int, str, float]]]


@dataclass(frozen=True)
class Variant:
    name: str
    arch: Arch
    summary: str
    source: str
    place: Placer | None = field(default=None, repr=False)  # None: the advisor's plan decides
    batch_norm: bool = False


# ---- where each hand-written variant puts dropout ----


def _gaps(ops: Sequence[Op], test: Callable[[Op, Op], bool]) -> list[int]:
    return [i for i in range(1, len(ops)) if test(ops[i - 1], ops[i])]


def _conv_p(op: Op) -> float:
    return CONV_P[min(op.block or 0, len(CONV_P) - 1)]


def _head(ops: Sequence[Op]) -> list[tuple[int, str, float]]:
    # Dropout on the FC hidden units: after each head ReLU, before the next Linear or the output layer.
    gaps = _gaps(ops, lambda a, b: a.kind == "activation" and "head" in a.tags and b.kind in ("linear", "output"))
    return [(i, "dropout", HEAD_P) for i in gaps]


def _conv_relu(kind: str) -> Placer:
    def place(ops: Sequence[Op]) -> list[tuple[int, str, float]]:
        gaps = _gaps(ops, lambda a, b: a.kind == "activation" and "conv" in a.tags)
        return [(i, kind, _conv_p(ops[i - 1])) for i in gaps] + _head(ops)

    return place


def _after_pool(ops: Sequence[Op]) -> list[tuple[int, str, float]]:
    gaps = _gaps(ops, lambda a, b: a.kind == "pool")
    return [(i, "dropout", _conv_p(ops[i - 1])) for i in gaps] + _head(ops)


def _before_bn(ops: Sequence[Op]) -> list[tuple[int, str, float]]:
    gaps = _gaps(ops, lambda a, b: b.kind == "batchnorm" and "conv" in b.tags)
    return [(i, "dropout", _conv_p(ops[i])) for i in gaps] + _head(ops)


def _after_bn_relu(ops: Sequence[Op]) -> list[tuple[int, str, float]]:
    # conv -> BN -> ReLU -> DROP -> pool: DRP101's side of the pairing, dropout after BatchNorm and never
    # feeding one, at the same rates as drop-before-bn so that only the placement differs.
    gaps = [
        i
        for i in range(2, len(ops))
        if ops[i - 2].kind == "batchnorm" and ops[i - 1].kind == "activation" and "conv" in ops[i - 1].tags
    ]
    return [(i, "dropout", _conv_p(ops[i - 1])) for i in gaps] + _head(ops)


def _none(ops: Sequence[Op]) -> list[tuple[int, str, float]]:
    return []


def _mlp_hidden(ops: Sequence[Op]) -> list[tuple[int, str, float]]:
    gaps = _gaps(ops, lambda a, b: a.kind == "activation" and "hidden" in a.tags)
    return [(i, "dropout", HIDDEN_P) for i in gaps]


def _mlp_input_hidden(ops: Sequence[Op]) -> list[tuple[int, str, float]]:
    gaps = _gaps(ops, lambda a, b: a.kind == "input")
    return [(i, "dropout", INPUT_P) for i in gaps] + _mlp_hidden(ops)


_ADVISOR_SUMMARY = "the advisor's own plan for this network (dropout-advisor recommend)"

VARIANTS: dict[Arch, dict[str, Variant]] = {
    "cnn": {
        v.name: v
        for v in (
            Variant("none", "cnn", "no dropout", "baseline", _none),
            Variant(
                "fc-only",
                "cnn",
                f"dropout {HEAD_P:g} on the FC head's hidden units only",
                "Hinton et al. 2012; AlexNet (Krizhevsky et al. 2012)",
                _head,
            ),
            Variant(
                "conv-relu-drop",
                "cnn",
                f"CONV -> ReLU -> DROP at {CONV_P[0]:g}/{CONV_P[1]:g} (rising with depth), before the pool; "
                f"FC head {HEAD_P:g}",
                "the seed thread (Cross Validated 240305); Srivastava et al. 2014",
                _conv_relu("dropout"),
            ),
            Variant(
                "after-pool",
                "cnn",
                f"dropout {CONV_P[0]:g}/{CONV_P[1]:g} after each max-pool instead; FC head {HEAD_P:g}",
                "common Keras examples",
                _after_pool,
            ),
            Variant(
                "dropout2d",
                "cnn",
                f"channel-wise Dropout2d {CONV_P[0]:g}/{CONV_P[1]:g} after each conv ReLU; FC head {HEAD_P:g}",
                "Tompson et al. 2015 (SpatialDropout)",
                _conv_relu("dropout2d"),
            ),
            Variant(
                "drop-before-bn",
                "cnn",
                f"the anti-pattern: dropout {CONV_P[0]:g}/{CONV_P[1]:g} right before BatchNorm "
                f"(conv -> DROP -> BN -> ReLU); FC head {HEAD_P:g}",
                "Li et al. 2019 (variance shift)",
                _before_bn,
                batch_norm=True,
            ),
            Variant(
                "bn-only",
                "cnn",
                f"control for drop-before-bn: conv -> BN -> ReLU -> pool, no dropout in the conv stack; "
                f"FC head {HEAD_P:g}",
                "control: BatchNorm alone, the same network as drop-before-bn without its conv dropout",
                _head,
                batch_norm=True,
            ),
            Variant(
                "bn-then-drop",
                "cnn",
                f"control for drop-before-bn: conv -> BN -> ReLU -> DROP at {CONV_P[0]:g}/{CONV_P[1]:g} -> pool "
                f"(dropout after BN, never feeding it); FC head {HEAD_P:g}",
                "control: DRP101 (dropout after BatchNorm, never feeding it)",
                _after_bn_relu,
                batch_norm=True,
            ),
            Variant(ADVISOR, "cnn", _ADVISOR_SUMMARY, "the knowledge base"),
        )
    },
    "mlp": {
        v.name: v
        for v in (
            Variant("none", "mlp", "no dropout", "baseline", _none),
            Variant(
                "input-hidden",
                "mlp",
                f"dropout {INPUT_P:g} on the inputs and {HIDDEN_P:g} after each hidden ReLU",
                "Srivastava et al. 2014",
                _mlp_input_hidden,
            ),
            Variant(
                "hidden-only",
                "mlp",
                f"dropout {HIDDEN_P:g} after each hidden ReLU, none on the inputs",
                "Hinton et al. 2012",
                _mlp_hidden,
            ),
            Variant(ADVISOR, "mlp", _ADVISOR_SUMMARY, "the knowledge base"),
        )
    },
}


def variant_names(arch: Arch) -> list[str]:
    return list(VARIANTS[arch])


def select_variants(arch: Arch, names: Sequence[str] | None) -> list[Variant]:
    """The variants called ``names`` (all of the family when None), in the order given, without repeats."""
    table = VARIANTS[arch]
    if not names:
        return list(table.values())
    chosen: list[Variant] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name not in table:
            close = difflib.get_close_matches(name, list(table), n=2, cutoff=0.5)
            other = next((a for a in VARIANTS if a != arch and name in VARIANTS[a]), None)
            if close:
                msg = f"; did you mean {' or '.join(repr(c) for c in close)}?"
            elif other:
                msg = f" for --arch {arch} (it is a {other} variant)"
            else:
                msg = ""
            raise UsageError(f"unknown variant '{name}'{msg}", hint=f"{arch} variants: " + ", ".join(table))
        if table[name] not in chosen:
            chosen.append(table[name])
    if not chosen:
        raise UsageError("--variants names no variant", hint=f"{arch} variants: " + ", ".join(table))
    return chosen


# ---- the base stacks, in advisor.stack's layout ----


def base_ops(arch: Arch, *, batch_norm: bool = False) -> list[Op]:
    """The network every variant shares, laid out as the advisor lays out a CNN or an MLP."""
    from advisor.plan import Op

    ops = [Op(kind="input", label="input", tags=("input",))]
    if arch == "cnn":
        for i in range(CONV_BLOCKS):
            ch = CONV_WIDTH * 2**i
            ops.append(Op(kind="conv", label=f"Conv2d(→{ch}, 3×3)  block {i + 1}", tags=("conv",), block=i))
            if batch_norm:
                ops.append(Op(kind="batchnorm", label=f"BatchNorm2d({ch})", tags=("conv",), block=i))
            ops.append(Op(kind="activation", label="ReLU", tags=("conv",), block=i))
            ops.append(Op(kind="pool", label="MaxPool2d(2)", tags=("conv",), block=i))
        ops.append(Op(kind="flatten", label="Flatten", tags=("head",)))
        for j in range(FC_LAYERS):
            ops.append(Op(kind="linear", label=f"Linear(→{HIDDEN_WIDTH})  FC {j + 1}", tags=("head",), block=j))
            ops.append(Op(kind="activation", label="ReLU", tags=("head",), block=j))
    else:
        for i in range(MLP_LAYERS):
            ops.append(Op(kind="linear", label=f"Linear(→{HIDDEN_WIDTH})  hidden {i + 1}", tags=("hidden",), block=i))
            if batch_norm:
                ops.append(Op(kind="batchnorm", label=f"BatchNorm1d({HIDDEN_WIDTH})", tags=("hidden",), block=i))
            ops.append(Op(kind="activation", label="ReLU", tags=("hidden",), block=i))
    ops.append(Op(kind="output", label="Linear(→classes)  logits", tags=("final",)))
    return ops


def hand_blueprint(variant: Variant) -> Blueprint:
    if variant.place is None:
        raise ValueError(f"variant '{variant.name}' is built from the advisor's plan")
    ops = base_ops(variant.arch, batch_norm=variant.batch_norm)
    sites = sorted(variant.place(ops), key=lambda s: s[0])
    return Blueprint(
        ops=tuple(ops),
        sites=tuple(DropSite(pos, kind, p, ops[pos - 1].kind, ops[pos].kind) for pos, kind, p in sites),
    )


# ---- the advisor's plan ----


def advisor_spec(arch: Arch, *, samples: int, params: int | None = None) -> Spec:
    """The spec that describes the base network to the engine."""
    from advisor.spec import Spec

    if arch == "cnn":
        return Spec(
            arch="cnn",
            layers=CONV_BLOCKS,
            width=CONV_WIDTH,
            pooling="max",
            head="fc",
            fc_layers=FC_LAYERS,
            batch_norm=False,
            activation="relu",
            samples=samples,
            params=params,
            modality="image",
        )
    return Spec(
        arch="mlp",
        layers=MLP_LAYERS,
        width=HIDDEN_WIDTH,
        batch_norm=False,
        activation="relu",
        samples=samples,
        params=params,
        modality="tabular",
    )


def plan_blueprint(plan: Plan) -> Blueprint:
    """The plan as a blueprint: its layer stack and its sites, nothing else."""
    return Blueprint(
        ops=tuple(plan.layers),
        sites=tuple(
            DropSite(s.position, s.kind, s.p, s.after, s.before, s.id, tuple(s.recommendations))
            for s in sorted(plan.sites, key=lambda s: s.position)
            if s.kind != "none"
        ),
    )


# ---- blueprint -> nn.Sequential ----


def _dropout(site: DropSite, shape: tuple[int, ...]) -> nn.Module:
    from torch import nn

    spatial = len(shape) == 3
    if site.kind == "dropout":
        return nn.Dropout(site.p)
    if site.kind == "alpha-dropout":
        return nn.AlphaDropout(site.p)
    if site.kind in ("dropout2d", "feature-alpha-dropout") and spatial:
        return nn.Dropout2d(site.p) if site.kind == "dropout2d" else nn.FeatureAlphaDropout(site.p)
    where = f"between {site.after} and {site.before}"
    if site.kind in ("dropout2d", "feature-alpha-dropout"):
        raise PlanMappingError(
            f"the plan puts {site.kind} {where}, where the activations are not feature maps",
            hint="channel-wise dropout needs (N, C, H, W) activations",
        )
    raise PlanMappingError(
        f"the experiment cannot build a '{site.kind}' site ({where})",
        hint="it builds dropout, dropout2d and alpha-dropout sites",
    )


def build_model(bp: Blueprint, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    """One module per operation, the plan's dropout modules inserted before the operations they precede.

    Weighted layers are named by role and counter (``conv0``, ``fc0``, ``output``) so that two blueprints
    with the same base stack have the same state-dict keys and, built under one seed, the same weights.
    """
    from collections import OrderedDict

    from torch import nn

    n = len(bp.ops)
    for s in bp.sites:
        if not 0 <= s.position <= n:
            raise PlanMappingError(
                f"a dropout site sits at position {s.position}, outside the {n} operations",
                hint="this is a bug in the plan; report it",
            )
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    counters: dict[str, int] = {}

    def add(prefix: str, module: nn.Module, numbered: bool = True) -> None:
        k = counters.get(prefix, 0)
        counters[prefix] = k + 1
        mods[f"{prefix}{k}" if numbered else prefix] = module

    shape = tuple(input_shape)
    has_output = False
    for i in range(n + 1):
        for s in (s for s in bp.sites if s.position == i):
            add("drop", _dropout(s, shape))
        if i == n:
            break
        op = bp.ops[i]
        if op.kind == "input":
            continue
        if op.kind == "conv":
            if len(shape) != 3:
                raise PlanMappingError(
                    f"the plan has a conv after the features were flattened ({op.label})",
                    hint="this dataset's images are (1, 8, 8)",
                )
            out = CONV_WIDTH * 2 ** min(counters.get("conv", 0), 3)
            add("conv", nn.Conv2d(shape[0], out, kernel_size=3, padding=1))
            shape = (out, shape[1], shape[2])
        elif op.kind == "batchnorm":
            add("bn", nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
        elif op.kind == "activation":
            add("act", nn.ReLU())
        elif op.kind == "pool":
            if len(shape) != 3 or min(shape[1:]) < 2:
                raise PlanMappingError(
                    f"the plan pools {shape} activations ({op.label})",
                    hint="8x8 digits allow at most three 2x2 poolings",
                )
            add("pool", nn.AvgPool2d(2) if op.label.startswith("Avg") else nn.MaxPool2d(2))
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
        elif op.kind == "global-pool":
            add("gpool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
            shape = (shape[0],)
        elif op.kind == "flatten":
            if len(shape) > 1:
                add("flatten", nn.Flatten(), numbered=False)
                size = 1
                for d in shape:
                    size *= d
                shape = (size,)
        elif op.kind == "linear":
            if len(shape) != 1:
                add("flatten", nn.Flatten(), numbered=False)
                size = 1
                for d in shape:
                    size *= d
                shape = (size,)
            add("fc", nn.Linear(shape[0], HIDDEN_WIDTH))
            shape = (HIDDEN_WIDTH,)
        elif op.kind in ("output", "classifier"):
            if len(shape) != 1:
                raise PlanMappingError(
                    f"the plan's output layer gets {shape} activations, not features",
                    hint="a flatten or global pool must come first",
                )
            mods["output"] = nn.Linear(shape[0], n_classes)
            shape = (n_classes,)
            has_output = True
        else:
            raise PlanMappingError(
                f"the experiment cannot build a '{op.kind}' operation ({op.label})",
                hint="it builds conv, batchnorm, activation, pool, flatten, linear and output",
            )
    if not has_output:
        raise PlanMappingError("the plan has no output layer", hint="this is a bug in the plan; report it")
    return nn.Sequential(mods)


def count_params(model: Any) -> int:
    return sum(int(p.numel()) for p in model.parameters())
