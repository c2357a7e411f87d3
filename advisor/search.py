"""Offline ranked retrieval over the knowledge base (Okapi BM25 with a small domain thesaurus)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from advisor.knowledge import KnowledgeBase
from advisor.schema import Citation, Recommendation

# Phrases people write, mapped to the terms the knowledge base uses. Applied before tokenizing.
_PHRASES: list[tuple[str, str]] = [
    (r"batch[\s_-]*norm(alization|alisation)?|\bbn\b", " batchnorm "),
    (r"layer[\s_-]*norm(alization|alisation)?", " layernorm "),
    (r"max[\s_-]*pool(ing)?", " maxpool pooling "),
    (
        r"avg[\s_-]*pool(ing)?|average[\s_-]*pool(ing)?|global[\s_-]*pool(ing)?|\bgap\b",
        " globalpool pooling ",
    ),
    (r"fully[\s_-]*connected|\bdense\b|\bfc\b|\bmlp\b|\bperceptron", " fc linear "),
    (r"\bconv(olution(al)?)?s?\b|\bcnns?\b", " conv "),
    (r"\brnns?\b|\blstms?\b|\bgrus?\b|recurrent", " rnn recurrent lstm "),
    (r"transformers?|self[\s_-]*attention|\bbert\b|\bgpt\b", " transformer attention "),
    (r"drop[\s_-]*path|stochastic[\s_-]*depth", " droppath stochasticdepth "),
    (r"spatial[\s_-]*dropout|dropout2d|channel[\s_-]*wise", " spatialdropout channel "),
    (r"monte[\s_-]*carlo|mc[\s_-]*dropout|uncertaint(y|ies)", " mcdropout uncertainty "),
    (r"keep[\s_-]*prob(ability)?", " keepprob retain "),
    (r"\brelu\b|activation functions?", " activation relu "),
    (r"\blogits?\b|output layer|last layer|final layer", " output logits "),
    (r"\bselu\b|alpha[\s_-]*dropout|self[\s_-]*normali[sz]ing", " selu alphadropout "),
    (r"graph[\s_-]*conv(olution(al)?)?|\bgcn\b|\bgat\b|graph", " graph gnn "),
    (r"\bllms?\b|large language models?", " large language model "),
    (r"pre[\s_-]*train(ing|ed)?", " pretraining "),
    (r"fine[\s_-]*tun(e|ing|ed)", " finetuning "),
    (r"overfit(ting|s)?", " overfitting "),
    (r"underfit(ting|s)?", " underfitting "),
    (r"residual|skip[\s_-]*connections?|resnets?", " residual resnet "),
    (r"embeddings?", " embedding "),
]
_STOP = set(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "before",
        "after",
        "both",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "my",
        "of",
        "on",
        "or",
        "should",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "this",
        "to",
        "use",
        "used",
        "using",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "place",
        "put",
        "placing",
        "layer",
        "layers",
        "network",
        "networks",
        "neural",
        "dropout",
        "go",
    ]
)
# "before"/"after" are stop words for matching, but a question's direction still ranks by content.


def _stem(tok: str) -> str:
    for suf in ("ations", "ation", "ings", "ing", "ies", "es", "s", "ed"):
        if len(tok) > len(suf) + 3 and tok.endswith(suf):
            return tok[: -len(suf)] + ("y" if suf == "ies" else "")
    return tok


def tokens(text: str) -> list[str]:
    low = text.lower()
    for pat, rep in _PHRASES:
        low = re.sub(pat, rep, low)
    return [_stem(t) for t in re.findall(r"[a-z0-9]+", low) if t not in _STOP and len(t) > 1]


@dataclass(frozen=True)
class Hit:
    kind: str  # "recommendation" or "citation"
    key: str
    title: str
    score: float
    snippet: str


def _rec_text(r: Recommendation) -> tuple[str, str]:
    head = f"{r.id} {r.title} {r.title} {r.summary} {r.summary} " + (r.audit.slug.replace("-", " ") if r.audit else "")
    body = " ".join(
        [r.rationale, r.site.description, r.site.kind, r.site.module, *r.applies_to]
        + [f"{p.claim} {p.evidence}" for p in r.positions]
    )
    return head, body


def _cit_text(c: Citation) -> tuple[str, str]:
    head = f"{c.key} {c.title} {c.title} " + " ".join(c.authors) + f" {c.year}"
    body = " ".join(
        [c.note or ""] + [f"{f.where} {f.kind} {f.quote or ''} {f.note or ''} {f.rate_text or ''}" for f in c.findings]
    )
    return head, body


class Index:
    def __init__(self, docs: list[tuple[str, str, str, str, str]]) -> None:
        # (kind, key, title, snippet, text)
        self.docs = docs
        self.tfs = [Counter(tokens(text)) for *_, text in docs]
        self.lens = [sum(tf.values()) for tf in self.tfs]
        self.avg = (sum(self.lens) / len(self.lens)) if self.lens else 1.0
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def query(self, q: str, limit: int = 10, k1: float = 1.4, b: float = 0.75) -> list[Hit]:
        terms = tokens(q)
        if not terms:
            return []
        scored: list[Hit] = []
        for (kind, key, title, snippet, _), tf, ln in zip(self.docs, self.tfs, self.lens, strict=True):
            s = 0.0
            for t in set(terms):
                f = tf.get(t, 0)
                if f:
                    s += self.idf.get(t, 0.0) * f * (k1 + 1) / (f + k1 * (1 - b + b * ln / self.avg))
            if s > 0:
                scored.append(Hit(kind, key, title, round(s, 3), snippet))
        scored.sort(key=lambda h: (-h.score, h.key))
        return scored[:limit]


def citation_index(kb: KnowledgeBase) -> Index:
    if "citation_index" not in kb.derived:
        kb.derived["citation_index"] = _citation_index(kb)
    idx: Index = kb.derived["citation_index"]
    return idx


def knowledge_index(kb: KnowledgeBase) -> Index:
    """Recommendations and citations together, for plain-language questions."""
    if "knowledge_index" not in kb.derived:
        kb.derived["knowledge_index"] = _knowledge_index(kb)
    idx: Index = kb.derived["knowledge_index"]
    return idx


def _citation_index(kb: KnowledgeBase) -> Index:
    docs = []
    for c in kb.citations.values():
        head, body = _cit_text(c)
        docs.append(("citation", c.key, c.title, f"{', '.join(c.authors[:3])} {c.year}", f"{head} {head} {body}"))
    return Index(docs)


def _knowledge_index(kb: KnowledgeBase) -> Index:
    docs = []
    for r in kb.active():
        head, body = _rec_text(r)
        docs.append(("recommendation", r.id, r.title, r.summary, f"{head} {head} {body}"))
    for c in kb.citations.values():
        head, body = _cit_text(c)
        docs.append(("citation", c.key, c.title, f"{', '.join(c.authors[:3])} {c.year}", f"{head} {body}"))
    return Index(docs)
