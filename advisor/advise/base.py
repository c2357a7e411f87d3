"""``--base NAME``: plans that follow a reference recipe (``knowledge/recipes/<key>.toml``).

The recipe is the pretrained model being fine-tuned, or the published configuration a model trained
from scratch follows. Its spec fills every answer the user did not give (flags win). Its sites, for
the regime at hand, become the plan's sites at the gaps their roles map to
(:mod:`advisor.advise.roles`), with the recipe's own rates: fine-tuning keeps the base's sites and
rates (DRP206), never adding a site the base does not have and never raising a rate, except for a
strong overfitting symptom inside a fine-tuning range the recipe itself records. Each site names the
recipe, the config fields that set it and where the fact was read.
"""

from __future__ import annotations

from typing import Any

from advisor.advise.depth import DEPTH_RULES, block_range, block_rate, explain
from advisor.errors import NotFoundError, SpecError
from advisor.knowledge import KnowledgeBase
from advisor.plan import Note, Op, PlanSite
from advisor.schema import Recipe, RecipeSite, Recommendation
from advisor.spec import Spec

BASE_RULE = "DRP206"
UNKNOWN_BASE_RULE = "DRP207"

#: The PyTorch module a recipe site of each kind becomes, when no entry of the knowledge base names one.
MODULES = {
    "dropout": "nn.Dropout",
    "dropout1d": "nn.Dropout1d",
    "dropout2d": "nn.Dropout2d",
    "dropout3d": "nn.Dropout3d",
    "alpha-dropout": "nn.AlphaDropout",
    "feature-alpha-dropout": "nn.FeatureAlphaDropout",
    "locked-dropout": "custom LockedDropout (no torch class)",
    "drop-path": "torchvision.ops.StochasticDepth(p, mode='row')",
    "dropblock": "torchvision.ops.DropBlock2d",
    "weight-drop": "custom WeightDrop on the recurrent weights (no torch class)",
    "attention-dropout": "attention dropout (nn.MultiheadAttention(dropout=) or SDPA dropout_p)",
    "embedding-dropout": "custom embedded_dropout (nn.Embedding has no dropout argument)",
}

ROLE_WORDS = {
    "input": "on the network input",
    "embedding": "on the embedding output (the sum, after its LayerNorm if any)",
    "embedding-dropout": "on whole rows of the embedding matrix",
    "attention-weights": "on the attention probabilities",
    "attention-output": "on each attention sub-layer's output, before the residual add",
    "ffn-inner": "between the FFN activation and its second linear layer",
    "ffn-output": "on each FFN sub-layer's output, before the residual add",
    "drop-path": "on each residual branch (stochastic depth)",
    "final": "on the output of the last block, before the head",
    "head": "before the last classifier layer",
    "fc": "before the hidden FC layers of the head",
    "conv": "after each conv block's activation",
    "block-mid": "inside each residual block, between its convolutions",
    "rnn-input": "on the first recurrent layer's input",
    "rnn-between": "between stacked recurrent layers",
    "rnn-output": "on the last recurrent layer's output",
    "weight-drop": "on each recurrent layer's hidden-to-hidden weights",
    "hidden": "after each hidden layer",
    "graph-input": "on each graph layer's input features",
    "graph-attention": "on the attention coefficients",
    "graph-features": "on the transformed features before aggregation",
}


# ---- finding the recipe and filling the spec ----


def resolve_base(name: str, kb: KnowledgeBase) -> Recipe:
    """The recipe called ``name`` (key, alias or hub name); an unknown name is a usage error (exit 2)."""
    try:
        return kb.recipe(name)
    except NotFoundError as exc:
        keys = ", ".join(sorted(kb.recipes))
        hint = exc.hint if exc.hint and exc.hint.startswith("did you mean") else None
        raise SpecError(
            f"--base: no reference recipe named '{name}'",
            hint=(hint + " " if hint else "") + f"known recipes: {keys}; without a recipe, leave out --base "
            "(fine-tuning then keeps the pretrained configuration; 'dropout-advisor audit' shows it)",
        ) from None


#: Spec fields that make a recipe what it is: a value that contradicts the recipe's is refused (its sites
#: would not apply). Size fields (layers, width, the number of FC layers) may differ: the plan then says the
#: recipe's rates were published for its own size (tune applies a recipe's rates to experiment's networks).
STRUCTURAL_FIELDS = (
    "arch",
    "transformer",
    "gnn",
    "cell",
    "rnn_task",
    "wide",
    "norm",
    "positions",
    "embedding_norm",
    "batch_norm",
    "activation",
    "pooling",
    "head",
    "bidirectional",
    "embeddings",
    "modality",
)
SIZE_FIELDS = ("layers", "width", "fc_layers")


def _flag(name: str) -> str:
    return "--task" if name == "rnn_task" else "--" + name.replace("_", "-")


def _check_family(recipe: Recipe, values: dict[str, Any], source: str) -> None:
    """Refuse given values that contradict the recipe's structure (another family, a GCN for GAT's recipe ...)."""
    for name in STRUCTURAL_FIELDS:
        want = recipe.spec.get(name)
        if name in values and values[name] is not None and want is not None and values[name] != want:
            got = values[name]
            raise SpecError(
                f"{source}: --base {recipe.key} ({recipe.name}) has {name} = {want!r}, but {_flag(name)} gives {got!r}",
                hint=f"leave out {_flag(name)} (the recipe sets it), or choose a recipe whose {name} is {got!r} "
                "('dropout-advisor recipes list'), or leave out --base",
            )


def fill_from_base(values: dict[str, Any], kb: KnowledgeBase) -> tuple[dict[str, Any], Recipe | None]:
    """Answers (from flags or a file) with the recipe's spec under them: the user's values win.

    ``base`` becomes the recipe's key. Raises :class:`SpecError` for an unknown recipe or another family.
    """
    name = values.get("base")
    if name is None:
        return values, None
    if not str(name).strip():
        raise SpecError(
            "--base: an empty recipe name",
            hint="give a recipe name ('dropout-advisor recipes list'), or leave out --base",
        )
    recipe = resolve_base(str(name), kb)
    _check_family(recipe, values, "flags")
    merged = {**recipe.spec, **values, "base": recipe.key}
    return merged, recipe


def with_base(spec: Spec, kb: KnowledgeBase) -> tuple[Spec, Recipe | None]:
    """The spec with every field it does not set taken from its base recipe, and the recipe."""
    if not spec.base:
        return spec, None
    recipe = resolve_base(spec.base, kb)
    given = spec.model_dump(include=spec.model_fields_set)
    _check_family(recipe, given, "spec")
    values = {**spec.model_dump(exclude_none=True), **{k: v for k, v in recipe.spec.items() if k not in given}}
    values["base"] = recipe.key
    return Spec.model_validate(values), recipe


def matching_recipes(s: Spec, kb: KnowledgeBase) -> list[Recipe]:
    """Recipes whose architecture spec agrees with every field of ``s`` they state (family, size, norm ...)."""
    structural = ("arch", "transformer", "layers", "width", "norm", "cell", "gnn", "wide", "positions")
    found = []
    for recipe in kb.recipes.values():
        keys = [k for k in structural if k in recipe.spec]
        if recipe.spec.get("arch") == s.arch and all(getattr(s, k, None) == recipe.spec[k] for k in keys):
            found.append(recipe)
    return found


# ---- regimes ----


def recipe_regime(recipe: Recipe, regime: str) -> str:
    """Which of the recipe's regimes a plan for ``regime`` follows.

    Fine-tuning a checkpoint keeps the configuration it was trained with (pretraining, else from
    scratch); training from scratch follows the pretraining recipe, and pretraining the from-scratch one.
    """
    if regime in recipe.regime:
        return regime
    order = {
        "fine-tuning": ("pretraining", "scratch"),
        "scratch": ("pretraining", "fine-tuning"),
        "pretraining": ("scratch", "fine-tuning"),
    }[regime]
    for other in order:
        if other in recipe.regime:
            return other
    return recipe.regime[0]


def _site_applies(site: RecipeSite, regime: str) -> bool:
    return site.regime is None or regime in site.regime


# ---- sites ----


def evidence_lines(site: RecipeSite) -> list[str]:
    """One line per source of a recipe site: 'citation: evidence, locator @ commit'."""
    out = []
    for src in site.sources:
        line = f"{src.citation}: {src.evidence}, {src.locator}"
        if src.commit:
            line += f" @ {src.commit}"
        out.append(line)
    return out


def _scoped(positions: list[int], scope: str) -> list[int]:
    """The role's gaps the recipe site covers, in network order (VGG: before fc7 but not fc6)."""
    if scope == "first":
        return positions[:1]
    if scope == "last":
        return positions[-1:]
    if scope == "all-but-first":
        return positions[1:]
    if scope == "all-but-last":
        return positions[:-1]
    return positions


def _blocks(ops: list[Op], pos: int) -> tuple[int | None, int]:
    block = ops[pos - 1].block if ops[pos - 1].block is not None else ops[pos].block
    blocks = {o.block for o in ops if o.block is not None}
    return block, max(len(blocks), 1)


def _generic_index(
    s: Spec, ops: list[Op], kb: KnowledgeBase
) -> dict[tuple[int, str], list[tuple[Recommendation, str]]]:
    """For each (gap, kind): the entries that place that kind there in this family, with their module.

    Base sites name them too, so 'dropout-advisor explain ID' explains the site in general terms.
    """
    from advisor.recommend import gaps, holds_structurally

    index: dict[tuple[int, str], list[tuple[Recommendation, str]]] = {}
    for rec in kb.active():
        eng = rec.engine
        if eng is None or eng.action != "place" or not any(holds_structurally(c, s) for c in eng.when):
            continue
        for pos, m in gaps(ops, eng.at):
            module = (m.module or rec.site.module).replace("{cell}", (s.cell or "lstm").upper())
            index.setdefault((pos, m.kind or rec.site.kind), []).append((rec, module))
    for recs in index.values():
        recs.sort(key=lambda pair: (-pair[0].engine.priority, pair[0].id))  # type: ignore[union-attr]
    return index


def _phrase(recipe: Recipe, used: str, regime: str) -> str:
    if regime == "fine-tuning" and used != "fine-tuning":
        return f"{recipe.name} as {'pretrained' if used == 'pretraining' else 'trained'}, kept for fine-tuning"
    return f"{recipe.name} ({used})"


def base_sites(
    recipe: Recipe, s: Spec, ops: list[Op], kb: KnowledgeBase, applicable: list[Recommendation]
) -> tuple[list[PlanSite], list[Note]]:
    """The recipe's sites for the spec's regime on this stack, and the notes that go with them."""
    used = recipe_regime(recipe, s.regime)
    phrase = _phrase(recipe, used, s.regime)
    sites: list[PlanSite] = []
    notes: list[Note] = []
    zero: list[RecipeSite] = []
    unmapped: list[RecipeSite] = []
    taken: dict[int, str] = {}
    from advisor.advise.roles import STRUCTURAL_ROLES, role_positions
    from advisor.recommend import layer_module

    index = _generic_index(s, ops, kb)
    # A site listed more than once for the regime (same role, kind, scope and fields) is a range the
    # recipe records: its low end by default, its high end only for a strong overfitting symptom.
    ranges: dict[tuple[object, ...], list[float]] = {}
    for rsite in recipe.sites:
        if _site_applies(rsite, used):
            ranges.setdefault(_site_key(rsite), []).append(rsite.p)
    raise_to_top = s.overfitting == "strong"
    seen: set[tuple[object, ...]] = set()
    for rsite in recipe.sites:
        if not _site_applies(rsite, used) or _site_key(rsite) in seen:
            continue
        seen.add(_site_key(rsite))
        recorded = ranges[_site_key(rsite)]
        if len(recorded) > 1:
            chosen = max(recorded) if raise_to_top else min(recorded)
            rsite = next(r for r in recipe.sites if _site_key(r) == _site_key(rsite) and r.p == chosen)
        if rsite.p == 0.0:
            zero.append(rsite)
            continue
        positions = _scoped(role_positions(rsite.role, ops), rsite.scope)
        if not positions:
            unmapped.append(rsite)
            continue
        cites = list(dict.fromkeys(src.citation for src in rsite.sources))
        cites += [c for c in recipe.citations if c not in cites]
        free = [pos for pos in positions if pos not in taken or rsite.role in STRUCTURAL_ROLES]
        if rsite.blocks is not None:  # e.g. EfficientNet's drop connect: only blocks with an identity skip
            free = [pos for pos in free if _blocks(ops, pos)[0] in rsite.blocks]
        if not free:
            unmapped.append(rsite)  # e.g. GoogLeNet's auxiliary heads: the stack has one head, held by the main one
            continue
        for pos in free:
            taken.setdefault(pos, rsite.role)
            generic = index.get((pos, rsite.kind), [])
            block, n = _blocks(ops, pos)
            p, schedule, rate_why = _base_rate(rsite, block, n, s)
            if p == 0.0 and schedule == "linear-depth":
                continue  # the first block of a rule that starts at 0 (linspace): no site, as in the cited code
            p_range = (min(recorded), max(recorded))
            if schedule == "linear-depth" and block is not None:
                p_range = block_range(rsite.schedule, min(recorded), max(recorded), block, n)
            if len(recorded) > 1:
                span = f"{min(recorded):g}–{max(recorded):g}"
                move = "strong overfitting → its top" if raise_to_top else "its low end"
                rate_why = "; ".join(x for x in (f"the recipe records {span} here: {move}", rate_why) if x)
            module = layer_module(generic[0][1] if generic else MODULES.get(rsite.kind, "nn.Dropout"), s, ops, pos)
            fields = ", ".join(dict.fromkeys(f.split(":", 1)[1] for f in rsite.fields))
            reason = f"{phrase}: {rsite.where}" + (f" (set by {fields})" if fields else "") + f" [{recipe.key}]."
            if rate_why:
                reason += " Rate: " + rate_why + "."
            sites.append(
                PlanSite.model_construct(
                    id="S0",
                    position=pos,
                    after=ops[pos - 1].kind,
                    before=ops[pos].kind,
                    after_label=ops[pos - 1].label,
                    before_label=ops[pos].label,
                    block=block,
                    kind=rsite.kind,
                    module=module,
                    p=p,
                    p_range=p_range,
                    schedule=schedule,
                    depth_rule=rsite.schedule if schedule == "linear-depth" else None,
                    reason=reason,
                    recommendations=[BASE_RULE] + [r.id for r, _ in generic if r.id != BASE_RULE],
                    citations=cites,
                    where=ROLE_WORDS.get(rsite.role, rsite.role),
                    recipe=recipe.key,
                    role=rsite.role,
                    fields=list(rsite.fields),
                    evidence=evidence_lines(rsite),
                )
            )
    sites.sort(key=lambda site: (site.position, site.kind == "weight-drop"))

    summary = (
        f"Sites and rates follow {phrase} [{recipe.key}]: no site it lacks, no rate moved by the data or "
        "model-size rules (DRP201), which are for models of your own design."
    )
    if s.regime == "fine-tuning" and s.overfitting == "strong":
        if any(len(v) > 1 for v in ranges.values()):
            summary += " Strong overfitting: rates the recipe records as a range go to its top; the others stay."
        else:
            summary += (
                " Strong overfitting: the recipe records no higher rate for these sites, so they stay; "
                "reduce the epochs, add weight decay or data first."
            )
    notes.append(Note.model_construct(text=summary, recommendations=[BASE_RULE], citations=list(recipe.citations)))
    resized = [
        f"{name} {getattr(s, name)} (the recipe's {recipe.spec[name]})"
        for name in SIZE_FIELDS
        if name in recipe.spec and getattr(s, name) is not None and getattr(s, name) != recipe.spec[name]
    ]
    if resized:
        notes.append(
            Note.model_construct(
                text=f"Your network differs in size from {recipe.name}: {', '.join(resized)}. The plan keeps the "
                f"recipe's rates, which its sources give for {recipe.name}'s own size only; for a model of your own "
                "size, leave out --base and the size rules of the entries apply.",
                recommendations=[BASE_RULE],
                citations=list(recipe.citations),
            )
        )
    if not sites and not recipe.sites:
        where = "; ".join(
            f"{src.citation}: {src.locator}" + (f" @ {src.commit}" if src.commit else "")
            for src in recipe.no_dropout_sources
        )
        text = f"{recipe.name} has no dropout anywhere ({where})."
        if s.regime == "fine-tuning":
            text += (
                " Its sources give no dropout to turn on for full fine-tuning, so the plan adds none; adapters "
                "(LoRA, QLoRA) have a dropout of their own (DRP208)."
            )
        notes.append(Note.model_construct(text=text, recommendations=[BASE_RULE], citations=list(recipe.citations)))
    elif not sites:
        others = [r for r in recipe.regime if r != used and any(_site_applies(x, r) and x.p > 0 for x in recipe.sites)]
        notes.append(
            Note.model_construct(
                text=f"{recipe.name} has no dropout in its {used} configuration"
                + (f"; its {', '.join(others)} configuration does." if others else "."),
                recommendations=[BASE_RULE],
                citations=list(recipe.citations),
            )
        )
    if zero:
        zero_fields = sorted({f.split(":", 1)[1] for z in zero for f in z.fields})
        roles = ", ".join(ROLE_WORDS.get(z.role, z.role) for z in zero)
        notes.append(
            Note.model_construct(
                text=f"{recipe.name} sets 0 {roles}"
                + (f" ({', '.join(zero_fields)} = 0)" if zero_fields else "")
                + ": no dropout there.",
                recommendations=[BASE_RULE],
                citations=sorted({src.citation for z in zero for src in z.sources}),
            )
        )
    if unmapped:
        roles = "; ".join(f"{u.role} p={u.p:g} ({u.where})" for u in unmapped)
        notes.append(
            Note.model_construct(
                text=f"{recipe.name} also has dropout that this {s.arch} layer stack has no place for, so the plan "
                f"leaves it out: {roles}.",
                recommendations=[BASE_RULE],
                citations=sorted({src.citation for u in unmapped for src in u.sources}),
            )
        )
    for line in recipe.notes:
        notes.append(
            Note.model_construct(
                text=f"{recipe.name}: {line}", recommendations=[BASE_RULE], citations=list(recipe.citations)
            )
        )
    for d in recipe.disagreements:
        notes.append(
            Note.model_construct(
                text=f"{recipe.name}, {d.about}: the sources disagree ({'; '.join(d.positions)}); "
                f"this follows {d.follows} ({d.confidence} confidence).",
                recommendations=[BASE_RULE],
                citations=list(d.citations),
                contested=True,
            )
        )
    return sites, notes


def _site_key(site: RecipeSite) -> tuple[object, ...]:
    return (site.role, site.kind, site.scope, tuple(site.fields))


def _base_rate(site: RecipeSite, block: int | None, n: int, s: Spec) -> tuple[float, str, str]:
    if site.schedule in DEPTH_RULES and block is not None:
        # The recipe's own per-block rule (timm's linspace, EfficientNet's index, Huang's l/L).
        return block_rate(site.schedule, site.p, block, n), "linear-depth", explain(site.schedule, site.p, block, n)
    if s.underfitting and s.regime != "fine-tuning":
        return site.p, "early", "underfitting → the recipe's rate as early dropout (DRP202), then off"
    return site.p, "constant", ""


# ---- fine-tuning without a recipe ----


def fine_tuning_note(s: Spec, kb: KnowledgeBase, left_out: int) -> Note:
    """What a fine-tuning plan says when the base model is not known here."""
    rec = kb.recommendations.get(UNKNOWN_BASE_RULE)
    matches = matching_recipes(s, kb)
    text = (
        "Fine-tuning a pretrained model without a recipe here: keep the pretrained configuration (its own "
        "dropout sites and rates); run 'dropout-advisor audit' on the real model to list them"
    )
    if left_out:
        text += f" ({left_out} site(s) of a from-scratch design are left out: the base decides)"
    text += "."
    if matches:
        text += " This spec matches the recipe(s) " + ", ".join(r.key for r in matches) + ": pass --base NAME."
    else:
        text += " With --base NAME (see the recipes in the knowledge base) the plan lists its sites."
    return Note.model_construct(
        text=text,
        recommendations=[UNKNOWN_BASE_RULE] if rec else [],
        citations=list(rec.citations) if rec else [],
    )
