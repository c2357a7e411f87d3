"""The engine: a validated spec in, a placement plan out. Pure; driven by the knowledge base.

Each active recommendation may carry an ``[engine]`` table saying when it applies (conditions on the
spec) and what it does (place sites at matching gaps of the layer stack, list places to avoid, add a
note, or disable dropout). Adding a recommendation file is enough to change the advice.

Rates start at the recommendation's default (or the gap's own value) and move within the cited range
the way DRP201 describes: a strong train/validation gap or little data pushes them up, plenty of data,
pretraining or underfitting pushes them down. Every move is written into the site's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from advisor.knowledge import KnowledgeBase, default_kb
from advisor.plan import AvoidEntry, Note, Op, Plan, PlanSite
from advisor.schema import Condition, Match, Recommendation
from advisor.spec import Spec
from advisor.stack import build_stack

RATE_RULE = "DRP201"
STRUCTURAL = {"recurrent-connection", "identity-path"}


def recommend(spec: Spec, kb: KnowledgeBase | None = None) -> Plan:
    kb = kb or default_kb()
    s = spec.resolved()
    ops = build_stack(s)
    applicable = [r for r in kb.active() if r.engine is not None and applies(r, s)]
    superseded = {other for r in applicable for other in r.engine.supersedes}  # type: ignore[union-attr]
    applicable = [r for r in applicable if r.id not in superseded]
    applicable.sort(key=lambda r: (-r.engine.priority, r.id))  # type: ignore[union-attr]

    claims: dict[int, list[_Claim]] = {}
    avoid: list[AvoidEntry] = []
    avoided_gaps: set[int] = set()
    notes: list[Note] = []
    disabled_by: list[Recommendation] = []

    for rec in applicable:
        eng = rec.engine
        assert eng is not None
        if eng.action == "place":
            gaps = _select(_gaps(ops, eng.at), eng.scope)
            for pos, match in gaps:
                claims.setdefault(pos, []).append(_Claim(rec, match))
            if eng.avoid_at:
                entry, _ = _avoid_entry(rec, ops, eng.avoid_at)
                avoid.append(entry)
        elif eng.action == "avoid":
            entry, positions = _avoid_entry(rec, ops, eng.at)
            avoid.append(entry)
            avoided_gaps.update(positions)
        elif eng.action == "note":
            notes.append(
                Note(
                    text=rec.summary,
                    recommendations=[rec.id],
                    citations=list(rec.citations),
                    contested=rec.contested,
                )
            )
        elif eng.action == "disable":
            disabled_by.append(rec)

    sites: list[PlanSite] = []
    for pos in sorted(claims):
        if pos in avoided_gaps:
            continue
        sites.append(_site(pos, claims[pos], ops, s, kb))

    if disabled_by:
        rec = disabled_by[0]
        notes.insert(
            0,
            Note(
                text=f"{rec.summary} The {len(sites)} site(s) that would apply otherwise are left out.",
                recommendations=[r.id for r in disabled_by],
                citations=sorted({c for r in disabled_by for c in r.citations}),
            ),
        )
        sites = []

    sites = [site.model_copy(update={"id": f"S{i + 1}"}) for i, site in enumerate(sites)]
    return Plan(spec=s.model_dump(exclude_none=True), layers=ops, sites=sites, avoid=avoid, notes=notes)


# ---- conditions ----


def applies(rec: Recommendation, s: Spec) -> bool:
    assert rec.engine is not None
    return any(_holds(c, s) for c in rec.engine.when)


def _holds(c: Condition, s: Spec) -> bool:
    def one_of(allowed: Sequence[object] | None, value: object) -> bool:
        return allowed is None or value in allowed

    def equal(want: bool | None, value: object) -> bool:
        return want is None or bool(value) == want

    layers = s.layers or 1
    return (
        one_of(c.arch, s.arch)
        and equal(c.batch_norm, s.batch_norm)
        and one_of(c.activation, s.activation)
        and (c.activation_not is None or s.activation not in c.activation_not)
        and one_of(c.head, s.head)
        and one_of(c.pooling, s.pooling)
        and equal(c.wide, s.wide)
        and one_of(c.cell, s.cell)
        and one_of(c.rnn_task, s.rnn_task)
        and (c.min_layers is None or layers >= c.min_layers)
        and (c.max_layers is None or layers <= c.max_layers)
        and one_of(c.transformer, s.transformer)
        and one_of(c.norm, s.norm)
        and one_of(c.gnn, s.gnn)
        and one_of(c.regime, s.regime)
        and one_of(c.overfitting, s.overfitting)
        and equal(c.underfitting, s.underfitting)
        and equal(c.uncertainty, s.uncertainty)
        and one_of(c.modality, s.modality)
        and (c.modality_not is None or s.modality not in c.modality_not)
        and equal(c.embeddings, s.embeddings)
        and (c.min_params is None or (s.params or 0) >= c.min_params)
        and (c.min_samples is None or (s.samples or 0) >= c.min_samples)
    )


# ---- gaps ----


def _op_matches(op: Op, kind: str, tag: str | None) -> bool:
    return (kind == "any" or op.kind == kind) and (tag is None or tag in op.tags)


def _gaps(ops: list[Op], matches: list[Match]) -> list[tuple[int, Match]]:
    """Positions p (a gap between ops[p-1] and ops[p]) matched by any of ``matches``; first match wins."""
    found: list[tuple[int, Match]] = []
    for pos in range(1, len(ops)):
        for m in matches:
            if _op_matches(ops[pos - 1], m.after, m.after_tag) and _op_matches(ops[pos], m.before, m.before_tag):
                found.append((pos, m))
                break
    return found


def _select(gaps: list[tuple[int, Match]], scope: str) -> list[tuple[int, Match]]:
    if not gaps:
        return gaps
    if scope == "first":
        return gaps[:1]
    if scope == "last":
        return gaps[-1:]
    if scope == "all-but-last":
        return gaps[:-1]
    return gaps


def _describe(ops: list[Op], positions: list[int]) -> str:
    labels = [f"between {ops[p - 1].label} and {ops[p].label}" for p in positions]
    if len(labels) > 3:
        return "; ".join(labels[:2]) + f"; … ({len(labels)} places)"
    return "; ".join(labels)


def _avoid_entry(rec: Recommendation, ops: list[Op], matches: list[Match]) -> tuple[AvoidEntry, list[int]]:
    gaps = _gaps(ops, matches)
    positions = [p for p, _ in gaps]
    m = matches[0]
    if positions:
        where = _describe(ops, positions)
    else:
        where = m.label or rec.site.description
    return (
        AvoidEntry(
            after=m.after,
            before=m.before,
            where=where,
            reason=rec.summary,
            recommendations=[rec.id],
            citations=list(rec.citations),
        ),
        positions,
    )


# ---- sites and rates ----


@dataclass
class _Claim:
    rec: Recommendation
    match: Match
    extra: list[str] = field(default_factory=list)


def _site(pos: int, claims: list[_Claim], ops: list[Op], s: Spec, kb: KnowledgeBase) -> PlanSite:
    win = claims[0]  # highest priority first
    rec, match = win.rec, win.match
    eng = rec.engine
    assert eng is not None
    kind = match.kind or rec.site.kind
    module = (match.module or rec.site.module).replace("{cell}", (s.cell or "lstm").upper())
    rate = rec.rate
    low, high = (rate.low, rate.high) if rate else (0.0, 0.0)
    default = match.p if match.p is not None else (rate.default if rate else 0.0)
    low, high = min(low, default), max(high, default)
    before, after = ops[pos], ops[pos - 1]
    block = after.block if after.block is not None else before.block

    p, why, t = _adjust(default, low, high, s)
    schedule = "early" if s.underfitting else eng.schedule
    if eng.schedule == "rise-with-depth" and block is not None:
        n = _blocks_with_tag(ops, after)
        if kind == "drop-path":
            # Stochastic depth: p_l = (l / L) * p_L, the identity always kept (Huang et al. 2016).
            p = round(p * (block + 1) / n, 3)
            why.append(f"rises linearly with depth to {p:g} at block {block + 1} of {n}")
        elif n > 1:
            # Rise from the low to the high end with depth; the situation steepens (t > 0) or flattens
            # (t < 0) the slope, so plenty of data keeps every block near the low end.
            depth = block / (n - 1)
            p = round(low + (high - low) * min(max(depth * (1.0 + t), 0.0), 1.0), 3)
            why.append(f"rises with depth: block {block + 1} of {n} gets {p:g} of the {low:g}–{high:g} range")
    p = min(max(p, 0.0), 0.95)

    recs = [c.rec.id for c in claims]
    cites: list[str] = []
    for c in claims:
        for key in (c.rec.rate.citations if c.rec.rate else []) + list(c.rec.citations):
            if key not in cites:
                cites.append(key)
    if why and RATE_RULE in kb.recommendations and RATE_RULE not in recs:
        recs.append(RATE_RULE)
    reason = rec.summary + (" Rate: " + "; ".join(why) + "." if why else "")
    return PlanSite(
        id="S0",
        position=pos,
        after=after.kind,
        before=before.kind,
        after_label=after.label,
        before_label=before.label,
        block=block,
        kind=kind,
        module=module,
        p=round(p, 3),
        p_range=(low, high),
        schedule=schedule,
        reason=reason,
        recommendations=recs,
        citations=cites,
    )


def _blocks_with_tag(ops: list[Op], op: Op) -> int:
    blocks = {o.block for o in ops if o.kind == op.kind and set(o.tags) & set(op.tags) and o.block is not None}
    return max(len(blocks), 1)


def _adjust(default: float, low: float, high: float, s: Spec) -> tuple[float, list[str], float]:
    """Move the rate inside [low, high]: t = -1 is the low end, 0 the default, +1 the high end."""
    t = 0.0
    why: list[str] = []
    if s.overfitting == "strong":
        t += 1.0
        why.append("strong train/validation gap → top of the range")
    elif s.overfitting == "none":
        t -= 0.5
        why.append("no overfitting seen → lower")
    if s.samples is not None:
        if s.samples < 5_000:
            t += 0.5
            why.append(f"small data ({s.samples:,} examples) → higher")
        elif s.samples >= 10_000_000:
            t -= 1.0
            why.append(f"very large data ({s.samples:,} examples) → bottom of the range")
        elif s.samples >= 1_000_000:
            t -= 0.5
            why.append(f"large data ({s.samples:,} examples) → lower")
    if s.samples is not None and s.params is not None:
        # DRP201: on a fixed dataset bigger models take more dropout; data that outgrows the model, less.
        ratio = s.params / s.samples
        if ratio >= 1_000:
            t += 0.5
            why.append(f"{ratio:,.0f} parameters per training example → higher")
        elif ratio <= 0.01:
            t -= 0.5
            why.append("far more training examples than parameters → lower")
    if s.regime == "pretraining":
        t -= 1.0
        why.append("pretraining → bottom of the range")
    if s.underfitting:
        t = -1.0
        why = ["underfitting → bottom of the range, as early dropout (DRP202)"]
    t = max(-1.0, min(1.0, t))
    if not why or high == low:
        return default, (why if high != low else []), t
    p = default + t * (high - default) if t > 0 else default + t * (default - low)
    return round(p, 3), why, t
