"""The engine: a validated spec in, a placement plan out. Pure; driven by the knowledge base.

Each active recommendation may carry an ``[engine]`` table saying when it applies (conditions on the
spec) and what it does (place sites at matching gaps of the layer stack, list places to avoid, add a
note, or disable dropout). Adding a recommendation file is enough to change the advice.

Rates are always values the sources give: a recommendation's default, or an end of its cited range.
A rate rule of the entry (``engine.rate_rules``, e.g. Zaremba's large LSTM) picks the starting value;
then the situation pushes, as DRP201 describes (a strong train/validation gap up; no overfitting or
pretraining down). A net push up gives the top of the cited range, a net push down its bottom, no
push keeps the starting value. There are no in-between values. Every move is written into the
site's reason. Every number a condition compares the spec with (examples, tokens per parameter,
units, blocks) is written in its entry's ``engine.thresholds`` with its source.

The regime decides what is advised at all:

- **scratch**: the knowledge base's placement, with the moves above;
- **fine-tuning** without ``--base``: the pretrained model's own dropout is unknown here, so only the
  sites an entry writes for fine-tuning (a new task head) are placed, and a note points to ``audit``;
- **pretraining**: language-model pretraining on many more tokens than parameters gets no dropout at
  any size (DRP205, threshold and sources in the entry); otherwise rates go to the bottom of the range;
- **--base NAME**: the recipe's own sites and rates for that regime (:mod:`advisor.advise.base`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from advisor.advise.depth import block_range, block_rate, explain
from advisor.knowledge import KnowledgeBase, default_kb
from advisor.plan import AvoidEntry, Note, Op, Plan, PlanSite
from advisor.schema import Condition, Match, Recipe, Recommendation
from advisor.spec import Spec
from advisor.stack import build_stack, op_tags

RATE_RULE = "DRP201"
EARLY_RULE = "DRP202"
STRUCTURAL = {"recurrent-connection", "identity-path"}


def layer_module(module: str, s: Spec, ops: Sequence[Op], pos: int) -> str:
    """``module`` as PyTorch's Transformer layers hold it, for the site in the gap before ``ops[pos]``.

    The knowledge entries name ``nn.TransformerEncoderLayer(dropout=)``; that one argument sets three
    modules at once (torch 2.13: ``.dropout1`` after self-attention, ``.dropout2`` after the feed-forward,
    and ``.dropout`` inside the feed-forward; a decoder layer has ``.dropout1`` self-attention, ``.dropout2``
    cross-attention, ``.dropout3`` feed-forward and ``.dropout``). The hint names the module of this gap, so
    a plan without a feed-forward dropout (BERT, GPT-2) is not read as "set dropout=" on all three.
    Other modules are returned unchanged.
    """
    encoder_layer = "nn.TransformerEncoderLayer(dropout=)"
    if module != encoder_layer or s.arch != "transformer" or not 0 < pos < len(ops):
        return module
    after, before = ops[pos - 1], ops[pos]
    decoder = s.transformer == "decoder" or any(
        "decoder" in op.tags or " decoder " in f" {op.label} " for op in (after, before)
    )
    layer = "nn.TransformerDecoderLayer" if decoder else "nn.TransformerEncoderLayer"
    attr = None
    if before.kind == "residual-add" and after.kind == "attention":
        weights = next((op for op in reversed(ops[:pos]) if op.kind == "attention-weights"), None)
        cross = weights is not None and "cross-attention" in weights.label
        attr = "dropout2" if cross else "dropout1"
    elif before.kind == "residual-add" and after.kind == "linear":
        attr = "dropout3" if decoder else "dropout2"
    elif after.kind == "activation" and before.kind == "linear":
        attr = "dropout"
    if attr is None:
        return f"{layer}(dropout=)"
    return f"{layer}.{attr} (dropout=)"


def _torch_layer_note(sites: Sequence[PlanSite]) -> Note | None:
    """A note when a plan drops on a Transformer layer's residual branches but not inside its feed-forward:
    PyTorch's layers tie the two to one ``dropout=`` (see :func:`layer_module`)."""
    layers = [
        site.module
        for site in sites
        if site.module.startswith(("nn.TransformerEncoderLayer.", "nn.TransformerDecoderLayer."))
    ]
    if not layers or any(m.split(" ")[0].endswith(".dropout") for m in layers):
        return None
    return Note.model_construct(
        text=(
            "PyTorch's nn.TransformerEncoderLayer / nn.TransformerDecoderLayer set all their dropouts from one "
            "dropout= argument, including one inside the feed-forward (.dropout) that this plan does not have "
            "(neither do BERT and GPT-2). With those layers, build them with dropout=p and then set "
            "layer.dropout.p = 0 on each, or write the block yourself (generate does)."
        ),
        recommendations=["DRP017", "DRP019"],
        citations=["pytorch-transformer-layers"],
    )


def recommend(spec: Spec, kb: KnowledgeBase | None = None, *, ops: list[Op] | None = None) -> Plan:
    """The placement plan for ``spec``, on the stack it describes or, given ``ops``, on that operation list.

    With ``spec.base`` the recipe fills every field the spec does not set (see
    :func:`advisor.advise.base.with_base`). ``ops`` is a real model's operation list, tagged as
    :mod:`advisor.stack` tags its stacks (see :func:`advisor.advise.infer.layer_ops`); the plan's
    positions then index into it. Raises :class:`~advisor.errors.SpecError` for an unknown base or a
    base of another family.
    """
    from advisor.advise.base import with_base

    kb = kb or default_kb()
    filled, recipe = with_base(spec, kb)
    s = filled.resolved()
    ops = build_stack(s) if ops is None else ops
    engine = _Engine(kb, s, ops, recipe)
    return engine.run()


# ---- conditions ----


def applies(rec: Recommendation, s: Spec, *, base: bool = False) -> bool:
    assert rec.engine is not None
    return any(holds(c, s, base=base) for c in rec.engine.when)


def holds(c: Condition, s: Spec, *, base: bool = False) -> bool:
    """Whether every field of the condition holds for the (resolved) spec."""

    def one_of(allowed: Sequence[object] | None, value: object) -> bool:
        return allowed is None or value in allowed

    def equal(want: bool | None, value: object) -> bool:
        return want is None or bool(value) == want

    layers = s.layers or 1
    width = s.width or 0
    known = s.samples is not None and s.params is not None
    ratio = (s.samples or 0) / s.params if known and s.params else None
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
        and one_of(c.positions, s.positions)
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
        and (c.max_samples is None or s.samples is None or s.samples <= c.max_samples)
        and (c.min_width is None or width >= c.min_width)
        and (c.max_width is None or width <= c.max_width)
        and (c.min_samples_per_param is None or (ratio is not None and ratio >= c.min_samples_per_param))
        and equal(c.size_known, known)
        and equal(c.base, base)
    )


def holds_structurally(c: Condition, s: Spec) -> bool:
    """Only the architecture part of a condition (family, kind of network, input), not data or regime."""

    def one_of(allowed: Sequence[object] | None, value: object) -> bool:
        return allowed is None or value in allowed

    return (
        one_of(c.arch, s.arch)
        and one_of(c.transformer, s.transformer)
        and one_of(c.gnn, s.gnn)
        and one_of(c.cell, s.cell)
        and one_of(c.rnn_task, s.rnn_task)
        and (c.wide is None or bool(s.wide) == c.wide)
        and (c.modality_not is None or s.modality not in c.modality_not)
        and one_of(c.modality, s.modality)
        and (c.activation_not is None or s.activation not in c.activation_not)
    )


# ---- gaps ----


def _op_matches(ops: list[Op], index: int, kind: str, tag: str | None) -> bool:
    op = ops[index]
    return (kind == "any" or op.kind == kind) and (tag is None or tag in op_tags(ops, index))


def match_at(ops: list[Op], pos: int, m: Match) -> bool:
    """Whether the gap before ``ops[pos]`` is matched by ``m`` (and the op after it, if ``m.then`` is set)."""
    if not (_op_matches(ops, pos - 1, m.after, m.after_tag) and _op_matches(ops, pos, m.before, m.before_tag)):
        return False
    if m.then is None:
        return True
    return pos + 1 < len(ops) and _op_matches(ops, pos + 1, m.then, m.then_tag)


def gaps(ops: list[Op], matches: list[Match]) -> list[tuple[int, Match]]:
    """Positions p (a gap between ops[p-1] and ops[p]) matched by any of ``matches``; first match wins."""
    found: list[tuple[int, Match]] = []
    for pos in range(1, len(ops)):
        for m in matches:
            if match_at(ops, pos, m):
                found.append((pos, m))
                break
    return found


def _select(found: list[tuple[int, Match]], scope: str) -> list[tuple[int, Match]]:
    if not found:
        return found
    if scope == "first":
        return found[:1]
    if scope == "last":
        return found[-1:]
    if scope == "all-but-last":
        return found[:-1]
    return found


def _describe(ops: list[Op], positions: list[int]) -> str:
    labels = [f"between {ops[p - 1].label} and {ops[p].label}" for p in positions]
    if len(labels) > 3:
        return "; ".join(labels[:2]) + f"; … ({len(labels)} places)"
    return "; ".join(labels)


def rec_text(rec: Recommendation) -> str:
    """What a plan says for this entry: the engine's own sentence when the summary does not fit every plan."""
    return rec.engine.text if rec.engine is not None and rec.engine.text else rec.summary


def denied(rec: Recommendation, ops: list[Op], site: PlanSite) -> bool:
    """Whether ``rec``'s plan text says there is no dropout where ``site`` is."""
    if rec.engine is None:
        return False
    return any(match_at(ops, site.position, m) and m.kind in (None, site.kind) for m in rec.engine.denies)


# ---- sites and rates ----


@dataclass
class _Claim:
    rec: Recommendation
    match: Match
    extra: list[str] = field(default_factory=list)


@dataclass
class _Rate:
    """A site's rate, the cited range it comes from, its schedule and the reasons (see ``_Engine._rate``)."""

    p: float
    low: float
    high: float
    schedule: str
    why: list[str]
    moved: str | None
    depth_rule: str | None = None


@dataclass
class _Push:
    """The situation's push on a rate: t > 0 up, t < 0 down, with the reasons."""

    t: float = 0.0
    why: list[str] = field(default_factory=list)


def situation_push(s: Spec) -> _Push:
    """DRP201's moves, summed: only the directions its sources support, with no data-size threshold.

    A strong train/validation gap moves a rate up, a model that does not overfit or a pretraining run
    moves it down. The sources give directions for data and model size (ConvNeXt on ImageNet-1K vs
    22K, EfficientNet B0 to B7) but no number of examples or parameters per example at which a rate
    should move, so the counts move nothing here; the thresholds the engine does use are written, with
    their sources, in the entries' ``engine.thresholds``. Fine-tuning has no moves (the pretrained
    rates are kept).
    """
    push = _Push()
    if s.regime == "fine-tuning":
        return push
    if s.overfitting == "strong":
        push.t += 1.0
        push.why.append("strong train/validation gap → up")
    elif s.overfitting == "none":
        push.t -= 0.5
        push.why.append("no overfitting seen → down")
    if s.regime == "pretraining":
        push.t -= 1.0
        push.why.append("pretraining → down")
    return push


def _fmt(p: float) -> str:
    return f"{p:g}"


class _Engine:
    """One run of the engine over one spec: claims, sites, avoid list and notes, then the consistency pass."""

    def __init__(self, kb: KnowledgeBase, s: Spec, ops: list[Op], recipe: Recipe | None) -> None:
        self.kb = kb
        self.s = s
        self.ops = ops
        self.recipe = recipe
        self.base = recipe is not None
        recs = [r for r in kb.active() if r.engine is not None and applies(r, s, base=self.base)]
        superseded = {other for r in recs for other in r.engine.supersedes}  # type: ignore[union-attr]
        recs = [r for r in recs if r.id not in superseded]
        recs.sort(key=lambda r: (-r.engine.priority, r.id))  # type: ignore[union-attr]
        self.recs = recs

    # -- the whole run --

    def run(self) -> Plan:
        s, ops = self.s, self.ops
        claims: dict[int, list[_Claim]] = {}
        avoid: list[AvoidEntry] = []
        avoided: set[int] = set()
        note_recs: list[Recommendation] = []
        disabled_by: list[Recommendation] = []
        for rec in self.recs:
            eng = rec.engine
            assert eng is not None
            if eng.action == "place":
                for pos, match in _select(gaps(ops, eng.at), eng.scope):
                    claims.setdefault(pos, []).append(_Claim(rec, match))
                if eng.avoid_at:
                    avoid.append(self._avoid_entry(rec, eng.avoid_at)[0])
            elif eng.action == "avoid":
                entry, positions = self._avoid_entry(rec, eng.at)
                avoid.append(entry)
                avoided.update(positions)
            elif eng.action == "note":
                note_recs.append(rec)
            elif eng.action == "disable":
                disabled_by.append(rec)

        notes: list[Note] = []
        if self.recipe is not None:
            from advisor.advise.base import base_sites

            sites, base_notes = base_sites(self.recipe, s, ops, self.kb, self.recs)
            notes += base_notes
            # The places an 'avoid' entry lists stay; a placing entry's own warnings (e.g. drop-path's
            # identity path) only join when one of its sites is in the recipe's plan.
            named = {r for site in sites for r in site.recommendations}
            avoid = [
                a
                for a in avoid
                if self.kb.recommendations[a.recommendations[0]].engine.action == "avoid"  # type: ignore[union-attr]
                or a.recommendations[0] in named
            ]
            avoid = self._without_positions(avoid, {site.position for site in sites})
        else:
            sites, zero = self._generic_sites(claims, avoided)
            if not disabled_by:
                notes += zero  # rates that came out at 0; moot when every site is left out
            if s.regime == "fine-tuning":
                sites, ft_note = self._fine_tuning_without_base(sites)
                notes.append(ft_note)
            if disabled_by:
                rec = disabled_by[0]
                notes.insert(
                    0,
                    Note.model_construct(
                        text=f"{rec_text(rec)} The {len(sites)} site(s) that would apply otherwise are left out.",
                        recommendations=[r.id for r in disabled_by],
                        citations=sorted({c for r in disabled_by for c in _all_citations(r)}),
                        contested=any(r.contested for r in disabled_by),
                    ),
                )
                sites = []

        if self.recipe is not None:
            # The recipe decides placement and rates: only process and implementation advice joins it.
            note_recs = [
                r
                for r in note_recs
                if r.category in ("process", "implementation") or (r.engine is not None and r.engine.base_plans)
            ]
        notes += self._notes(note_recs, sites)
        for extra in (_torch_layer_note(sites), self._pretraining_alternative(sites)):
            if extra is not None:
                notes.append(extra)
        sites = [site.model_copy(update={"id": f"S{i + 1}"}) for i, site in enumerate(sites)]
        # The engine's own output is built without validation (that would build pydantic's validators for
        # every plan model on each command start); the tests validate plans round trip instead.
        return Plan.model_construct(
            spec=s.model_dump(exclude_none=True), layers=ops, sites=sites, avoid=avoid, notes=notes
        )

    def _pretraining_alternative(self, sites: Sequence[PlanSite]) -> Note | None:
        """With a base that pretrained with dropout, DRP205's no-dropout rule as the other side, when the
        user's run is as data-rich as the runs it cites (it does not apply to --base plans by itself)."""
        rec = self.kb.recommendations.get("DRP205")
        if self.recipe is None or self.s.regime != "pretraining" or not sites or rec is None or rec.engine is None:
            return None
        if not any(holds(c, self.s) for c in rec.engine.when):
            return None
        if self.s.samples and self.s.params:
            scale = f"At about {self.s.samples / self.s.params:.0f} tokens per parameter"
        else:
            scale = "With the " + (
                "model size not given (--params)" if self.s.samples else "data size not given (--samples)"
            )
        return Note.model_construct(
            text=(
                f"This plan keeps the dropout {self.recipe.name} was pretrained with. {scale}, the other side "
                "applies too: " + rec_text(rec) + " Which is better at this scale is contested (see explain DRP205)."
            ),
            recommendations=[rec.id],
            citations=_all_citations_ordered(rec),
            contested=rec.contested,
        )

    # -- generic placement --

    def _generic_sites(self, claims: dict[int, list[_Claim]], avoided: set[int]) -> tuple[list[PlanSite], list[Note]]:
        sites: list[PlanSite] = []
        zero: dict[str, list[PlanSite]] = {}
        # An entry whose places are partly taken by an 'avoid' entry says where its sites are left.
        skipped = {c.rec.id for pos in claims if pos in avoided for c in claims[pos][:1]}
        for pos in sorted(claims):
            if pos in avoided:
                continue
            site = self._site(pos, claims[pos])
            if site.recommendations[0] in skipped:
                site = site.model_copy(
                    update={
                        "where": f"{site.where}; here only where it feeds no layer listed under 'do not put "
                        "dropout here'"
                    }
                )
            if site.p == 0.0 and site.depth_rule is not None:
                continue  # the first block of a rule that starts at 0 (linspace): no site, as in the cited code
            if site.p == 0.0:
                zero.setdefault(claims[pos][0].rec.id, []).append(site)
                continue
            sites.append(site)
        notes = []
        for rec_id, dropped in zero.items():
            rec = self.kb.recommendations[rec_id]
            first = dropped[0]
            rate = rec.rate
            why = first.rate_reason
            notes.append(
                Note.model_construct(
                    text=f"No dropout {first.where}: {rec_id}'s rate comes out at 0, the low end of its cited range "
                    f"{_fmt(rate.low if rate else 0)}–{_fmt(rate.high if rate else 0)}"
                    + (f" ({why})." if why else "."),
                    recommendations=[rec_id, *([RATE_RULE] if RATE_RULE in first.recommendations else [])],
                    citations=list(rate.citations if rate else rec.citations),
                )
            )
        return sites, notes

    def _site(self, pos: int, claims: list[_Claim]) -> PlanSite:
        s, ops = self.s, self.ops
        win = claims[0]  # highest priority first
        rec, match = win.rec, win.match
        eng = rec.engine
        assert eng is not None
        kind = match.kind or rec.site.kind
        before, after = ops[pos], ops[pos - 1]
        module = layer_module(
            (match.module or rec.site.module).replace("{cell}", (s.cell or "lstm").upper()), s, ops, pos
        )
        block = after.block if after.block is not None else before.block
        r = self._rate(rec, match, kind, block, after)
        p, low, high, schedule, why, moved = r.p, r.low, r.high, r.schedule, r.why, r.moved

        # The entry that placed the site and the one that moved its rate, with the sources of the rate and
        # of the placement only: entries that lost the gap are not the site's evidence (some argue against
        # it), and DRP201's move is cited once, by its note, not on every site it moves.
        recs = [rec.id]
        cites = list(dict.fromkeys([*(rec.rate.citations if rec.rate else []), *rec.citations]))
        if moved is not None and moved in self.kb.recommendations and moved not in recs:
            recs.append(moved)
            extra = self.kb.recommendations[moved]
            if moved != RATE_RULE and extra.rate is not None:
                cites += [key for key in extra.rate.citations if key not in cites]
        reason = rec_text(rec) + (" Rate: " + "; ".join(why) + "." if why else "")
        return PlanSite.model_construct(
            id="S0",
            position=pos,
            after=after.kind,
            before=before.kind,
            after_label=after.label,
            before_label=before.label,
            block=block,
            kind=kind,
            module=module,
            p=p,
            p_range=(low, high),
            schedule=schedule,
            depth_rule=r.depth_rule,
            reason=reason,
            recommendations=recs,
            citations=cites,
            where=match.label or rec.site.description,
        )

    def _rate(self, rec: Recommendation, match: Match, kind: str, block: int | None, after: Op) -> _Rate:
        """The site's rate: a cited value picked by the entry's rate rules, the depth rule and the push.

        Also returns the cited range it was picked from (for a drop-path block: the last block's range
        carried to this block by the same rule), the schedule, the reasons, the entry that moved the rate
        (DRP201 for the situation's push, DRP202 for early dropout), if any, and the drop-path depth rule.
        """
        s = self.s
        eng = rec.engine
        assert eng is not None
        rate = rec.rate
        low, high = (rate.low, rate.high) if rate else (0.0, 0.0)
        default = match.p if match.p is not None else (rate.default if rate else 0.0)
        low, high = min(low, default), max(high, default)
        ends = {"low": low, "default": default, "high": high}
        why: list[str] = []

        start = "default"
        for rule in eng.rate_rules:
            if holds(rule.when, s, base=self.base):
                start = rule.to
                why.append(f"{rule.because} → {_fmt(ends[start])}")
                break

        depth = eng.schedule == "rise-with-depth" and block is not None
        n = _blocks_with_tag(self.ops, after) if depth else 1
        drop_path = depth and kind == "drop-path"
        ramp = n > 1 and not drop_path and start == "default"
        value = ends[start]
        if ramp:
            # The sources' pattern: the first block at the low end, the last at the high end.
            value = low if block == 0 else high if block == n - 1 else default

        if s.underfitting and value > 0:
            # Early dropout (Liu et al. 2023) at its own rate, never above the value the site starts from.
            early = min(self._early_rate(), value)
            why = [
                f"underfitting → early dropout ({EARLY_RULE}): {_fmt(early)} at the start of training "
                "(Liu et al.: decayed linearly to 0 over the first 50 of 300 epochs), then off"
            ]
            lo, hi = (early, early) if early < value else (low, high)
            if drop_path:
                dr = match.depth_rule or "linear-depth"
                why.append(explain(dr, early, block or 0, n))
                lo, hi = block_range(dr, lo, hi, block or 0, n)
                return _Rate(block_rate(dr, early, block or 0, n), lo, hi, "early", why, EARLY_RULE, dr)
            return _Rate(round(early, 3), lo, hi, "early", why, EARLY_RULE)

        push = situation_push(s) if high != low else _Push()
        moved = RATE_RULE if push.t != 0 else None
        schedule = "constant"
        if push.t != 0:
            value = high if push.t > 0 else low
            why.append(
                f"{', '.join(push.why)}: net push {'up' if push.t > 0 else 'down'} → the "
                f"{'top' if push.t > 0 else 'bottom'} of the cited range {_fmt(low)}–{_fmt(high)}"
                + (" at every block" if ramp else "")
            )
        elif ramp:
            schedule = "rise-with-depth"
            what = "the low end" if block == 0 else "the high end" if block == n - 1 else "the default"
            why.append(
                f"rises with depth: block {(block or 0) + 1} of {n} takes {what} ({_fmt(value)}) of the cited "
                f"{_fmt(low)}–{_fmt(high)}"
            )
        elif eng.schedule in ("early", "late"):
            schedule = eng.schedule

        if drop_path:
            # Stochastic depth: the identity is always kept and the rate rises with depth to the last
            # block's value, by the rule of the code the entry cites (advisor.advise.depth).
            dr = match.depth_rule or "linear-depth"
            why.append(explain(dr, value, block or 0, n))
            low, high = block_range(dr, low, high, block or 0, n)
            return _Rate(block_rate(dr, value, block or 0, n), low, high, "linear-depth", why, moved, dr)
        return _Rate(round(value, 3), low, high, schedule, why, moved)

    def _early_rate(self) -> float:
        rec = self.kb.recommendations.get(EARLY_RULE)
        return rec.rate.default if rec is not None and rec.rate is not None else 0.1

    # -- fine-tuning without a recipe --

    def _fine_tuning_without_base(self, sites: list[PlanSite]) -> tuple[list[PlanSite], Note]:
        """Keep only sites written for fine-tuning; the rest is the pretrained configuration, unknown here."""
        kept = [site for site in sites if self._for_fine_tuning(site)]
        from advisor.advise.base import fine_tuning_note

        return kept, fine_tuning_note(self.s, self.kb, len(sites) - len(kept))

    def _for_fine_tuning(self, site: PlanSite) -> bool:
        rec = self.kb.recommendations[site.recommendations[0]]
        assert rec.engine is not None
        return any(
            c.regime is not None and "fine-tuning" in c.regime and holds(c, self.s, base=self.base)
            for c in rec.engine.when
        )

    # -- avoid list and notes --

    def _avoid_entry(self, rec: Recommendation, matches: list[Match]) -> tuple[AvoidEntry, list[int]]:
        positions = [p for p, _ in gaps(self.ops, matches)]
        m = matches[0]
        where = _describe(self.ops, positions) if positions else (m.label or rec.site.description)
        return (
            AvoidEntry.model_construct(
                after=m.after,
                before=m.before,
                where=where,
                reason=rec_text(rec),
                recommendations=[rec.id],
                citations=list(rec.citations),
            ),
            positions,
        )

    def _without_positions(self, avoid: list[AvoidEntry], taken: set[int]) -> list[AvoidEntry]:
        """Avoid entries never list a gap where the reference recipe has a site (its sources win)."""
        out = []
        for entry in avoid:
            rec = self.kb.recommendations[entry.recommendations[0]]
            assert rec.engine is not None
            matches = rec.engine.at if rec.engine.action == "avoid" else rec.engine.avoid_at
            positions = [p for p, _ in gaps(self.ops, matches) if p not in taken]
            if not positions and any(p in taken for p, _ in gaps(self.ops, matches)):
                continue
            if positions:
                entry = entry.model_copy(update={"where": _describe(self.ops, positions)})
            out.append(entry)
        return out

    def _notes(self, recs: list[Recommendation], sites: list[PlanSite]) -> list[Note]:
        notes = []
        site_recs = {r for site in sites for r in site.recommendations}
        for rec in recs:
            eng = rec.engine
            assert eng is not None
            if eng.needs_sites_of and not (
                (sites and "*" in eng.needs_sites_of) or site_recs & set(eng.needs_sites_of)
            ):
                continue
            if any(denied(rec, self.ops, site) for site in sites):
                continue
            notes.append(
                Note.model_construct(
                    text=rec_text(rec),
                    recommendations=[rec.id],
                    citations=list(rec.citations),
                    contested=rec.contested,
                )
            )
        return notes


def _all_citations_ordered(rec: Recommendation) -> list[str]:
    keys: list[str] = []
    for key in list(rec.citations) + (list(rec.rate.citations) if rec.rate else []):
        if key not in keys:
            keys.append(key)
    return keys


def _all_citations(rec: Recommendation) -> set[str]:
    return set(_all_citations_ordered(rec))


def _blocks_with_tag(ops: list[Op], op: Op) -> int:
    blocks = {o.block for o in ops if o.kind == op.kind and set(o.tags) & set(op.tags) and o.block is not None}
    return max(len(blocks), 1)
