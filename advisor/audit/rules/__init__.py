"""The audit rules, one module each, collected here in the order they run (ruff's rule registry).

Every rule module defines ``SLUG``, ``ID`` (its knowledge-base recommendation), ``SEVERITY``, ``TITLE``, a
docstring with a must-flag and a must-not-flag example, and ``check(ctx)``, which reads an
:class:`~advisor.audit.analysis.Analysis` and calls ``ctx.finding``. The knowledge base is the source of
truth for IDs, severities and titles (its ``[audit]`` tables); the constants are the fallback used only
while an entry is missing, and a test keeps the two equal.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from advisor.audit.rules import (
    after_output,
    before_batchnorm,
    drop_path_without_residual,
    elementwise_feature_maps,
    frozen_graph,
    functional_eval,
    inplace_hazard,
    never_called,
    nondeterministic,
    rate_never_used,
    rate_out_of_range,
    rate_suspicious,
    recurrent_state,
    rnn_single_layer,
    stacked_dropout,
    unregistered,
    wrong_rank,
)
from advisor.errors import KnowledgeError

if TYPE_CHECKING:
    from advisor.audit.analysis import Analysis

#: in running order: nondeterministic-eval-output skips what the mode rules before it already explain
RULES: tuple[ModuleType, ...] = (
    functional_eval,
    unregistered,
    frozen_graph,
    nondeterministic,
    rate_out_of_range,
    rate_suspicious,
    never_called,
    wrong_rank,
    before_batchnorm,
    after_output,
    inplace_hazard,
    elementwise_feature_maps,
    rnn_single_layer,
    stacked_dropout,
    recurrent_state,
    rate_never_used,
    drop_path_without_residual,
)

#: slug -> (recommendation ID, default severity, title), from the rule modules
BUILTIN: dict[str, tuple[str, str, str]] = {r.SLUG: (r.ID, r.SEVERITY, r.TITLE) for r in RULES}
SLUGS = tuple(BUILTIN)


@dataclass(frozen=True)
class RuleInfo:
    slug: str
    id: str
    severity: str
    title: str
    summary: str = ""
    citations: tuple[str, ...] = ()
    from_kb: bool = False


def run_rules(ctx: Analysis) -> None:
    """Apply every rule to an analysis whose sites are collected."""
    for rule in RULES:
        rule.check(ctx)


@functools.lru_cache(maxsize=1)
def _kb_rules() -> tuple[dict[str, RuleInfo], str | None]:
    """Rule metadata from the knowledge base, and a note when some of it had to come from BUILTIN."""
    try:
        from advisor.knowledge import default_kb

        recs = default_kb().by_slug()
    except KnowledgeError as exc:
        first = exc.message.splitlines()[0]
        infos = {s: RuleInfo(s, *BUILTIN[s]) for s in SLUGS}
        return infos, f"knowledge base not loaded ({first}); rule IDs and severities are built-in defaults"
    infos = {}
    missing = []
    for slug in SLUGS:
        rec = recs.get(slug)
        if rec is None or rec.audit is None:
            missing.append(slug)
            infos[slug] = RuleInfo(slug, *BUILTIN[slug])
            continue
        infos[slug] = RuleInfo(
            slug, rec.id, rec.audit.severity, rec.title, rec.summary, tuple(rec.citations), from_kb=True
        )
    note = None
    if missing:
        note = "not yet in the knowledge base, built-in defaults used: " + ", ".join(missing)
    return infos, note


def rule_info(slug: str) -> RuleInfo:
    return _kb_rules()[0][slug]


def rules_meta() -> dict[str, dict[str, str]]:
    """Per slug: the recommendation's one-line summary and default severity (for SARIF rule descriptors)."""
    out = {}
    for slug in SLUGS:
        info = rule_info(slug)
        out[slug] = {"summary": info.summary or info.title, "severity": info.severity}
    return out


def kb_note() -> str | None:
    return _kb_rules()[1]


def resolve_rule(name: str) -> str | None:
    """A slug, a recommendation ID or '*' -> the slug (or '*'); None when unknown."""
    if name == "*" or name in BUILTIN:
        return name
    up = name.upper()
    for slug in SLUGS:
        if rule_info(slug).id == up or BUILTIN[slug][0] == up:
            return slug
    return None


def __getattr__(name: str) -> object:
    # v0.1 imported the analysis from here (advisor.audit.rules.Analysis)
    if name == "Analysis":
        from advisor.audit.analysis import Analysis

        return Analysis
    raise AttributeError(name)
