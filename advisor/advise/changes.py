"""The change list: the engine's plan on a model's operations against the dropout the model has now.

Each of today's sites (the auditor's, at the gaps where they run) is kept, re-rated or removed; each
planned site with nothing there today is added. How each change is made without editing code:

- re-rate or remove through the attribute the forward reads (an ``nn.Dropout``'s ``p``, a fused
  call's rate holder such as transformers' ``attention_dropout`` or timm's ``attn_drop.p``,
  ``nn.MultiheadAttention.dropout``, an RNN's ``dropout``); a dropout module that is removed is
  replaced by ``nn.Identity``;
- add a new module, registered as a child of the module whose output (forward hook) or input
  (forward pre-hook) is exactly the gap, so ``model.eval()`` reaches it and ``state_dict`` does not
  change; a fused call that already reads a rate (running at p = 0) is raised instead.

Where none of this is possible (a functional call in the middle of a ``forward`` with a literal
rate, a module shared by places that need different rates) the change is ``cannot`` and says what
to edit.
"""

from __future__ import annotations

from typing import Any

from advisor.advise.model_plan import INSERTABLE, Change, ModelSite, Step, describe
from advisor.advise.read_model import OpRef, RateHolder

_PLAIN = {"dropout", "dropout1d", "dropout2d", "dropout3d"}
CHILD_AFTER = "added_dropout"
CHILD_BEFORE = "added_input_dropout"


def compatible(planned: str, existing: str) -> bool:
    """Whether a site of kind ``existing`` can serve a planned site of kind ``planned`` (by re-rating)."""
    if planned == existing:
        return True
    return planned == "attention-dropout" and existing == "dropout"


def _same(a: float | None, b: float | None) -> bool:
    """Equal rates: the engine states rates to 3 decimals (a per-block drop-path of linspace(0, 0.1, 18) is
    0.006 for today's 0.00588...), so a rate within half a unit of the third decimal is the same rate."""
    return a is not None and b is not None and abs(a - b) <= 0.0005 + 1e-9


def _name(ref: OpRef, kind: str) -> str:
    return describe(ref.path, "input" if kind == "input" else ref.cls)


def _where(refs: list[OpRef], kinds: list[str], pos: int) -> str:
    after = _name(refs[pos - 1], kinds[pos - 1]) if pos > 0 else "the input"
    before = _name(refs[pos], kinds[pos]) if pos < len(refs) else "the output"
    return f"after {after}, before {before}"


def _set_step(holder: RateHolder, value: float, positions: list[int]) -> Step:
    return Step(action="set", path=holder.path, attr=holder.attr, value=value, positions=positions)


def change_list(reading: Any, tagged: Any, plan: Any, spec: Any) -> tuple[list[ModelSite], list[Change]]:
    """Plan sites at module paths and the changes that take the model from today to the plan."""
    refs: list[OpRef] = tagged.refs
    kinds = [op.kind for op in tagged.ops]
    planned: dict[int, list[Any]] = {}
    # a site at p = 0 is no dropout; the others are numbered S1, S2 ... again
    real = [site.model_copy(update={"id": f"S{i}"}) for i, site in enumerate((s for s in plan.sites if s.p > 0), 1)]
    for site in real:
        planned.setdefault(site.position, []).append(site)
    outcome: dict[str, tuple[str, str]] = {}  # plan site id -> (change action, module path)
    kept: dict[tuple[str, str | None], set[float]] = {}  # rate attributes whose value a kept site relies on
    changes: list[Change] = []
    fine_tuning_keep = spec.regime == "fine-tuning" and not getattr(spec, "base", None)

    for ex in reading.existing:
        if not ex.positions:
            continue  # never runs (a rate holder of a fused call, or an unused module): the auditor reports it
        positions = sorted({tagged.position_of(p) for p in ex.positions})
        hits = []
        for pos in positions:
            site = next((s for s in planned.get(pos, []) if s.id not in outcome and compatible(s.kind, ex.kind)), None)
            hits.append(site)
        found = [s for s in hits if s is not None]
        where = "; ".join(_where(refs, kinds, p) for p in positions[:3]) + (
            f"; … ({len(positions)} places)" if len(positions) > 3 else ""
        )
        base = {"existing": ex.site, "module_path": ex.module_path, "kind": ex.kind, "p_from": ex.p, "where": where}
        if len(found) == len(positions) and len({s.p for s in found}) == 1:
            site = found[0]
            ids = [s.id for s in found]
            if _same(site.p, ex.p):
                if ex.holder is not None:
                    kept.setdefault((ex.holder.path, ex.holder.attr), set()).add(float(ex.p or 0.0))
                for s in found:
                    outcome[s.id] = ("keep", ex.module_path)
                changes.append(
                    Change(
                        action="keep", site=",".join(ids), p_to=site.p, how="nothing to do", reason=site.reason, **base
                    )
                )
            elif ex.holder is not None:
                for s in found:
                    outcome[s.id] = ("change", ex.holder.path)
                changes.append(
                    Change(
                        action="change",
                        site=",".join(ids),
                        p_to=site.p,
                        how=f"set {ex.holder.describe()} = {site.p:g} ({ex.holder.how})",
                        reason=site.reason,
                        steps=[_set_step(ex.holder, site.p, positions)],
                        **base,
                    )
                )
            else:
                for s in found:
                    outcome[s.id] = ("cannot", ex.module_path)
                changes.append(
                    Change(
                        action="cannot",
                        site=",".join(ids),
                        p_to=site.p,
                        how=f"the rate of {ex.op} in {ex.module_path or '<root>'}.forward is not read from an "
                        f"attribute: edit the call to use p={site.p:g}" + _library(reading, ex.module_path),
                        reason=site.reason,
                        **base,
                    )
                )
        elif not found:
            if fine_tuning_keep:
                if ex.holder is not None:
                    kept.setdefault((ex.holder.path, ex.holder.attr), set()).add(float(ex.p or 0.0))
                changes.append(
                    Change(
                        action="keep",
                        p_to=ex.p,
                        how="nothing to do",
                        reason="Fine-tuning keeps the pretrained model's dropout as configured; the plan only adds "
                        "what a new task head needs (name the pretrained model with --base to compare with it).",
                        **base,
                    )
                )
                continue
            reason = _removal_reason(plan, kinds, positions)
            steps: list[Step] = []
            how = ""
            if ex.replaceable and ex.op.startswith("nn.") and "(" not in ex.op:
                steps = [Step(action="identity", path=ex.module_path, positions=positions)]
                how = f"replace {ex.module_path} with nn.Identity"
            elif ex.holder is not None:
                steps = [_set_step(ex.holder, 0.0, positions)]
                how = f"set {ex.holder.describe()} = 0 ({ex.holder.how})"
            elif ex.replaceable:
                steps = [Step(action="identity", path=ex.module_path, positions=positions)]
                how = f"replace {ex.module_path} with nn.Identity"
            if steps:
                changes.append(Change(action="remove", p_to=0.0, how=how, reason=reason, steps=steps, **base))
            else:
                changes.append(
                    Change(
                        action="cannot",
                        p_to=0.0,
                        how=f"the rate of {ex.op} in {ex.module_path or '<root>'}.forward is not read from an "
                        "attribute: delete the call" + _library(reading, ex.module_path),
                        reason=reason,
                        **base,
                    )
                )
        else:
            for s in found:
                outcome[s.id] = ("cannot", ex.module_path)
            rates = sorted({s.p for s in found})
            changes.append(
                Change(
                    action="cannot",
                    site=",".join(s.id for s in found),
                    p_to=rates[0] if len(rates) == 1 else None,
                    how=f"{ex.module_path or '<root>'} runs at {len(positions)} places and the plan wants "
                    f"{'different rates' if len(rates) > 1 else 'dropout at only some of them'} "
                    f"({', '.join(f'{r:g}' for r in rates)}): give each place its own dropout module",
                    reason=found[0].reason,
                    **base,
                )
            )

    latent: dict[int, list[Any]] = {}
    for lat in reading.latent:
        latent.setdefault(tagged.position_of(lat.position), []).append(lat)
    pending = [s for s in real if s.id not in outcome]
    want = {s.position: s for s in pending}
    for site in pending:
        pos = site.position
        where = _where(refs, kinds, pos)
        lat = next((x for x in latent.get(pos, []) if compatible(site.kind, x.kind) and x.holder is not None), None)
        base = {
            "site": site.id,
            "kind": site.kind,
            "p_from": 0.0,
            "p_to": site.p,
            "where": where,
            "reason": site.reason,
        }
        if lat is not None:
            assert lat.holder is not None
            outcome[site.id] = ("add", lat.holder.path)
            changes.append(
                Change(
                    action="add",
                    module_path=lat.holder.path,
                    how=f"set {lat.holder.describe()} = {site.p:g} ({lat.holder.how}; it runs at p = 0 today)",
                    steps=[_set_step(lat.holder, site.p, [pos])],
                    **base,
                )
            )
            continue
        cls = INSERTABLE.get(site.kind)
        step = _insertion(refs, pos, site, want, cls) if cls else None
        if step is None:
            outcome[site.id] = ("cannot", refs[pos - 1].path)
            how = _cannot_insert(site, refs, kinds, pos, cls) + _library(reading, refs[pos - 1].path if pos > 0 else "")
            changes.append(Change(action="cannot", module_path=refs[pos - 1].path if pos > 0 else "", how=how, **base))
            continue
        path = f"{step.path}.{step.child}" if step.path else str(step.child)
        outcome[site.id] = ("add", path)
        on = "output" if step.hook == "forward" else "input"
        changes.append(
            Change(
                action="add",
                module_path=path,
                how=f"new {_module_call(cls or 'Dropout', site.p)} registered as {path}, applied to the {on} of "
                f"{step.path} by a forward {'hook' if step.hook == 'forward' else 'pre-hook'}",
                steps=[step],
                **base,
            )
        )

    changes = _shared_holders(changes, outcome, kept)
    changes = _with_audit_findings(changes, outcome, reading)
    sites = []
    for site in real:
        action, path = outcome.get(site.id, ("add", ""))
        pos = site.position
        a, b = refs[pos - 1], refs[pos] if pos < len(refs) else refs[-1]
        sites.append(
            ModelSite(
                id=site.id,
                position=pos,
                module_path=path,
                after_path=a.path,
                after_class="input" if kinds[pos - 1] == "input" else a.cls,
                after=site.after,
                before_path=b.path,
                before_class=b.cls,
                before=site.before,
                block=site.block,
                kind=site.kind,
                module=_model_module(site.module, path, reading.module_classes),
                p=site.p,
                p_range=site.p_range,
                schedule=site.schedule,
                reason=site.reason,
                recommendations=list(site.recommendations),
                citations=list(site.citations),
                change=action,
            )
        )
    order = {"keep": 0, "change": 1, "add": 2, "remove": 3, "cannot": 4}
    changes.sort(key=lambda c: (_first_position(c, real, reading, tagged), order[c.action]))
    return sites, changes


#: audit rules whose finding means a site misbehaves whatever its rate: the plan cannot keep or re-rate it
#: until the code is fixed, and apply_plan cannot fix code
MODE_BUGS = frozenset(
    {"functional-dropout-ignores-eval", "nondeterministic-eval-output", "unregistered-dropout", "frozen-graph-dropout"}
)


def _with_audit_findings(changes: list[Change], outcome: dict[str, tuple[str, str]], reading: Any) -> list[Change]:
    """The auditor's findings on today's sites, in the change list. A kept or re-rated site that it found
    broken in eval mode (F.dropout without training=self.training, a drop-path that ignores self.training,
    dropout held in a plain list) needs an edit by hand first: 'keep' would promise an auditor with no
    finding after apply_plan. A removal it flags names the rule (dropout on the logits: DRP303)."""
    report = getattr(reading, "report", None)
    findings = [f for f in getattr(report, "findings", []) if f.site and not f.allowed_by]
    bugs = {f.site: f for f in findings if f.slug in MODE_BUGS}
    flagged: dict[str, list[Any]] = {}
    for f in findings:
        flagged.setdefault(f.site, []).append(f)
    out = []
    for c in changes:
        if c.action == "remove" and flagged.get(c.existing or ""):
            # the auditor's own verdict on a dropout the plan removes (dropout on the logits: DRP303 ...)
            said = "; ".join(f"{f.rule_id} {f.slug}" for f in flagged[c.existing or ""])
            out.append(c.model_copy(update={"reason": f"The auditor flags it too ({said}). {c.reason}"}))
            continue
        bug = bugs.get(c.existing or "")
        if bug is None or c.action not in ("keep", "change"):
            out.append(c)
            continue
        then = "" if c.action == "keep" else f"; then {c.how}"
        for sid in (c.site or "").split(","):
            if sid in outcome:
                outcome[sid] = ("cannot", outcome[sid][1])
        out.append(
            c.model_copy(
                update={
                    "action": "cannot",
                    "how": f"fix it by hand first ({bug.rule_id} {bug.slug}): {bug.fix}{then}",
                    "steps": [],
                }
            )
        )
    return out


#: the engine's names for dropout that PyTorch's own Transformer layers hold (advisor.recommend.layer_module)
TORCH_LAYERS = ("nn.TransformerEncoderLayer", "nn.TransformerDecoderLayer", "nn.MultiheadAttention")


def _model_module(hint: str, path: str, classes: dict[str, str]) -> str:
    """The module of a site in the model's terms: the engine names PyTorch's Transformer layers for its own
    stacks; a model built otherwise (a transformers BERT) holds the rate in the module at ``path``."""
    if not hint.startswith(TORCH_LAYERS):
        return hint
    cls = classes.get(path)
    if cls is None:  # a site apply_plan adds: an nn.Dropout
        return "nn.Dropout"
    if f"nn.{cls}" in TORCH_LAYERS:
        return hint
    return f"nn.{cls}" if cls.startswith(("Dropout", "AlphaDropout", "FeatureAlphaDropout")) else cls


def _shared_holders(
    changes: list[Change], outcome: dict[str, tuple[str, str]], kept: dict[tuple[str, str | None], set[float]]
) -> list[Change]:
    """One attribute read by several places (``F.dropout(x, self.p)`` twice) can hold only one rate."""
    wanted: dict[tuple[str, str | None], set[float]] = {k: set(v) for k, v in kept.items()}
    for c in changes:
        for step in c.steps:
            if step.action == "set":
                wanted.setdefault((step.path, step.attr), set()).add(float(step.value or 0.0))
    clash = {key for key, values in wanted.items() if len(values) > 1}
    if not clash:
        return changes
    out = []
    for c in changes:
        keys = [(st.path, st.attr) for st in c.steps if st.action == "set"]
        hit = next((k for k in keys if k in clash), None)
        if hit is None:
            out.append(c)
            continue
        rates = ", ".join(f"{v:g}" for v in sorted(wanted[hit]))
        for sid in (c.site or "").split(","):
            if sid:
                outcome[sid] = ("cannot", c.module_path)
        out.append(
            c.model_copy(
                update={
                    "action": "cannot",
                    "steps": [],
                    "how": f"{hit[0] or '<root>'}.{hit[1]} sets the rate of several places and the plan wants "
                    f"{rates} there: give each place its own rate (an attribute or a dropout module per place)",
                }
            )
        )
    return out


def _first_position(c: Change, sites: list[Any], reading: Any, tagged: Any) -> int:
    if c.site:
        first = c.site.split(",")[0]
        for s in sites:
            if s.id == first:
                return int(s.position)
    for e in reading.existing:
        if e.site == c.existing and e.positions:
            return int(tagged.position_of(min(e.positions)))
    return 1 << 30


def _module_call(cls: str, p: float) -> str:
    return f"{cls}(p={p:g})" if cls != "DropPath" else f"DropPath(p={p:g}) (advisor.advise.apply.DropPath)"


def _insertion(refs: list[OpRef], pos: int, site: Any, want: dict[int, Any], cls: str) -> Step | None:
    """A forward hook on the module before the gap, else a pre-hook on the module after it, if unambiguous."""

    def consistent(target: str, attr: str, offset: int) -> list[int] | None:
        gaps = [k + offset for k, r in enumerate(refs) if getattr(r, attr) == target]
        for g in gaps:
            other = want.get(g)
            if other is None or other.kind != site.kind or not _same(other.p, site.p):
                return None
        return gaps

    after = refs[pos - 1].hook_after if pos > 0 else None
    if after:
        gaps = consistent(after, "hook_after", 1)
        if gaps is not None:
            return Step(
                action="insert",
                path=after,
                hook="forward",
                child=_child(site.kind, CHILD_AFTER),
                dropout=cls,
                value=site.p,
                positions=gaps,
            )
    before = refs[pos].hook_before if pos < len(refs) else None
    if before:
        gaps = consistent(before, "hook_before", 0)
        if gaps is not None:
            return Step(
                action="insert",
                path=before,
                hook="forward-pre",
                child=_child(site.kind, CHILD_BEFORE),
                dropout=cls,
                value=site.p,
                positions=gaps,
            )
    return None


def _library(reading: Any, path: str) -> str:
    """Where the forward to edit is a library's code, say so: the user sets a rate there, never edits it."""
    package = reading.packages.get(path)
    if package is None:
        return ""
    return (
        f" — but this forward is {package}'s code, not yours: set the rate through the library's config or "
        "constructor arguments (recommend --hf-config for transformers and timm), or report it upstream"
    )


def _child(kind: str, base: str) -> str:
    return base.replace("dropout", "drop_path") if kind == "drop-path" else base


def _cannot_insert(site: Any, refs: list[OpRef], kinds: list[str], pos: int, cls: str | None) -> str:
    a = refs[pos - 1]
    if cls is None:
        if site.kind == "attention-dropout":
            return (
                f"the attention in {a.path or '<root>'} reads no dropout rate: pass dropout_p={site.p:g} "
                "(F.scaled_dot_product_attention) or add dropout on the attention probabilities in its forward"
            )
        return f"a {site.kind} site needs code ({site.module}); apply_plan adds only module-shaped dropout"
    owner = a.path or "<root>"
    return (
        f"no module's output or input is exactly this gap (a call inside {owner}'s forward, or a module shared with "
        f"places that need another rate): in the forward, add x = F.{'dropout' if cls == 'Dropout' else cls.lower()}"
        f"(x, p={site.p:g}, training=self.training) there"
    )


def _removal_reason(plan: Any, kinds: list[str], positions: list[int]) -> str:
    for entry in plan.avoid:
        for pos in positions:
            if 0 < pos < len(kinds) and entry.after in ("any", kinds[pos - 1]) and entry.before in ("any", kinds[pos]):
                return f"Avoid: {entry.reason} ({', '.join(entry.recommendations)})"
    disabled = next((n for n in plan.notes if "left out" in n.text), None)
    if disabled is not None:
        return disabled.text
    return "Not in the plan: no entry of the knowledge base places dropout here for this model and situation."
