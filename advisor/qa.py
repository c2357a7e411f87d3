"""Questions in plain words: ranked retrieval over the knowledge base, offline, no language model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from advisor.explain import rate_str, short_ref
from advisor.knowledge import KnowledgeBase
from advisor.schema import Recommendation
from advisor.search import knowledge_index, tokens


class _M(BaseModel):
    model_config = ConfigDict(frozen=True)


class RecAnswer(_M):
    id: str
    title: str
    summary: str
    confidence: str
    contested: bool
    rate: str | None
    positions: list[str]
    citations: list[str]
    score: float


class FindingAnswer(_M):
    citation: str
    reference: str
    where: str
    kind: str
    rate: str | None
    evidence: str
    section: str | None
    score: float


class QAResult(_M):
    schema_version: int = 1
    question: str
    overview: bool = False
    recommendations: list[RecAnswer]
    findings: list[FindingAnswer]

    def markdown(self) -> str:
        out = [f"# {self.question}", ""]
        if self.overview:
            out += [
                "It depends on the architecture. The core placement rule for each family is below; "
                "run `dropout-advisor ask` (no question) for a plan for your own network.",
                "",
            ]
        if not self.recommendations and not self.findings:
            return "\n".join(
                out + ["Nothing in the knowledge base matches. Try other words, or 'dropout-advisor list'.", ""]
            )
        if self.recommendations:
            out += ["## Recommendations", ""]
            for r in self.recommendations:
                flag = " — **contested**" if r.contested else ""
                rate = f" Drop p: {r.rate}." if r.rate else ""
                out.append(
                    f"- **{r.id} {r.title}** ({r.confidence} confidence{flag}): {r.summary}{rate}"
                    f" [{', '.join(r.citations)}]"
                )
                out += [f"  - {p}" for p in r.positions]
        if self.findings:
            out += ["", "## What the sources found", ""]
            for f in self.findings:
                rate = f", drop {f.rate}" if f.rate else ""
                sec = f", {f.section}" if f.section else ""
                out.append(f"- {f.reference} [{f.citation}]: {f.where} ({f.kind}{rate}{sec}; {f.evidence})")
        out += ["", "More: dropout-advisor explain ID · dropout-advisor refs show KEY", ""]
        return "\n".join(out)


def _rec_answer(r: Recommendation, score: float) -> RecAnswer:
    return RecAnswer(
        id=r.id,
        title=r.title,
        summary=r.summary,
        confidence=r.confidence,
        contested=r.contested,
        rate=rate_str(r.rate.default, r.rate.low, r.rate.high) if r.rate else None,
        positions=[f"{p.claim} [{', '.join(p.citations)}]" for p in r.positions],
        citations=list(r.citations),
        score=score,
    )


def overview(question: str, kb: KnowledgeBase) -> QAResult:
    """A question with no specific terms ('where should dropout go?'): each family's leading rule
    (recommendations marked ``core``) and the places never to put dropout."""
    core = [r for r in kb.active() if r.core]
    avoid = [r for r in kb.active() if r.engine is not None and r.engine.action == "avoid"]
    picked = [_rec_answer(r, 0.0) for r in sorted(core, key=lambda r: r.id) + sorted(avoid, key=lambda r: r.id)]
    return QAResult(question=question, overview=True, recommendations=picked, findings=[])


def answer(question: str, kb: KnowledgeBase, limit: int = 6) -> QAResult:
    if not tokens(question):
        return overview(question, kb)
    hits = knowledge_index(kb).query(question, limit=60)
    recs: list[RecAnswer] = []
    for h in hits:
        if h.kind != "recommendation" or len(recs) >= limit:
            continue
        recs.append(_rec_answer(kb.recommendations[h.key], h.score))
    # Findings: score each finding of the matching sources on its own text.
    q = set(tokens(question))
    found: list[FindingAnswer] = []
    for h in hits:
        if h.kind != "citation":
            continue
        c = kb.citations[h.key]
        for f in c.findings:
            text = set(tokens(f"{f.where} {f.kind} {f.quote or ''} {f.note or ''}"))
            overlap = len(q & text)
            if overlap == 0:
                continue
            found.append(
                FindingAnswer(
                    citation=c.key,
                    reference=short_ref(c),
                    where=f.where,
                    kind=f.kind,
                    rate=rate_str(f.p, *(f.p_range or (None, None))) if (f.p is not None or f.p_range) else None,
                    evidence=f.evidence,
                    section=f.section,
                    score=round(h.score * overlap / max(len(q), 1), 3),
                )
            )
    found.sort(key=lambda f: (-f.score, f.citation))
    return QAResult(question=question, recommendations=recs, findings=found[:limit])
