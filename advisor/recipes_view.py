"""Pure renderers for reference recipes: Markdown strings, plain-text tables and JSON-ready dicts.

No typer, no rich, no torch: ``dropout-advisor recipes list|show`` only prints what these return.
"""

from __future__ import annotations

from typing import Any

from advisor.knowledge import KnowledgeBase
from advisor.schema import SCHEMA_VERSION, Recipe, RecipeSite, RecipeSource


def site_label(site: RecipeSite) -> str:
    """'role=p', with the regime when the site is limited to one, e.g. 'head=0.1 (fine-tuning)'."""
    label = f"{site.role}={site.p:g}"
    if site.schedule != "constant":
        label += f" ({site.schedule})"
    if site.regime:
        label += f" ({', '.join(site.regime)})"
    return label


def sites_summary(recipe: Recipe) -> str:
    """Every site as 'role=p', one entry per role ('ffn-inner=0 (pretraining) / 0.1 (fine-tuning)'),
    or 'no dropout' for a recipe without sites."""
    by_role: dict[str, list[str]] = {}
    for site in recipe.sites:
        by_role.setdefault(site.role, []).append(site_label(site).split("=", 1)[1])
    return ", ".join(f"{role}={' / '.join(rates)}" for role, rates in by_role.items()) or "no dropout"


def active_sites(recipe: Recipe, regime: str | None = None) -> list[RecipeSite]:
    """Sites that really drop something (p > 0), optionally only those used in ``regime``.

    Recipes also list sites whose configured rate is 0.0 (the layer exists, its rate is off); this
    filters them out.
    """
    return [s for s in recipe.sites if s.p > 0 and (regime is None or s.regime is None or regime in s.regime)]


# ---- JSON ----


def recipe_json(recipe: Recipe) -> dict[str, Any]:
    """The recipe as stored, plus a one-line ``sites_summary``."""
    data = recipe.model_dump(mode="json")
    data["sites_summary"] = sites_summary(recipe)
    return data


def recipes_envelope(recipes: list[Recipe]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "recipes": [recipe_json(r) for r in recipes]}


def recipe_list_json(recipes: list[Recipe]) -> dict[str, Any]:
    """The short form used by ``recipes list --format json``."""
    rows = [
        {
            "key": r.key,
            "name": r.name,
            "regime": list(r.regime),
            "sites": [
                {"role": s.role, "kind": s.kind, "p": s.p, "schedule": s.schedule, "regime": s.regime, "scope": s.scope}
                for s in r.sites
            ],
            "confidence": r.confidence,
        }
        for r in recipes
    ]
    return {"schema_version": SCHEMA_VERSION, "recipes": rows}


# ---- text and Markdown ----


def recipe_table(recipes: list[Recipe]) -> str:
    """One line per recipe: key, name, regime, confidence, then the sites as role=p (aligned columns,
    the open-ended sites column last)."""
    rows = [("key", "name", "regime", "confidence", "sites (drop p)")]
    rows += [(r.key, r.name, "+".join(r.regime), r.confidence, sites_summary(r)) for r in recipes]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join([*(row[i].ljust(widths[i]) for i in range(4)), row[4]]) for row in rows]
    return "\n".join(lines) + "\n"


def _source_line(src: RecipeSource, kb: KnowledgeBase) -> str:
    cit = kb.citations.get(src.citation)
    who = f"`{src.citation}`" + (f" ({cit.title}, {cit.year})" if cit else "")
    bits = [f"{who} — {src.evidence}: {src.locator}"]
    if src.commit:
        bits.append(f"@ `{src.commit}`")
    line = " ".join(bits)
    if src.quote:
        line += f' — "{src.quote}"'
    return line


def recipe_markdown(recipe: Recipe, kb: KnowledgeBase) -> str:
    """The whole recipe: spec, identifiers, every site with its sources, disagreements and notes."""
    out = [f"# {recipe.name} (`{recipe.key}`)", "", recipe.summary, ""]
    out.append(f"- **regime:** {', '.join(recipe.regime)}")
    out.append(f"- **confidence:** {recipe.confidence}")
    spec = " ".join(
        f"--{k.replace('_', '-')} {str(v).lower() if isinstance(v, bool) else v}" for k, v in recipe.spec.items()
    )
    out.append(f"- **spec:** `{spec}`")
    if recipe.aliases:
        out.append(f"- **aliases:** {', '.join(recipe.aliases)}")
    for ident in recipe.identifiers:
        mt = f" (model_type `{ident.model_type}`)" if ident.model_type else ""
        out.append(f"- **{ident.library}:** `{ident.name}`{mt}")
    out += ["", "## Dropout sites", ""]
    if not recipe.sites:
        out += ["No dropout anywhere in this configuration.", ""]
        for src in recipe.no_dropout_sources:
            out.append(f"- {_source_line(src, kb)}")
        out.append("")
    for site in recipe.sites:
        out.append(f"### {site_label(site)} — {site.kind}")
        out.append("")
        out.append(f"- **where:** {site.where}")
        if site.fields:
            out.append(f"- **fields:** {', '.join(f'`{f}`' for f in site.fields)}")
        if site.note:
            out.append(f"- **note:** {site.note}")
        for src in site.sources:
            out.append(f"- {_source_line(src, kb)}")
        out.append("")
    if recipe.disagreements:
        out += ["## Where sources disagree", ""]
        for d in recipe.disagreements:
            out.append(f"**{d.about}** (confidence {d.confidence}; {', '.join(d.citations)})")
            out.append("")
            out += [f"- {p}" for p in d.positions]
            out.append(f"- *this recipe follows:* {d.follows}")
            out.append("")
    if recipe.notes:
        out += ["## Notes", ""]
        out += [f"- {n}" for n in recipe.notes]
        out.append("")
    return "\n".join(out)
