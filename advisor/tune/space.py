"""The search space: which placements and which rates ``tune`` tries, derived from the advisor's plan.

The plan for the network ``tune`` trains names its dropout *site groups* (by where they sit: ``input``,
``hidden``, ``conv``, ``head`` for the flattened features, ``fc`` after the FC head's activations). Each
group gets one rate, searched in ``[0, upper end of the range the plan cites for it]``: the rate of the
group's deepest site; shallower sites keep the plan's proportions (DRP201's rise with depth), so the plan
itself is one point of the space. The placement is a categorical choice among the placements
``experiment`` knows for the family (``none``, ``fc-only``, ``conv-relu-drop``, ``after-pool``,
``dropout2d`` for a CNN; ``none``, ``input-hidden``, ``hidden-only`` for an MLP) and the plan's own
(``advisor``); placements that put the same kinds of dropout in the same places are one choice, with the
other names kept as aliases. The BatchNorm controls of ``experiment`` train another network and are not
part of the space.

A ``--space`` TOML file narrows or widens it::

    placements = ["advisor", "fc-only", "none"]   # a subset, by name or alias
    [rates.conv]                                   # one table per group
    low = 0.0
    high = 0.4                                     # wider than the cited 0.25; must stay below 1
    step = 0.05                                    # optional grid
    [rates.fc]
    value = 0.5                                    # fixed, not searched
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from advisor.errors import UsageError
from advisor.experiment.variants import (
    ADVISOR,
    HEAD_P,
    HIDDEN_P,
    INPUT_P,
    VARIANTS,
    Blueprint,
    DropSite,
    PlanMappingError,
    hand_blueprint,
    plan_blueprint,
)
from advisor.plan import Op

if TYPE_CHECKING:
    from advisor.plan import Plan, PlanSite

Arch = Literal["cnn", "mlp"]

PLACEMENT_PARAM = "placement"
GROUP_ORDER = ("input", "hidden", "conv", "head", "fc")
GROUP_PURPOSE = {
    "input": "on the input features",
    "hidden": "after each hidden layer's activation",
    "conv": "in the conv stack",
    "head": "on the flattened features",
    "fc": "after each FC head activation",
}
# Where the plan cites no range for a group that a hand-written placement uses, the bound is the rate
# experiment's variant uses there (advisor/experiment/variants.py cites each).
FALLBACK_HIGH = {
    "input": (INPUT_P, "experiment's input-hidden variant: Srivastava et al. 2014 (retain 0.8 on inputs)"),
    "hidden": (HIDDEN_P, "experiment's hidden-only variant: Srivastava et al. 2014 (retain 0.5 on hidden units)"),
    "conv": (0.2, "experiment's conv variants: the seed thread's p=0.1 or 0.2 after conv ReLUs"),
    "head": (HEAD_P, "experiment's FC-head rate: Hinton et al. 2012"),
    "fc": (HEAD_P, "experiment's fc-only variant: Hinton et al. 2012; AlexNet"),
}
MAX_P = 0.95  # a drop probability of 1 zeroes the layer; Optuna needs a closed range below it


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpaceSite(_Frozen):
    """One dropout site of a placement: where (before ``ops[position]``), which kind, which group."""

    position: int
    kind: str
    group: str
    block: int | None = None
    after: str
    before: str
    id: str | None = None  # the plan's site ID, for the advisor's placement
    recommendations: list[str] = Field(default_factory=list)

    def p_of(self, plan_sites: Mapping[str, PlanSite]) -> float:
        """This site's rate in the plan it came from."""
        assert self.id is not None
        return plan_sites[self.id].p


class Placement(_Frozen):
    name: str
    aliases: list[str] = Field(default_factory=list)
    source: str
    ops: list[Op]
    sites: list[SpaceSite]

    @property
    def groups(self) -> list[str]:
        used = {s.group for s in self.sites}
        return [g for g in GROUP_ORDER if g in used]

    @property
    def summary(self) -> str:
        if not self.sites:
            return "no dropout"
        parts = []
        for g in self.groups:
            kinds = sorted({s.kind for s in self.sites if s.group == g})
            where = sorted({f"{s.after}→{s.before}" for s in self.sites if s.group == g})
            parts.append(f"{g}: {'/'.join(kinds)} {', '.join(where)}")
        return "; ".join(parts)


class RateGroup(_Frozen):
    name: str
    low: float = Field(ge=0.0)
    high: float = Field(le=MAX_P)
    step: float | None = None
    plan_p: float | None = None  # the plan's rate for this group's deepest site; None: no plan site here
    ratios: dict[int, float] = Field(default_factory=dict)  # block -> share of the group's rate (plan schedule)
    source: str
    recommendations: list[str] = Field(default_factory=list)

    @property
    def param(self) -> str:
        return f"p_{self.name}"

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def contains(self, p: float) -> bool:
        """Whether Optuna can suggest ``p`` here (inside the range and, with a step, on its grid)."""
        if not self.low - 1e-12 <= p <= self.high + 1e-12:
            return False
        return self.step is None or abs((p - self.low) / self.step - round((p - self.low) / self.step)) < 1e-9

    def rate_at(self, p: float, block: int | None) -> float:
        ratio = self.ratios.get(block, 1.0) if block is not None else 1.0
        return round(p * ratio, 6)


class SearchSpace(_Frozen):
    """Every choice ``tune`` makes in a trial. Serialized into the study so that a study searched with a
    different space is recognised; :meth:`fingerprint` hashes it."""

    arch: Arch
    placements: list[Placement]
    groups: list[RateGroup]
    advisor: str | None  # the placement that is the plan's own (None: narrowed away)
    advisor_params: dict[str, Any]  # the parameters that reproduce the plan exactly
    advisor_inside: bool = True  # False when --space narrowed the plan's own point away

    def group(self, name: str) -> RateGroup:
        return next(g for g in self.groups if g.name == name)

    def placement(self, name: str) -> Placement:
        return next(p for p in self.placements if p.name == name)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def blueprint(self, params: Mapping[str, Any], placement: Placement | None = None) -> Blueprint:
        """The network for a trial's parameters: ``placement`` plus ``p_<group>`` for each group it uses."""
        chosen = placement or self.placement(str(params[PLACEMENT_PARAM]))
        sites = []
        for s in chosen.sites:
            group = self.group(s.group)
            p = float(params[group.param])
            sites.append(
                DropSite(
                    s.position,
                    s.kind,
                    group.rate_at(p, s.block),
                    s.after,
                    s.before,
                    s.id,
                    tuple(s.recommendations),
                )
            )
        return Blueprint(ops=tuple(chosen.ops), sites=tuple(sites))

    def describe(self, params: Mapping[str, Any]) -> str:
        """A short label: ``advisor conv=0.25 fc=0.5``."""
        name = str(params[PLACEMENT_PARAM])
        rates = " ".join(
            f"{g}={float(params[f'p_{g}']):.3g}" for g in self.placement(name).groups if f"p_{g}" in params
        )
        return f"{name} {rates}".strip()


# ---- from the plan ----


def site_group(ops: Sequence[Op], position: int) -> tuple[str, int | None]:
    """The group of a site placed before ``ops[position]``, and the block it belongs to."""
    if not 0 < position <= len(ops):
        raise PlanMappingError(f"a site at position {position} is outside the network", hint="a bug; report it")
    a = ops[position - 1]
    b = ops[position] if position < len(ops) else None
    if a.kind == "input":
        return "input", None
    if "conv" in a.tags or (b is not None and "conv" in b.tags):
        return "conv", a.block if "conv" in a.tags else b.block if b is not None else None
    if "hidden" in a.tags:
        return "hidden", a.block
    if "head" in a.tags:
        return ("fc", a.block) if a.kind == "activation" else ("head", None)
    raise PlanMappingError(
        f"tune cannot group a dropout site after '{a.label}'",
        hint="tune searches the sites of experiment's MLP and CNN",
    )


def _sites(ops: Sequence[Op], sites: Sequence[DropSite]) -> list[SpaceSite]:
    out = []
    for s in sites:
        group, block = site_group(ops, s.position)
        out.append(
            SpaceSite(
                position=s.position,
                kind=s.kind,
                group=group,
                block=block,
                after=s.after,
                before=s.before,
                id=s.id,
                recommendations=list(s.recommendations),
            )
        )
    return out


def _signature(p: Placement) -> tuple[object, ...]:
    return tuple(o.kind for o in p.ops), tuple((s.position, s.kind) for s in p.sites)


def derive_space(plan: Plan, arch: Arch) -> SearchSpace:
    """The full space for ``arch`` around ``plan`` (the advisor's plan for the network tune trains)."""
    advisor_bp = plan_blueprint(plan)
    candidates = [
        Placement(
            name=ADVISOR,
            source="the advisor's plan",
            ops=list(advisor_bp.ops),
            sites=_sites(advisor_bp.ops, advisor_bp.sites),
        )
    ]
    for v in VARIANTS[arch].values():
        if v.place is None or v.batch_norm:
            continue
        bp = hand_blueprint(v)
        candidates.append(Placement(name=v.name, source=v.source, ops=list(bp.ops), sites=_sites(bp.ops, bp.sites)))
    placements: list[Placement] = []
    for c in candidates:
        twin = next((p for p in placements if _signature(p) == _signature(c)), None)
        if twin is None:
            placements.append(c)
        else:
            placements[placements.index(twin)] = twin.model_copy(update={"aliases": [*twin.aliases, c.name]})
    # 'none' first, then the plan, then the rest: a stable order for the categorical
    placements.sort(key=lambda p: (p.name != "none", p.name != ADVISOR))

    plan_sites = {s.id: s for s in plan.sites}
    groups: list[RateGroup] = []
    used = {g for p in placements for g in p.groups}
    for name in GROUP_ORDER:
        if name not in used:
            continue
        mine = [s for s in candidates[0].sites if s.group == name]
        if mine:
            cited = {s.id: plan_sites[s.id] for s in mine if s.id is not None}.values()
            high = max(c.p_range[1] for c in cited)
            top = max(c.p for c in cited)
            ratios = {s.block: (s.p_of(plan_sites) / top if top > 0 else 1.0) for s in mine if s.block is not None}
            recs = sorted({r for c in cited for r in c.recommendations})
            ids = ", ".join(c.id for c in cited)
            low_cited = min(c.p_range[0] for c in cited)
            source = f"plan sites {ids} ({', '.join(recs)}): cited range {low_cited:g}–{high:g}"
            groups.append(
                RateGroup(
                    name=name,
                    low=0.0,
                    high=min(high, MAX_P),
                    plan_p=top,
                    ratios=ratios,
                    source=source,
                    recommendations=recs,
                )
            )
        else:
            high, why = FALLBACK_HIGH[name]
            groups.append(RateGroup(name=name, low=0.0, high=high, source=f"no plan site; {why}"))

    advisor = next(p for p in placements if p.name == ADVISOR or ADVISOR in p.aliases)
    params: dict[str, Any] = {PLACEMENT_PARAM: advisor.name}
    for g in groups:
        if g.name in advisor.groups and g.plan_p is not None:
            params[g.param] = g.plan_p
    return SearchSpace(arch=arch, placements=placements, groups=groups, advisor=advisor.name, advisor_params=params)


# ---- --space files ----


class RateSpec(_Frozen):
    low: float | None = None
    high: float | None = None
    value: float | None = None
    step: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _check(self) -> RateSpec:
        for name in ("low", "high", "value"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0.0 <= v <= MAX_P):
                raise ValueError(f"'{name}' = {v:g} is not a drop probability in [0, {MAX_P:g}]")
        if self.value is not None and (self.low is not None or self.high is not None or self.step is not None):
            raise ValueError("'value' fixes the rate: give either value, or low/high/step")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low = {self.low:g} is above high = {self.high:g}")
        return self


class SpaceFile(_Frozen):
    placements: list[str] | None = None
    rates: dict[str, RateSpec] = Field(default_factory=dict)


def _space_error(path: Path, exc: ValidationError) -> UsageError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(
            str(err["loc"][-1]), ["placements", "rates", "low", "high", "value", "step"], n=1
        )
        msg = "unknown field" + (f"; did you mean '{close[0]}'?" if close else "")
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return UsageError(
        f"{path}: '{loc}': {msg}{more}",
        hint="a space file has 'placements = [...]' and [rates.<group>] tables with low/high/step or value",
    )


def load_space_file(path: Path) -> SpaceFile:
    """Read and validate a ``--space`` TOML file; every problem is a :class:`UsageError` naming the field."""
    from advisor.fileio import read_user_text

    try:
        text = read_user_text(path, "space file", "TOML")
    except Exception as exc:  # SpecError from the shared reader: same words, a usage error here
        raise UsageError(str(exc), hint=getattr(exc, "hint", None)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}", hint="fix the syntax") from None
    try:
        return SpaceFile.model_validate(data)
    except ValidationError as exc:
        raise _space_error(path, exc) from None


def apply_space_file(space: SearchSpace, spec: SpaceFile, path: Path) -> SearchSpace:
    """``space`` narrowed or widened by ``spec``; unknown names get close matches."""
    placements = space.placements
    if spec.placements is not None:
        by_name = {n: p for p in space.placements for n in (p.name, *p.aliases)}
        chosen: list[Placement] = []
        for raw in spec.placements:
            if raw not in by_name:
                close = difflib.get_close_matches(raw, list(by_name), n=2, cutoff=0.5)
                hint = f"{space.arch} placements: " + ", ".join(p.name for p in space.placements)
                suggestion = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise UsageError(f"{path}: unknown placement '{raw}'{suggestion}", hint=hint)
            if by_name[raw] not in chosen:
                chosen.append(by_name[raw])
        if not chosen:
            raise UsageError(f"{path}: 'placements' is empty", hint="name at least one placement")
        placements = [p for p in space.placements if p in chosen]

    known = {g.name: g for g in space.groups}
    groups = dict(known)
    for name, rate in spec.rates.items():
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
            suggestion = f"; did you mean '{close[0]}'?" if close else ""
            raise UsageError(
                f"{path}: unknown rate group '{name}'{suggestion}",
                hint=f"{space.arch} groups here: {', '.join(known)}",
            )
        g = known[name]
        if rate.value is not None:
            low = high = rate.value
        else:
            low = g.low if rate.low is None else rate.low
            high = g.high if rate.high is None else rate.high
        if low > high:
            raise UsageError(f"{path}: rates.{name}: low {low:g} is above high {high:g}", hint="swap them or fix one")
        groups[name] = g.model_copy(
            update={"low": low, "high": high, "step": rate.step, "source": f"{g.source}; {path.name}: {low:g}–{high:g}"}
        )

    used = {n for p in placements for n in p.groups}
    advisor = next((p for p in placements if p.name == space.advisor), None)
    inside = advisor is not None and all(
        groups[g].contains(space.advisor_params[f"p_{g}"]) for g in advisor.groups if f"p_{g}" in space.advisor_params
    )
    return space.model_copy(
        update={
            "placements": placements,
            "groups": [groups[n] for n in GROUP_ORDER if n in groups and n in used],
            "advisor": advisor.name if advisor is not None else None,
            "advisor_inside": inside,
        }
    )
