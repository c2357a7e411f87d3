"""Offline ranked retrieval over the knowledge base: Okapi BM25 over one English + Spanish vocabulary.

How text becomes search terms (the same for the knowledge base and for a question):

1. Fold: Unicode NFKD, combining marks dropped, lower case (``"¿Dónde?"`` -> ``"¿donde?"``).
2. Rewrite the phrases of :data:`advisor.thesaurus.PHRASES` (``normalización por lotes`` -> ``batchnorm``),
   in table order; a rewritten phrase is never rewritten again by a later entry.
3. Split into words. Identifiers joined by ``-`` or ``_`` stay whole (``EN-DE`` -> ``en-de``, never ``en``
   and ``de``); their parts of three or more letters are kept as well (``weight-drop`` -> ``weight``,
   ``drop``). Decimal numbers keep their point (``0.5``).
4. Drop :data:`~advisor.thesaurus.STOP_WORDS` (English and Spanish) and one-letter words.
5. Stem with the Snowball English stemmer, except words the English knowledge base never uses that
   :data:`~advisor.thesaurus.SPANISH_WORDS` lists, or whose Snowball Spanish stem is that of a listed
   word: those become the mapped English terms. No language detection is needed: both vocabularies
   fold into one index.

The terms of every word in the knowledge base and in the thesaurus are computed once, when the index is
built, and kept in the index, which :func:`advisor.knowledge.load_cached` caches with the knowledge base.
The Snowball stemmers (the ``snowballstemmer`` package) are imported only for a word that cache has not
seen.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from advisor.thesaurus import PHRASES, SPANISH_WORDS, STOP_WORDS

if TYPE_CHECKING:
    from advisor.knowledge import KnowledgeBase
    from advisor.schema import Citation, Finding, Recommendation

_WORD = re.compile(r"\d+(?:\.\d+)+|[a-z0-9]+(?:[-_][a-z0-9]+)*")
_JOINER = re.compile(r"[-_]")


_REGEX_SYNTAX = set("[](){}|\\.^$*+?")


def literal_prefix(pattern: str) -> str:
    """The letters every match of ``pattern`` starts with: ``"capas? de"`` -> ``"capa"``."""
    prefix = ""
    for i, ch in enumerate(pattern):
        if ch in _REGEX_SYNTAX:
            return prefix[:-1] if ch in "?*{" and prefix else prefix
        prefix += ch
        if i + 1 == len(pattern):
            return prefix
    return prefix


@functools.cache
def _phrases() -> list[tuple[str, str, str]]:
    """(literal prefix, pattern, replacement) for every alternative of PHRASES.

    Replacements are written in upper case: the (lower-case) patterns after them can never match them.
    A pattern is compiled only once its prefix occurs in a text, so a short question compiles few.
    """
    return [(literal_prefix(alt), alt, replacement.upper()) for alts, replacement in PHRASES for alt in alts]


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _rewrite(text: str, pattern: re.Pattern[str], replacement: str) -> str:
    """Replace the matches of ``pattern`` that start a word (the patterns carry no leading ``\\b``, which
    would stop the regex engine from scanning for their first letters)."""

    def at_word_start(m: re.Match[str]) -> str:
        start = m.start()
        return m.group(0) if start and text[start - 1].isalnum() else replacement

    return pattern.sub(at_word_start, text)


@functools.cache
def _stemmers() -> tuple[Any, Any]:
    """The Snowball English and Spanish stemmers, imported on first use (about 40 ms in pure Python)."""
    import snowballstemmer

    return snowballstemmer.stemmer("english"), snowballstemmer.stemmer("spanish")


@functools.cache
def _english_stem(word: str) -> str:
    return str(_stemmers()[0].stemWord(word))


@functools.cache
def spanish_stem_map() -> dict[str, str]:
    """Snowball Spanish stem -> English terms, from :data:`SPANISH_WORDS`.

    A stem shared by listed words that mean different things is left out (the listed words themselves
    still map); :func:`spanish_stem_conflicts` names them so the table can be fixed.
    """
    _, spanish = _stemmers()
    by_stem: dict[str, set[str]] = {}
    for word, target in SPANISH_WORDS.items():
        by_stem.setdefault(spanish.stemWord(word), set()).add(target)
    return {stem: targets.pop() for stem, targets in by_stem.items() if len(targets) == 1}


def spanish_stem_conflicts() -> dict[str, list[str]]:
    """Stems that listed Spanish words with different meanings share (should be empty)."""
    _, spanish = _stemmers()
    by_stem: dict[str, dict[str, str]] = {}
    for word, target in SPANISH_WORDS.items():
        by_stem.setdefault(spanish.stemWord(word), {})[word] = target
    return {stem: sorted(words) for stem, words in by_stem.items() if len(set(words.values())) > 1}


def fold(text: str) -> str:
    """Lower case without accents or other combining marks: ``"Agrupación"`` -> ``"agrupacion"``."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def words(text: str) -> list[str]:
    """Folded, phrase-rewritten words of ``text`` (steps 1 to 4 of the module docstring), not yet stemmed."""
    low = fold(text)
    for prefix, pattern, replacement in _phrases():
        if prefix in low:
            low = _rewrite(low, _compiled(pattern), replacement)
    return [w for w in _WORD.findall(low.lower()) if len(w) > 1 and w not in STOP_WORDS]


#: Spanish function words that English text never uses; two of them, or a Spanish question mark, mark a question
#: as Spanish (:func:`looks_spanish`).
_SPANISH_MARKERS = frozenset(
    [
        "que",
        "cual",
        "cuales",
        "como",
        "donde",
        "cuando",
        "cuanto",
        "cuanta",
        "cuantos",
        "cuantas",
        "por",
        "para",
        "con",
        "sin",
        "una",
        "uno",
        "los",
        "las",
        "del",
        "el",
        "la",
        "es",
        "son",
        "debo",
        "deberia",
        "puedo",
        "hay",
        "entre",
        "antes",
        "despues",
    ]
)


def looks_spanish(text: str) -> bool:
    """Whether ``text`` reads as Spanish: an opening ``¿``/``¡``, a word only the Spanish vocabulary has
    (:data:`~advisor.thesaurus.SPANISH_WORDS`), or two Spanish function words. Answers are always in English;
    this only decides whether to say so."""
    if "¿" in text or "¡" in text:
        return True
    ws = _WORD.findall(fold(text))
    if any(w in SPANISH_WORDS for w in ws):
        return True
    return sum(w in _SPANISH_MARKERS for w in ws) >= 2


@dataclass(frozen=True)
class Hit:
    kind: str  # "recommendation" or "citation"
    key: str
    title: str
    score: float
    snippet: str
    # The question's terms this entry contains, and the share of the question's weight (idf) they carry.
    matched: tuple[str, ...] = ()
    coverage: float = 0.0


class Index:
    """BM25 over documents ``(kind, key, title, snippet, text)``; picklable, so it is cached with the KB."""

    def __init__(
        self, docs: list[tuple[str, str, str, str, str]], passages: dict[str, list[str]] | None = None
    ) -> None:
        """``passages``: texts inside a document (a source's findings) whose terms are kept, by document key."""
        self.docs = docs
        doc_words = [words(text) for *_, text in docs]
        # Every word the (English) knowledge base uses, with its terms: such a word is never read as Spanish.
        self.spanish_stems = spanish_stem_map()  # kept with the cached index: no recomputation per question
        self.vocab: dict[str, tuple[str, ...]] = dict.fromkeys((w for ws in doc_words for w in ws), ())
        for word in self.vocab:
            self.vocab[word] = self._stem_word(word)
        # Terms of other words seen: the thesaurus's Spanish words now (so common Spanish words never need
        # the stemmers at question time), a question's new words later.
        self.memo: dict[str, tuple[str, ...]] = {}
        for word in SPANISH_WORDS:
            self._word_terms(word)
        self.tfs = [Counter(self._terms_of(ws)) for ws in doc_words]
        self.passages: dict[str, list[frozenset[str]]] = {
            key: [frozenset(self.terms(text)) for text in texts] for key, texts in (passages or {}).items()
        }
        self.lens = [sum(tf.values()) for tf in self.tfs]
        self.avg = (sum(self.lens) / len(self.lens)) if self.lens else 1.0
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        # A term no document contains weighs as much as the rarest possible one.
        self.unseen_idf = math.log(1 + (n + 0.5) / 0.5)

    # ---- text -> terms ----
    def terms(self, text: str) -> list[str]:
        """The search terms of ``text``, in order, with repeats (see the module docstring)."""
        return self._terms_of(words(text))

    def _terms_of(self, ws: list[str]) -> list[str]:
        out: list[str] = []
        for w in ws:
            out.extend(self._word_terms(w))
        return out

    def _word_terms(self, word: str) -> tuple[str, ...]:
        cached = self.vocab.get(word)
        if cached is None:
            cached = self.memo.get(word)
        if cached is None:
            cached = self.memo[word] = self._stem_word(word)
        return cached

    def _stem_word(self, word: str) -> tuple[str, ...]:
        if _JOINER.search(word):
            parts = [p for p in _JOINER.split(word) if len(p) >= 3 and p not in STOP_WORDS]
            out = [_JOINER.sub("-", word)]
            for part in parts:  # the parts of an identifier the knowledge base uses are English too
                out.extend(self._stem_simple(part, english=word in self.vocab))
            return tuple(out)
        return tuple(self._stem_simple(word))

    def _stem_simple(self, word: str, english: bool = False) -> list[str]:
        if not english and word not in self.vocab:
            mapped = SPANISH_WORDS.get(word)
            if mapped is None:
                mapped = self.spanish_stems.get(_stemmers()[1].stemWord(word))
            if mapped is not None:
                return [_english_stem(t) for t in mapped.split()]
        return [_english_stem(word)]

    def weight(self, term: str) -> float:
        """The term's inverse document frequency; terms no document contains get the largest weight."""
        return self.idf.get(term, self.unseen_idf)

    # ---- ranking ----
    def query(self, q: str, limit: int = 10, k1: float = 1.4, b: float = 0.75) -> list[Hit]:
        """The ``limit`` best documents for ``q``, best first (ties by key); documents sharing no term are left out."""
        terms = list(dict.fromkeys(self.terms(q)))
        if not terms:
            return []
        total = sum(self.weight(t) for t in terms)
        scored: list[Hit] = []
        for (kind, key, title, snippet, _), tf, ln in zip(self.docs, self.tfs, self.lens, strict=True):
            s = 0.0
            matched = []
            for t in terms:
                f = tf.get(t, 0)
                if f:
                    matched.append(t)
                    s += self.idf[t] * f * (k1 + 1) / (f + k1 * (1 - b + b * ln / self.avg))
            if s > 0:
                coverage = sum(self.weight(t) for t in matched) / total
                scored.append(Hit(kind, key, title, round(s, 3), snippet, tuple(matched), round(coverage, 3)))
        scored.sort(key=lambda h: (-h.score, h.key))
        return scored[:limit]


def knowledge_index(kb: KnowledgeBase) -> Index:
    """Recommendations and citations together: plain-language questions, and ``refs search`` (which keeps
    the two kinds apart)."""
    if "knowledge_index" not in kb.derived:
        kb.derived["knowledge_index"] = _knowledge_index(kb)
    idx: Index = kb.derived["knowledge_index"]
    return idx


def _rec_text(r: Recommendation) -> tuple[str, str]:
    # The category names what the entry is about ("rate", "placement"): a question such as "what rate?" finds
    # the rate entries first.
    head = f"{r.id} {r.category} {r.title} {r.title} {r.summary} {r.summary} " + (
        r.audit.slug.replace("-", " ") if r.audit else ""
    )
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


def finding_text(f: Finding) -> str:
    """The text of one finding that a question is matched against."""
    return f"{f.where} {f.kind} {f.quote or ''} {f.note or ''}"


def _knowledge_index(kb: KnowledgeBase) -> Index:
    docs = []
    for r in kb.active():
        head, body = _rec_text(r)
        docs.append(("recommendation", r.id, r.title, r.summary, f"{head} {head} {body}"))
    for c in kb.citations.values():
        head, body = _cit_text(c)
        docs.append(("citation", c.key, c.title, f"{', '.join(c.authors[:3])} {c.year}", f"{head} {head} {body}"))
    # Each finding's terms, so that answers rank findings without tokenizing them at question time.
    passages = {c.key: [finding_text(f) for f in c.findings] for c in kb.citations.values()}
    return Index(docs, passages)
