"""Questions in plain words (English or Spanish): ranked retrieval over the knowledge base, offline.

:func:`answer` says which of three things it gives (``QAResult.status``):

- ``answered``: the recommendations and source findings that match the question;
- ``overview``: the question names nothing but dropout itself ("where should dropout go?"), so each
  family's leading rule is shown; or it names only a category ("what dropout rate should I use?"), so
  that category's entries are shown;
- ``no-match``: no entry answers it. The best entry carries less than :data:`MIN_COVERAGE` of the
  question's weight (:data:`MIN_COVERAGE_WITHOUT_DROPOUT` when the question never names dropout or a
  kind of it); the closest entries are listed as such, never as an answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from advisor.explain import rate_str, short_ref
from advisor.knowledge import KnowledgeBase
from advisor.schema import Recommendation
from advisor.search import Hit, Index, knowledge_index, looks_spanish
from advisor.thesaurus import CATEGORY_TERMS, DROPOUT_TERMS, GENERIC_TERMS

#: The share of a question's term weight (inverse document frequency) that the best matching entry must
#: contain for the question to count as answered. Calibrated on the labelled questions of
#: tests/qa_questions.toml (answerable and unrelated, English and Spanish; "calibration" split): when it was
#: set, the answerable ones that name dropout scored 0.73 or more and the unrelated ones 0.35 or less, and
#: this is the middle of that gap. tests/test_qa_calibration.py recomputes the gap on the current knowledge
#: base and checks that both constants still lie in it.
MIN_COVERAGE = 0.54

#: The same share for a question that names neither dropout nor a kind of it (thesaurus.DROPOUT_TERMS):
#: "how many epochs should I train?" shares words with the entries but is not a dropout question.
#: Calibration split when it was set: answerable 0.84 or more, unrelated 0.72 or less; the middle of the gap.
MIN_COVERAGE_WITHOUT_DROPOUT = 0.78

#: How many hits the coverage test looks at (the best entry by score need not be the best covered one).
_COVERAGE_WINDOW = 10

Status = Literal["answered", "overview", "no-match"]


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
    coverage: float = Field(default=0.0, description="Share of the question's term weight this entry contains.")
    matched_terms: list[str] = Field(default_factory=list, description="The question's search terms it contains.")


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
    status: Status = "answered"
    overview: bool = False
    overview_category: str | None = Field(
        default=None, description="With status 'overview': the category shown, or None for every family's rule."
    )
    recommendations: list[RecAnswer]
    findings: list[FindingAnswer]
    closest: list[RecAnswer] = Field(
        default_factory=list, description="With status 'no-match': the nearest entries, which do not answer it."
    )
    terms: list[str] = Field(default_factory=list, description="The question's search terms, as understood.")
    question_language: Literal["en", "es"] = Field(
        default="en", description="The question's language; answers are always in English."
    )

    def markdown(self) -> str:
        out = [f"# {self.question}", ""]
        if self.question_language != "en":
            out += ["_Answers are in English (the knowledge base is written in English)._", ""]
        if self.status == "overview" and self.overview_category:
            out += [
                f"It depends on the architecture and the data. The {self.overview_category} recommendations are "
                "below; run `dropout-advisor ask` (no question) for a plan for your own network.",
                "",
            ]
        elif self.status == "overview":
            out += [
                "It depends on the architecture. The core placement rule for each family is below; "
                "run `dropout-advisor ask` (no question) for a plan for your own network.",
                "",
            ]
        if self.status == "no-match":
            if not self.closest:
                out += [
                    "**No entry answers this question.** Nothing in the knowledge base matches its words. "
                    "Try other words, or `dropout-advisor list`.",
                    "",
                ]
                return "\n".join(out)
            best = max(r.coverage for r in self.closest)
            out += [
                f"**No entry answers this question.** The closest entries below match only part of it "
                f"(at best {best:.0%} of its terms, by weight). Try other words, `dropout-advisor list`, or "
                "`dropout-advisor ask` with no question for a plan for your network.",
                "",
                "## Closest entries (not an answer)",
                "",
            ]
            out += [f"- {r.id} {r.title}: {r.summary}" for r in self.closest]
            out.append("")
            return "\n".join(out)
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


def _rec_answer(r: Recommendation, hit: Hit | None = None) -> RecAnswer:
    return RecAnswer(
        id=r.id,
        title=r.title,
        summary=r.summary,
        confidence=r.confidence,
        contested=r.contested,
        rate=rate_str(r.rate.default, r.rate.low, r.rate.high) if r.rate else None,
        positions=[f"{p.claim} [{', '.join(p.citations)}]" for p in r.positions],
        citations=list(r.citations),
        score=hit.score if hit else 0.0,
        coverage=hit.coverage if hit else 0.0,
        matched_terms=list(hit.matched) if hit else [],
    )


def overview(question: str, kb: KnowledgeBase, terms: list[str] | None = None, category: str | None = None) -> QAResult:
    """A question with no specific terms ('where should dropout go?'): each family's leading rule
    (recommendations marked ``core``) and the places never to put dropout. With ``category``, that
    category's recommendations instead ('what dropout rate should I use?')."""
    if category is not None:
        chosen = sorted((r for r in kb.active() if r.category == category), key=lambda r: r.id)
    else:
        core = [r for r in kb.active() if r.core]
        avoid = [r for r in kb.active() if r.engine is not None and r.engine.action == "avoid"]
        chosen = sorted(core, key=lambda r: r.id) + sorted(avoid, key=lambda r: r.id)
    return QAResult(
        question=question,
        status="overview",
        overview=True,
        overview_category=category,
        recommendations=[_rec_answer(r) for r in chosen],
        findings=[],
        terms=terms or [],
    )


def required_coverage(terms: list[str]) -> float:
    """The coverage a question with these search terms needs to count as answered."""
    return MIN_COVERAGE if DROPOUT_TERMS & set(terms) else MIN_COVERAGE_WITHOUT_DROPOUT


def best_coverage(hits: list[Hit]) -> float:
    """The largest share of the question's weight that one of the leading hits contains (0 without hits)."""
    return max((h.coverage for h in hits[:_COVERAGE_WINDOW]), default=0.0)


def answer(question: str, kb: KnowledgeBase, limit: int = 6) -> QAResult:
    """Answer ``question`` (English or Spanish) from the knowledge base; see the module docstring.

    ``limit`` caps the recommendations, the findings and the closest entries (each). Never raises on
    any text; an empty or generic question gets the overview. A Spanish question is answered in English,
    and the result says so (``question_language``).
    """
    result = _answer(question, kb, limit)
    if looks_spanish(question):
        return result.model_copy(update={"question_language": "es"})
    return result


def _answer(question: str, kb: KnowledgeBase, limit: int) -> QAResult:
    idx = knowledge_index(kb)
    terms = list(dict.fromkeys(idx.terms(question)))
    specific = [t for t in terms if t not in GENERIC_TERMS]
    if not specific:
        return overview(question, kb, terms)
    if len(specific) == 1 and specific[0] in CATEGORY_TERMS:
        return overview(question, kb, terms, category=CATEGORY_TERMS[specific[0]])
    hits = idx.query(question, limit=60)
    rec_hits = [h for h in hits if h.kind == "recommendation"]
    if best_coverage(hits) < required_coverage(terms):
        closest = [_rec_answer(kb.recommendations[h.key], h) for h in rec_hits[: min(limit, 3)]]
        return QAResult(
            question=question, status="no-match", recommendations=[], findings=[], closest=closest, terms=terms
        )
    recs = [_rec_answer(kb.recommendations[h.key], h) for h in rec_hits[:limit]]
    return QAResult(
        question=question,
        status="answered",
        recommendations=recs,
        findings=_findings(idx, kb, hits, terms)[:limit],
        terms=terms,
    )


def _findings(idx: Index, kb: KnowledgeBase, hits: list[Hit], terms: list[str]) -> list[FindingAnswer]:
    """Each finding of the matching sources, scored on its own text against the question."""
    q = set(terms)
    found: list[FindingAnswer] = []
    for h in hits:
        if h.kind != "citation":
            continue
        c = kb.citations[h.key]
        for f, text in zip(c.findings, idx.passages[c.key], strict=True):
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
    return found
