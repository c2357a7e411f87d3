"""Text, Markdown and JSON views of a :class:`~advisor.advise.model_plan.ModelPlan` (pure functions).

Text shows what was read from the model, the change counts, the model's layer tree with each change
marked at the module it touches (``=`` keep, ``~`` change p, ``+`` add, ``-`` remove, ``!`` cannot
without editing code), then the sites grouped by what they share, the places to avoid and the
notes. Repeated blocks (``layer.1`` ... ``layer.11`` built like ``layer.0``) are shown once.
"""

from __future__ import annotations

import re
from typing import Any

from advisor.advise.model_plan import Change, ModelPlan, ModelSite, describe

MARK = {"keep": "=", "change": "~", "add": "+", "remove": "-", "cannot": "!"}
SITUATION = ("regime", "samples", "overfitting", "underfitting", "uncertainty")


def plan_json(plan: ModelPlan) -> dict[str, Any]:
    """The plan as JSON data (``schema_version`` first)."""
    return plan.model_dump(mode="json")


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:g}"


def _change_text(c: Change) -> str:
    if c.action == "keep":
        return f"keep p={_p(c.p_to)}"
    if c.action == "change":
        return f"p {_p(c.p_from)} -> {_p(c.p_to)}"
    if c.action == "add":
        return f"add {c.kind} p={_p(c.p_to)}"
    if c.action == "remove":
        return f"remove (p {_p(c.p_from)} -> 0)"
    if c.existing and not c.p_to:
        return f"cannot remove {c.kind} p={_p(c.p_from)} without an edit"
    return f"cannot: {c.kind} p={_p(c.p_to)} needs an edit"


def _ids(c: Change) -> str:
    """The plan's site ids; a site of today that the plan does not name shows the auditor's id."""
    ids = [x for x in (c.site or "").split(",") if x]
    if not ids and c.existing:
        return f"[audit {c.existing}]"
    return "[" + ", ".join(ids) + "]" if ids else ""


# ---- the layer tree -----------------------------------------------------------------------------


def _marks(plan: ModelPlan) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Markers per module path: on the module's own line, and as new child lines (insertions)."""
    own: dict[str, list[str]] = {}
    new: dict[str, list[str]] = {}
    for c in plan.changes:
        text = f"{MARK[c.action]} {_change_text(c)} {_ids(c)}".rstrip()
        inserted = [s for s in c.steps if s.action == "insert"]
        if inserted:
            for s in inserted:
                on = "output" if s.hook == "forward" else "input"
                line = f"+ {s.child}: {s.dropout}(p={_p(s.value)}) on its {on} {_ids(c)}".rstrip()
                if line not in new.setdefault(s.path, []):
                    new[s.path].append(line)
            continue
        paths = [s.path for s in c.steps] or [c.module_path]
        for path in dict.fromkeys(paths):
            detail = ""
            setters = [s for s in c.steps if s.action == "set" and s.path == path]
            if setters and setters[0].attr not in (None, "p"):
                detail = f" (.{setters[0].attr})"
            own.setdefault(path, []).append(text + detail)
    return own, new


def _children(modules: dict[str, str]) -> dict[str, list[str]]:
    kids: dict[str, list[str]] = {}
    for path in modules:
        if not path:
            continue
        parent = path.rpartition(".")[0]
        kids.setdefault(parent, []).append(path)
    return kids


def _subtree(
    path: str, modules: dict[str, str], kids: dict[str, list[str]], own: dict[str, list[str]], new: dict[str, list[str]]
) -> tuple[str, list[str], list[Any]]:
    """(label, markers, children) for one module, recursively; insertions are extra children."""
    name = path.rpartition(".")[2] if path else ""
    children: list[Any] = [_subtree(k, modules, kids, own, new) for k in kids.get(path, [])]
    children += [(line, [], []) for line in new.get(path, [])]
    label = f"{name} ({modules[path]})" if path else modules.get("", "model")
    return label, own.get(path, []), children


def _render(node: tuple[str, list[str], list[Any]], prefix: str, last: bool, out: list[str], root: bool) -> None:
    label, marks, children = node
    branch = "" if root else ("└─ " if last else "├─ ")
    line = prefix + branch + label
    if marks:
        line += "   " + "; ".join(marks)
    out.append(line)
    inner = prefix + ("" if root else ("   " if last else "│  "))
    groups = _collapse(children)
    for i, g in enumerate(groups):
        _render(g, inner, i == len(groups) - 1, out, False)


_NUM = re.compile(r"^(\d+) \(")
_SITE_ID = re.compile(r"S\d+")


def _shape(node: Any) -> str:
    """A node's rendering with block numbers and site ids masked (to find repeated blocks)."""
    label, marks, children = node
    label = _SITE_ID.sub("S", _NUM.sub("# (", label))
    return (
        label + "|" + "|".join(_SITE_ID.sub("S", m) for m in marks) + "[" + ",".join(_shape(c) for c in children) + "]"
    )


def _collapse(children: list[Any]) -> list[Any]:
    out: list[Any] = []
    i = 0
    while i < len(children):
        node = children[i]
        j = i + 1
        if _NUM.match(node[0]) and node[2]:
            while j < len(children) and _NUM.match(children[j][0]) and _shape(children[j]) == _shape(node):
                j += 1
        out.append(node)
        if j - i > 1:
            first = _NUM.match(children[i + 1][0])
            last = _NUM.match(children[j - 1][0])
            ids = sorted({m for c in children[i + 1 : j] for m in _SITE_ID.findall(str(c))}, key=lambda s: int(s[1:]))
            shown = f" [{ids[0]} … {ids[-1]}]" if len(ids) > 1 else (f" [{ids[0]}]" if ids else "")
            cls = node[0].split(" (", 1)[1].rstrip(")")
            a, b = (first.group(1) if first else "?"), (last.group(1) if last else "?")
            span = a if j - i - 1 == 1 else f"{a} … {b}"
            times = "" if j - i - 1 == 1 else f" ×{j - i - 1}"
            out.append(
                (
                    f"{span} ({cls}{times}): built and changed like {node[0].split(' ', 1)[0]}{shown}",
                    [],
                    [],
                )
            )
        i = j
    return out


def layer_tree(plan: ModelPlan) -> list[str]:
    """The model's modules as a tree, with each change marked where it applies."""
    own, new = _marks(plan)
    kids = _children(plan.modules)
    root = _subtree("", plan.modules, kids, own, new)
    out: list[str] = []
    _render(root, "", True, out, True)
    return out


# ---- text ---------------------------------------------------------------------------------------


def _no_sites(plan: ModelPlan) -> str:
    """What a plan without sites means: nothing at all, or today's dropout left as it is."""
    kept = plan.counts()["keep"]
    if kept:
        return (
            f"the plan places no dropout of its own; the model's {kept} dropout site(s) of today stay as they are "
            "(marked = in the layer tree)."
        )
    return "the plan puts no dropout in this model."


def _site_groups(sites: list[ModelSite]) -> list[list[ModelSite]]:
    groups: dict[tuple[Any, ...], list[ModelSite]] = {}
    for s in sites:
        key = (s.after_class, s.before_class, s.kind, s.p, s.change, s.reason, tuple(s.recommendations))
        groups.setdefault(key, []).append(s)
    return list(groups.values())


def _where(s: ModelSite) -> str:
    return f"after {describe(s.after_path, s.after_class)}, before {describe(s.before_path, s.before_class)}"


def _group_ids(group: list[ModelSite]) -> str:
    if len(group) == 1:
        return group[0].id
    ids = ", ".join(s.id for s in group) if len(group) <= 4 else f"{group[0].id} … {group[-1].id}"
    return f"{ids} ({len(group)} places)"


def _inferred_lines(plan: ModelPlan) -> list[str]:
    inf = plan.inferred
    spec = inf.spec
    out = [f"Read as: {spec.get('arch')}"]
    for key, why in inf.evidence.items():
        if key in ("arch",) or key not in spec:
            continue
        mark = " (flag)" if key in inf.overridden else ""
        out.append(f"  {key} = {spec[key]}{mark}: {why}")
    for key in inf.overridden:
        if key not in inf.evidence:
            out.append(f"  {key} = {spec.get(key)} (flag)")
    out[0] += f" ({inf.evidence.get('arch', '')})" if inf.evidence.get("arch") else ""
    if inf.recipe:
        out.append(
            f"Reference recipe: {inf.recipe}, recognised by {inf.recipe_how} (--base NAME or --base none to change)"
        )
    shown = [k for k in SITUATION if k in spec and spec[k] is not False]
    situation = ", ".join(
        f"{k}={spec[k]:,}" if isinstance(spec[k], int) and not isinstance(spec[k], bool) else f"{k}={spec[k]}"
        for k in shown
    )
    out.append(f"Situation: {situation}")
    return out


def plan_text(plan: ModelPlan) -> str:
    """The plan as plain text (what ``dropout-advisor recommend TARGET`` prints)."""
    lines = [
        f"Dropout plan for {plan.target or plan.model_class} ({plan.model_class}; input {plan.inputs}; "
        f"traced on {plan.device})",
        "",
    ]
    lines += _inferred_lines(plan)
    counts = plan.counts()
    lines += ["", "Changes: " + ", ".join(f"{n} {a}" for a, n in counts.items()), ""]
    lines.append("Layer tree (= keep, ~ change p, + add, - remove, ! needs an edit by hand):")
    lines += ["  " + x for x in layer_tree(plan)]
    lines.append("")
    if plan.sites:
        lines.append(f"Sites ({len(plan.sites)}):")
        for group in _site_groups(plan.sites):
            s = group[0]
            ids = _group_ids(group)
            lines.append(
                f"  {ids}  {s.kind} p={s.p:g} (range {s.p_range[0]:g}–{s.p_range[1]:g}, {s.schedule})  [{s.change}]"
            )
            lines.append(f"      {_where(s)}" + (" …" if len(group) > 1 else ""))
            lines.append(f"      why: {s.reason}")
            lines.append(f"      sources: {', '.join(s.recommendations)} · {', '.join(s.citations)}")
    else:
        lines.append(f"Sites: none — {_no_sites(plan)}")
    todo = [c for c in plan.changes if c.action in ("change", "add", "remove", "cannot")]
    if todo:
        lines += ["", "What changes, and how:"]
        for c in todo:
            lines.append(f"  {MARK[c.action]} {_change_text(c)} {_ids(c)} — {c.where}")
            lines.append(f"      {c.how}")
    if plan.avoid:
        lines += ["", "Avoid:"]
        for a in plan.avoid:
            lines.append(f"  - {a.where}: {a.reason} ({', '.join(a.recommendations)})")
    if plan.notes:
        lines += ["", "Notes:"]
        for n in plan.notes:
            tag = " (contested)" if n.contested else ""
            refs = f" ({', '.join(n.recommendations)})" if n.recommendations else ""
            lines.append(f"  - {n.text}{tag}{refs}")
    if plan.skipped:
        lines += ["", "Not read (no site planned there):"]
        lines += [f"  - {s}" for s in plan.skipped]
    lines += ["", "Apply it: advisor.apply_plan(model, plan) in Python (the same model object, changed in place)."]
    return "\n".join(lines) + "\n"


# ---- markdown -----------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def plan_markdown(plan: ModelPlan) -> str:
    """The plan as Markdown: what was read, the changes table, the layer tree, sites, avoid, notes."""
    out = [f"# Dropout plan for {plan.target or plan.model_class}", ""]
    out += [f"`{plan.model_class}`, input {plan.inputs}, traced on {plan.device}.", ""]
    out += ["## Read from the model", "", "| field | value | evidence |", "|---|---|---|"]
    for key, why in plan.inferred.evidence.items():
        if key in plan.inferred.spec:
            flag = " (flag)" if key in plan.inferred.overridden else ""
            out.append(f"| {key} | {plan.inferred.spec[key]}{flag} | {_cell(why)} |")
    if plan.inferred.recipe:
        out += ["", f"Reference recipe: **{plan.inferred.recipe}**, recognised by {plan.inferred.recipe_how}."]
    out += ["", "## Changes", "", "| | change | where | how |", "|---|---|---|---|"]
    for c in plan.changes:
        out.append(f"| {MARK[c.action]} | {_cell(_change_text(c))} {_ids(c)} | {_cell(c.where)} | {_cell(c.how)} |")
    out += ["", "## Layer tree", "", "```"] + layer_tree(plan) + ["```", ""]
    out += ["## Sites", ""]
    if not plan.sites:
        out.append(f"None: {_no_sites(plan)}")
    for group in _site_groups(plan.sites):
        s = group[0]
        ids = _group_ids(group)
        out.append(
            f"- **{ids}** `{s.kind}` p={s.p:g} ({s.change}): {_where(s)}. {s.reason} "
            f"({', '.join(s.recommendations)}; {', '.join(s.citations)})"
        )
    if plan.avoid:
        out += ["", "## Avoid", ""]
        out += [f"- {a.where}: {a.reason} ({', '.join(a.recommendations)})" for a in plan.avoid]
    if plan.notes:
        out += ["", "## Notes", ""]
        out += [f"- {n.text}" + (" *(contested)*" if n.contested else "") for n in plan.notes]
    if plan.skipped:
        out += ["", "## Not read", ""] + [f"- {s}" for s in plan.skipped]
    return "\n".join(out) + "\n"
