"""The search vocabulary and index: folding, stop words, identifiers, bilingual stemming, `refs search`."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from advisor.cli import app
from advisor.search import Index, fold, knowledge_index, literal_prefix, spanish_stem_conflicts, words
from advisor.thesaurus import PHRASES

QUESTIONS = tomllib.loads((Path(__file__).with_name("qa_questions.toml")).read_text(encoding="utf-8"))["question"]


def _doc_index(*texts: str) -> Index:
    return Index([("recommendation", f"DOC{i}", "title", "snippet", t) for i, t in enumerate(texts)])


@pytest.fixture(scope="module")
def idx(kb) -> Index:
    return knowledge_index(kb)


# ---- folding, stop words, identifiers ----


def test_fold_removes_accents_and_case():
    assert fold("¿Dónde va la Agrupación Máxima? Ñandú") == "¿donde va la agrupacion maxima? nandu"


def test_accented_words_stay_whole():
    # Before folding, "Dónde" was split into "d" and "nde".
    assert "nde" not in words("¿Dónde pongo el abandono?")
    assert words("Normalización") == ["normalizacion"]


def test_spanish_function_words_are_stop_words():
    assert words("en la de el los las una y o que") == []


def test_seed_question_in_spanish_reduces_to_dropout(idx):
    assert idx.terms("¿Dónde debo colocar las capas de abandono en una red neuronal?") == ["dropout"]


def test_seed_question_in_english_reduces_to_dropout(idx):
    assert idx.terms("Where should I place dropout layers in a neural network?") == ["dropout"]


def test_hyphenated_identifier_is_one_term_never_its_short_parts():
    index = _doc_index("big EN-DE model")
    assert index.terms("EN-DE") == ["en-de"]
    assert index.terms("en de") == []  # Spanish "en", "de": stop words, and never the pieces of EN-DE


def test_hyphenated_identifier_keeps_its_long_parts():
    assert _doc_index("x").terms("weight-drop") == ["weight-drop", "weight", "drop"]


def test_dropout_is_a_search_word(idx):
    assert idx.terms("dropout") == ["dropout"]
    assert idx.terms("Dropout") == idx.terms("dropouts")


# ---- one vocabulary for English and Spanish ----


@pytest.mark.parametrize(
    ("spanish", "english"),
    [
        ("abandono", "dropout"),
        ("normalización por lotes", "batch norm"),
        ("agrupación máxima", "max pooling"),
        ("tasa de abandono", "dropout rate"),
        ("sobreajuste", "overfitting"),
        ("red convolucional", "convolutional network"),
        ("red recurrente", "recurrent network"),
        ("transformador", "Transformer"),
        ("atención", "attention"),
        ("ajuste fino", "fine-tuning"),
        ("preentrenamiento", "pretraining"),
        ("incertidumbre", "uncertainty"),
        ("decaimiento de pesos", "weight decay"),
        ("pérdida de validación", "validation loss"),
    ],
)
def test_spanish_terms_fold_into_the_english_vocabulary(idx, spanish, english):
    assert sorted(idx.terms(spanish)) == sorted(idx.terms(english))


def test_unlisted_inflection_maps_through_its_snowball_stem(idx):
    # "entrenaron" (they trained) is not listed; "entrenar" is, and both stem to "entren".
    assert "entrenaron" not in idx.memo
    assert idx.terms("entrenaron") == idx.terms("training")


def test_a_word_of_the_english_knowledge_base_is_never_read_as_spanish():
    # "red" is a listed Spanish word (network, dropped); in a text that uses the English word it stays.
    assert _doc_index("the red channel").terms("red") == ["red"]
    assert _doc_index("the blue channel").terms("red") == []


def test_listed_spanish_words_share_no_stem_with_a_different_meaning():
    assert spanish_stem_conflicts() == {}


def test_cached_terms_equal_freshly_computed_ones(idx):
    cached = pickle.loads(pickle.dumps(idx))
    for text in [q["text"] for q in QUESTIONS] + [text for *_, text in idx.docs[:5]]:
        fresh = [t for w in words(text) for t in cached._stem_word(w)]
        assert cached.terms(text) == fresh, text


def test_common_questions_need_no_stemmer_import(tmp_path):
    # Every word of these questions is in the index's cache: the Snowball stemmers are never imported.
    code = (
        "import sys\n"
        "from advisor.knowledge import load\n"
        "from advisor.search import knowledge_index\n"
        "idx = knowledge_index(load())\n"
        "import pickle; idx = pickle.loads(pickle.dumps(idx))\n"
        "for k in [m for m in sys.modules if m.startswith('snowballstemmer')]: del sys.modules[k]\n"
        "import advisor.search as s; s._stemmers.cache_clear(); s.spanish_stem_map.cache_clear()\n"
        "idx.terms('should dropout go before or after max pooling?')\n"
        "idx.terms('¿Dónde debo colocar las capas de abandono en una red neuronal?')\n"
        "print(any(m.startswith('snowballstemmer') for m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ---- ranking ----


def test_query_reports_matched_terms_and_coverage():
    index = _doc_index("dropout before max pooling", "dropout in transformers")
    best = index.query("dropout before max pooling")[0]
    assert best.key == "DOC0"
    assert set(best.matched) == {"dropout", "maxpool", "pool"}
    assert best.coverage == 1.0


def test_unknown_terms_lower_the_coverage():
    index = _doc_index("dropout before max pooling", "dropout in transformers")
    hit = index.query("max pooling for xylophones")[0]
    assert 0 < hit.coverage < 0.5


# ---- refs search ----


def test_refs_search_dropout_finds_sources_and_recommendations(runner):
    result = runner.invoke(app, ["refs", "search", "dropout", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert len(payload["hits"]) == 10 and len(payload["recommendations"]) == 10
    assert all("dropout" in h["matched"] for h in payload["hits"] + payload["recommendations"])


def test_refs_search_text_lists_sources_then_recommendations(runner):
    result = runner.invoke(app, ["refs", "search", "U-Net"])
    assert result.exit_code == 0
    kinds = [line.split("\t")[1] for line in result.stdout.splitlines()]
    assert kinds[0] == "citation" and "recommendation" in kinds
    assert "ronneberger2015" in result.stdout and "DRP030" in result.stdout


def test_refs_search_in_spanish(runner):
    result = runner.invoke(app, ["refs", "search", "agrupación máxima", "--format", "json"])
    assert "wu2015" in [h["key"] for h in json.loads(result.stdout)["hits"]]


def test_refs_search_says_where_to_look_when_only_recommendations_match(runner):
    result = runner.invoke(app, ["refs", "search", "nondeterministic"])
    assert result.exit_code == 0
    assert result.stderr.startswith("no source matches 'nondeterministic'; 1 recommendation(s) do: DRP302")
    assert "DRP302" in result.stdout


def test_refs_search_json_keeps_its_keys(runner):
    payload = json.loads(runner.invoke(app, ["refs", "search", "batch norm", "--format", "json"]).stdout)
    assert {"schema_version", "query", "hits", "recommendations"} <= set(payload)
    assert {"kind", "key", "title", "score", "snippet"} <= set(payload["hits"][0])


def test_short_spanish_function_words_are_not_index_terms(idx):
    # The knowledge base says "EN-DE"; its index must not contain "en" or "de" on their own.
    assert "en-de" in idx.idf
    assert {"en", "de", "la", "el"}.isdisjoint(idx.idf)


def test_every_phrase_starts_with_its_literal_prefix():
    samples = [q["text"] for q in QUESTIONS] + [
        "capas de abandono, capa de dropout, max-pooling, BatchNorm2d, U-Net, self-attention, GPT-2, L2 penalty"
    ]
    for alternatives, _ in PHRASES:
        for pattern in alternatives:
            prefix = literal_prefix(pattern)
            assert prefix, pattern
            for text in samples:
                folded = fold(text)
                for m in re.finditer(pattern, folded):
                    assert folded[m.start() :].startswith(prefix), (pattern, folded)
