"""Pure renderers: knowledge entries to Markdown strings and JSON-ready dicts (no rich, no typer)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from advisor.knowledge import KnowledgeBase
from advisor.schema import SCHEMA_VERSION, Citation, Finding, Recommendation

if TYPE_CHECKING:  # the plan models are built only by commands that make a plan
    from advisor.plan import Plan


#: Words that mark an author as a group (a project, a company, a site's contributors), never a person.
_GROUP_WORDS = ("contributors", "authors", "Research", "Team", "Project", "Foundation", "Inc", "Google", "(")


def _is_group(name: str) -> bool:
    return any(w in name for w in _GROUP_WORDS)


def authors_short(cit: Citation) -> str:
    """'Srivastava et al.', 'Hu & Gu'; a group author whole ('Hugging Face Transformers contributors')."""
    if len(cit.authors) == 1 and _is_group(cit.authors[0]):
        return cit.authors[0]
    surnames = [a if _is_group(a) else a.split()[-1] for a in cit.authors]
    if len(surnames) == 1:
        return surnames[0]
    if len(surnames) == 2:
        return f"{surnames[0]} & {surnames[1]}"
    return f"{surnames[0]} et al."


def short_ref(cit: Citation) -> str:
    """'Srivastava et al. 2014'."""
    return f"{authors_short(cit)} {cit.year}"


def venue_of(cit: Citation) -> str:
    parts = [cit.journal or cit.booktitle or cit.venue or cit.publisher or ""]
    if cit.volume:
        parts.append(f"vol. {cit.volume}")
    if cit.pages:
        parts.append(f"pp. {cit.pages.replace('--', '–')}")
    return ", ".join(p for p in parts if p)


def locator(cit: Citation) -> str:
    if cit.doi:
        return f"https://doi.org/{cit.doi}"
    if cit.arxiv:
        return f"https://arxiv.org/abs/{cit.arxiv}"
    return cit.url or ""


def rate_str(p: float | None, lo: float | None = None, hi: float | None = None) -> str:
    if p is None and lo is None:
        return "-"
    if lo is not None and hi is not None and lo != hi:
        core = f"{lo:g}–{hi:g}"
        return f"{p:g} ({core})" if p is not None else core
    return f"{p:g}" if p is not None else f"{lo:g}"


_MD_INLINE = re.compile(r"([\\`*_\[\]<>&~|])")
_MD_LINE_START = re.compile(r"^([ \t]*)([#>+=-])", re.M)
_MD_ORDERED = re.compile(r"^([ \t]*\d+)([.)])", re.M)


def md_escape(text: str) -> str:
    """Text that renders literally as Markdown: a backslash before every character Markdown would read as
    markup, so ``Linear(512*7*7, 4096)`` keeps its stars and ``__init__`` its underscores (issue 12).

    For knowledge text inside Markdown built here (and in plan and recipe views); not for code blocks or
    code spans, where Markdown shows every character as it is.
    """
    text = _MD_INLINE.sub(r"\\\1", text)
    text = _MD_LINE_START.sub(r"\1\\\2", text)
    return _MD_ORDERED.sub(r"\1\\\2", text)


def _plain(text: str) -> str:
    return text


def _finding_line(f: Finding, t: Callable[[str], str]) -> str:
    rate = rate_str(f.p, *(f.p_range or (None, None)))
    bits = [f"**{t(f.where)}** — {t(f.kind)}"]
    if rate != "-":
        bits.append(f"drop {rate}")
    if f.section:
        bits.append(f"({t(f.section)})")
    bits.append(f"[{f.evidence}]")
    line = " ".join(bits)
    if f.rate_text:
        line += f"\n  - as stated: {t(f.rate_text)}"
    if f.quote:
        line += f"\n  - > {t(f.quote)}"
    if f.note:
        line += f"\n  - note: {t(f.note)}"
    return "- " + line


def recommendation_markdown(rec: Recommendation, kb: KnowledgeBase, *, escape: bool = True) -> str:
    """One recommendation as Markdown, every section in a fixed order.

    ``escape`` (the default) escapes the knowledge text so that it renders literally (:func:`md_escape`);
    ``escape=False`` gives the same document with the text as written, for plain-text output.
    """
    t = md_escape if escape else _plain
    out: list[str] = [f"# {rec.id}: {t(rec.title)}", ""]
    if rec.status == "removed":
        out += ["**This recommendation was removed.** Its ID stays reserved.", ""]
    out += [f"**{t(rec.summary)}**", ""]
    tags = [f"category: {rec.category}", f"confidence: {rec.confidence}"]
    if rec.contested:
        tags.append("CONTESTED")
    if rec.audit:
        tags.append(f"audit rule: {t(rec.audit.slug)} ({rec.audit.severity})")
    out += [" · ".join(tags), ""]
    out += ["## Why", "", t(rec.rationale.strip()), ""]
    out += [
        "## Where",
        "",
        f"- site: after **{t(rec.site.after)}**, before **{t(rec.site.before)}** — {t(rec.site.description)}",
    ]
    out += [f"- kind: {t(rec.site.kind)}; PyTorch: {_code(rec.site.module)}"]
    if rec.rate is not None:
        r = rec.rate
        out += [
            f"- rate (drop probability): default **{r.default:g}**, range {r.low:g}–{r.high:g}"
            f" {t('[' + ', '.join(r.citations) + ']')}"
        ]
        if r.note:
            out += [f"- rate note: {t(r.note)}"]
    out += ["", "## Applies to", ""] + [f"- {t(a)}" for a in rec.applies_to]
    out += ["", "## Does not apply to", ""] + [f"- {t(a)}" for a in rec.not_applies_to]
    if rec.positions:
        out += ["", "## The evidence on each side", ""]
        for pos in rec.positions:
            out += [f"- **{t(pos.claim)}** — {t(pos.evidence)} {t('[' + ', '.join(pos.citations) + ']')}"]
    out += ["", "## Example", "", "Before:", "", "```python", rec.example.before.strip(), "```", ""]
    out += ["After:", "", "```python", rec.example.after.strip(), "```", ""]
    out += ["## Sources", ""]
    for key in rec.citations:
        cit = kb.citations.get(key)
        if cit is None:
            out.append(f"- {t(f'[{key}]')} (missing)")
            continue
        out.append(
            f"- {t(f'[{key}]')} {t(', '.join(cit.authors))}. *{t(cit.title)}*. {t(venue_of(cit))}, {cit.year}. "
            f"{t(locator(cit))}"
        )
    if rec.related:
        out += ["", "Related: " + ", ".join(rec.related)]
    return "\n".join(out).rstrip() + "\n"


def _code(text: str) -> str:
    """An inline code span that holds ``text`` whatever backticks it contains (CommonMark's rule)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def citation_markdown(cit: Citation, kb: KnowledgeBase, *, escape: bool = True) -> str:
    """One source as Markdown: bibliographic data, evidence, placement findings, the entries citing it.

    ``escape`` as in :func:`recommendation_markdown`.
    """
    t = md_escape if escape else _plain
    out = [f"# {t(f'[{cit.key}]')} {t(cit.title)}", ""]
    out += [f"- authors: {t(', '.join(cit.authors))}", f"- year: {cit.year}"]
    venue = venue_of(cit)
    if venue:
        out.append(f"- venue: {t(venue)}")
    if cit.arxiv:
        out.append(f"- arXiv: {t(cit.arxiv)}")
    if cit.doi:
        out.append(f"- DOI: {t(cit.doi)}")
    if cit.url:
        out.append(f"- URL: {t(cit.url)}")
    out.append(f"- bibliographic evidence: {t(cit.evidence)}")
    if cit.unverified:
        out.append("- unverified: " + "; ".join(t(u) for u in cit.unverified))
    if cit.note:
        out += ["", t(cit.note)]
    if cit.findings:
        out += ["", "## Placement findings", ""]
        out += [_finding_line(f, t) for f in cit.findings]
    users = kb.cited_by(cit.key)
    if users:
        out += ["", "## Cited by", ""] + [f"- {r.id}: {t(r.title)}" for r in users]
    return "\n".join(out).rstrip() + "\n"


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    return rec.model_dump(mode="json", exclude_none=True)


def citation_json(cit: Citation) -> dict[str, Any]:
    return cit.model_dump(mode="json", exclude_none=True)


def envelope(kind: str, payload: Any) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, kind: payload}


# ---- plans ----

SCHEDULES = {
    "early": "early dropout: this rate for the first part of training (Liu et al.: the first 50 of 300 epochs), "
    "decayed linearly to 0, then off (DRP202)",
    "late": "late dropout: off for the first part of training, this rate from then on (DRP202)",
    "rise-with-depth": "one rate per block, rising with depth",
    "linear-depth": "stochastic depth: the per-block rate rises linearly with depth to the last block's",
}


def schedule_text(schedule: str, depth_rule: str | None = None) -> str:
    """The schedule in words; empty for a constant rate. Drop-path names the rule its blocks follow."""
    from advisor.advise.depth import RULE_TEXT

    text = SCHEDULES.get(schedule, "" if schedule == "constant" else schedule)
    if depth_rule in RULE_TEXT:
        text += f" ({RULE_TEXT[depth_rule]})"
    return text


def _ids(ids: list[str]) -> str:
    return ", ".join(ids) if len(ids) <= 4 else f"{ids[0]}, {ids[1]} … {ids[-1]} ({len(ids)} sites)"


def _span(numbers: list[int]) -> str:
    """'1', '1–3', '1, 3, 5' (each block once)."""
    numbers = sorted(set(numbers))
    if not numbers:
        return ""
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 2:
        return f"{numbers[0]}–{numbers[-1]}"
    return ", ".join(str(n) for n in numbers)


def _rates(group: list[Any]) -> str:
    values = [s.p for s in group]
    if len(set(values)) == 1:
        return f"p={values[0]:g}"
    by_rate: dict[float, list[int]] = {}
    for site in group:
        by_rate.setdefault(site.p, []).append((site.block or 0) + 1)
    parts = [f"{p:g} (block{'s' if len(set(b)) > 1 else ''} {_span(b)})" for p, b in by_rate.items()]
    if len(parts) > 4:  # one rate per block (drop-path's l/L rule): the first and the last say it
        return f"p={parts[0]} … {parts[-1]}"
    return "p=" + ", ".join(parts)


def _range(group: list[Any]) -> str:
    """The cited range of a group; for drop-path rising with depth, the last block's (the others scale)."""
    site = group[0]
    if getattr(site, "depth_rule", None) is not None:
        site = max(group, key=lambda s: s.p_range[1])
        return f"{site.p_range[0]:g}–{site.p_range[1]:g} at the last block"
    return f"{site.p_range[0]:g}–{site.p_range[1]:g}"


def _fields(fields: list[str]) -> str:
    names: dict[str, list[str]] = {}
    for f in fields:
        lib, _, name = f.partition(":")
        names.setdefault(name, []).append(lib)
    return "; ".join(f"{name} ({', '.join(libs)})" for name, libs in names.items())


def site_group_view(group: list[Any]) -> dict[str, str]:
    """One group of a plan's sites (see :meth:`advisor.plan.Plan.site_groups`) as display strings."""
    first = group[0]
    blocks = [s.block + 1 for s in group if s.block is not None]
    if len(group) == 1:
        layers = f"after {first.after_label}, before {first.before_label}"
    else:
        # the blocks, when each place is in its own one (two places in one block, such as a GCN's input and
        # the hidden features after layer 1, would read "2 places, blocks 1")
        distinct = len(set(blocks)) == len(group)
        layers = f"{len(group)} places" + (f", blocks {_span(blocks)}" if blocks and distinct else "")
        layers += f"; the first after {first.after_label}, before {first.before_label}"
    rate_reasons = [s.rate_reason for s in group if s.rate_reason]
    why = first.reason_shared
    if len(set(rate_reasons)) == 1 and len(rate_reasons) == len(group):
        why += f" Rate: {rate_reasons[0]}."
    elif rate_reasons and len(group) > 1:
        common = rate_reasons[0].split("; ")
        shared = [part for part in common if all(part in r.split("; ") for r in rate_reasons)]
        if shared:
            why += " Rate: " + "; ".join(shared) + "."
    return {
        "ids": _ids([s.id for s in group]),
        "module": first.module,
        "kind": first.kind,
        "rates": _rates(group),
        "range": _range(group),
        "where": first.where,
        "layers": layers,
        "schedule": schedule_text(first.schedule, getattr(first, "depth_rule", None)),
        "why": why,
        "recommendations": ", ".join(first.recommendations),
        "sources": ", ".join(first.citations),
        "fields": _fields(first.fields),
        "evidence": "; ".join(first.evidence),
        "recipe": first.recipe or "",
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    return plan.model_dump(mode="json")


#: The block number inside a layer label ("hidden 3", "block 2a", "encoder 5", "FC 1", "LSTM layer 2").
_BLOCK_NO = re.compile(r"\b(hidden|block|FC|layer|encoder|decoder) (\d+)")


def _segments(plan: Plan) -> list[tuple[int | None, list[tuple[str, Any]]]]:
    """The layer stack cut into blocks: (block index or None, [("op", Op) | ("site", PlanSite), ...]).

    A site belongs to the block of the operation it follows (it sits after that operation), so a block's
    own dropout stays with it."""
    segments: list[tuple[int | None, list[tuple[str, Any]]]] = []
    for pos, op in enumerate(plan.layers):
        sites = [("site", site) for site in plan.sites_at(pos)]
        if sites and segments:
            segments[-1][1].extend(sites)
        elif sites:
            segments.append((None, sites))
        if op.block is not None and segments and segments[-1][0] == op.block:
            segments[-1][1].append(("op", op))
        else:
            segments.append((op.block, [("op", op)]))
    return segments


def _signature(items: list[tuple[str, Any]]) -> tuple[object, ...]:
    """What makes two blocks 'the same' in a view: their operations (block numbers aside) and their sites'
    module, schedule, sources and rate; a per-block rate rule (drop-path) may differ."""
    sig: list[object] = []
    for what, x in items:
        if what == "op":
            sig.append((x.kind, _BLOCK_NO.sub(r"\1 #", x.label)))
        else:
            sig.append((x.module, x.schedule, tuple(x.recommendations), None if x.depth_rule else x.p))
    return tuple(sig)


def _block_name(items: list[tuple[str, Any]], block: int) -> tuple[str, int]:
    """("encoder", 3) for a block whose first numbered label says "encoder 3"; ("block", index + 1) otherwise."""
    for what, x in items:
        if what == "op":
            m = _BLOCK_NO.search(x.label)
            if m:
                return ("layer" if m.group(1) in ("hidden", "layer") else m.group(1)), int(m.group(2))
    return "block", block + 1


def stack_rows(plan: Plan) -> list[tuple[str, Any]]:
    """The rows every view prints for the layer stack: ("op", Op), ("site", PlanSite), or ("same", text).

    A run of blocks identical to the block before it (:func:`_signature`) is one "same" row, e.g.
    ``encoder 2–12: same as encoder 1 (sites S6–S49)``, so a 32-layer model fits a screen; a per-block
    drop-path rate is named there with its first and last value. A plan without sites keeps its (collapsed)
    stack: it shows how the network was read."""
    rows: list[tuple[str, Any]] = []
    segments = _segments(plan)
    i = 0
    while i < len(segments):
        block, items = segments[i]
        rows.extend(items)
        j = i + 1
        if block is not None:
            sig = _signature(items)
            while j < len(segments) and segments[j][0] is not None and _signature(segments[j][1]) == sig:
                j += 1
        if j > i + 1:
            rows.append(("same", _same_text(items, block, segments[i + 1 : j])))
        i = j
    return rows


def _same_text(first: list[tuple[str, Any]], block: int | None, run: list[tuple[int | None, list[Any]]]) -> str:
    name, no = _block_name(first, block or 0)
    start = _block_name(run[0][1], run[0][0] or 0)[1]
    end = _block_name(run[-1][1], run[-1][0] or 0)[1]
    span = f"{start}–{end}" if end != start else f"{start}"
    plural = "s" if end != start and name in ("block", "layer") else ""
    text = f"… {name}{plural} {span}: same as {name} {no}"
    sites = [x for _, items in run for what, x in items if what == "site"]
    if sites:
        ids = f"{sites[0].id}–{sites[-1].id}" if len(sites) > 1 else sites[0].id
        text += f" (sites {ids}"
        ruled = [s for s in sites if s.depth_rule]
        if ruled:
            text += f"; per-block {ruled[0].module} p={ruled[0].p:g} … {ruled[-1].p:g}"
        text += ")"
    return text


def layer_count(n: object) -> str:
    """'1 layer', '12 layers'."""
    return f"{n} layer" if n == 1 else f"{n} layers"


def _marker(site: Any) -> str:
    sched = f" ({site.schedule})" if site.schedule != "constant" else ""
    return f"  ▶ {site.module}  p={site.p:g}{sched}  [{site.id}: {', '.join(site.recommendations)}]"


def plan_markdown(plan: Plan, kb: KnowledgeBase) -> str:
    spec = plan.spec
    title = f"# Dropout plan for a {spec.get('arch')} ({layer_count(spec.get('layers'))})"
    if spec.get("base"):
        title += f", following {spec.get('base')} ({spec.get('regime')})"
    out = [title, ""]
    rows = stack_rows(plan)
    if rows:
        out += ["## Layer stack", "", "```"]
        for what, x in rows:
            out.append(_marker(x) if what == "site" else f"  {x.label}" if what == "op" else f"  {x}")
        out += ["```", ""]
    out += ["## Sites", ""]
    if plan.sites:
        groups = plan.site_groups()
        out += [
            "| sites | where | kind | PyTorch | p | range | schedule | why | sources |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for group in groups:
            v = site_group_view(group)
            why = v["why"] + f" ({v['recommendations']})"
            if v["fields"]:
                why += f" Set by: {v['fields']}."
            if v["evidence"]:
                why += f" Read in: {v['evidence']}."
            out.append(
                f"| {v['ids']} | {v['where'] or ''} — {v['layers']} | {v['kind']} | `{v['module']}` | {v['rates']} "
                f"| {v['range']} | {v['schedule'] or 'constant'} | {why} | {v['sources']} |"
            )
    else:
        out.append("No dropout sites: see the notes.")
    if plan.avoid:
        out += ["", "## Do not put dropout here", ""]
        for a in plan.avoid:
            out.append(f"- **{a.where}** — {a.reason} ({', '.join(a.recommendations)}; {', '.join(a.citations)})")
    if plan.notes:
        out += ["", "## Notes", ""]
        for n in plan.notes:
            tag = " *(contested)*" if n.contested else ""
            out.append(f"- {n.text}{tag} ({', '.join(n.recommendations)}; {', '.join(n.citations)})")
    keys = sorted(
        {k for s in plan.sites for k in s.citations}
        | {k for a in plan.avoid for k in a.citations}
        | {k for n in plan.notes for k in n.citations}
    )
    if keys:
        out += ["", "## Sources", ""]
        for k in keys:
            c = kb.citations.get(k)
            if c is not None:
                parts = [short_ref(c), f"*{c.title}*", venue_of(c), locator(c)]
                out.append(f"- [{k}] " + ". ".join(p for p in parts if p))
    return "\n".join(out) + "\n"
