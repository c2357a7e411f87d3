"""`ask "question"`: English and Spanish questions of every kind, the seed thread, and "no entry answers this"."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from advisor.cli import app
from advisor.qa import answer

QUESTIONS = tomllib.loads((Path(__file__).with_name("qa_questions.toml")).read_text(encoding="utf-8"))["question"]
# One test per question kind and language: the calibration questions cover every kind in both languages
# (checked below); the holdout questions are scored together in test_qa_calibration.py.
CALIBRATION = [q for q in QUESTIONS if q["split"] == "calibration"]

SEED_EN = "Where should I place dropout layers in a neural network?"
SEED_ES = "¿Dónde debo colocar las capas de abandono en una red neuronal?"


def _ask(runner, question: str) -> dict:
    result = runner.invoke(app, ["ask", question, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    payload: dict = json.loads(result.stdout)
    return payload


def test_every_kind_has_an_english_and_a_spanish_question():
    kinds = {q["kind"] for q in QUESTIONS}
    for kind in kinds:
        assert {q["lang"] for q in CALIBRATION if q["kind"] == kind} == {"en", "es"}, kind


@pytest.mark.parametrize("q", CALIBRATION, ids=[f"{q['kind']}-{q['lang']}-{i}" for i, q in enumerate(CALIBRATION)])
def test_labelled_question(runner, q):
    payload = _ask(runner, q["text"])
    if not q["expect"]:
        assert payload["status"] == "no-match", payload["recommendations"]
        assert payload["recommendations"] == [] and payload["findings"] == []
        return
    assert payload["status"] in ("answered", "overview")
    ids = [r["id"] for r in payload["recommendations"]]
    assert set(q["expect"]) & set(ids[: q["top"]]), ids


@pytest.mark.parametrize("question", [SEED_EN, SEED_ES])
def test_seed_thread_question_gets_the_overview(runner, question):
    payload = _ask(runner, question)
    assert payload["status"] == "overview" and payload["overview"] is True
    assert {"DRP001", "DRP004", "DRP012", "DRP101"} <= {r["id"] for r in payload["recommendations"]}


def test_seed_question_in_spanish_never_matches_the_en_de_transformer_entry(runner):
    # "en" and "de" used to match "EN-DE" and answer with the Transformer residual entry (DRP017).
    payload = _ask(runner, SEED_ES)
    assert payload["terms"] == ["dropout"]
    assert payload["recommendations"][0]["id"] != "DRP017"


@pytest.mark.parametrize(
    "question",
    ["should dropout go before or after max pooling?", "¿El dropout va antes o después de la agrupación máxima?"],
)
def test_seed_sub_question_returns_drp006_first(runner, question):
    assert _ask(runner, question)["recommendations"][0]["id"] == "DRP006"


@pytest.mark.parametrize("question", ["What dropout rate should I use?", "¿Qué tasa de abandono debo usar?"])
def test_rate_only_question_lists_the_rate_entries(runner, question, kb):
    payload = _ask(runner, question)
    assert payload["status"] == "overview" and payload["overview_category"] == "rate"
    expected = sorted(r.id for r in kb.active() if r.category == "rate")
    assert [r["id"] for r in payload["recommendations"]] == expected


@pytest.mark.parametrize(
    "question", ["How do I bake sourdough bread?", "¿Cuál es la tasa de abandono escolar en España?"]
)
def test_unrelated_question_says_no_entry_answers_it(runner, question):
    result = runner.invoke(app, ["ask", question, "-f", "markdown"])
    assert result.exit_code == 0
    assert "**No entry answers this question.**" in result.stdout
    assert "## Recommendations" not in result.stdout


def test_no_match_lists_the_closest_entries_as_such(runner):
    payload = _ask(runner, "How many epochs should I train my model for?")
    assert payload["status"] == "no-match" and payload["recommendations"] == []
    assert payload["closest"] and all(c["coverage"] < 1 for c in payload["closest"])
    text = runner.invoke(app, ["ask", "How many epochs should I train my model for?", "-f", "markdown"]).stdout
    assert "## Closest entries (not an answer)" in text and payload["closest"][0]["id"] in text


def test_answered_question_says_so_in_text_and_json(runner):
    payload = _ask(runner, "Does torch.no_grad() turn dropout off?")
    assert payload["status"] == "answered"
    top = payload["recommendations"][0]
    assert top["id"] == "DRP320" and "nograd" in top["matched_terms"] and top["coverage"] > 0.5
    text = runner.invoke(app, ["ask", "Does torch.no_grad() turn dropout off?", "-f", "markdown"]).stdout
    assert "## Recommendations" in text and "No entry answers" not in text


def test_json_keeps_every_earlier_key(runner):
    payload = _ask(runner, "dropout before or after batch normalization")
    assert {"schema_version", "question", "overview", "recommendations", "findings"} <= set(payload)
    assert payload["schema_version"] == 1
    assert {"id", "title", "summary", "confidence", "contested", "rate", "positions", "citations", "score"} <= set(
        payload["recommendations"][0]
    )


def test_accents_do_not_matter(kb):
    with_accents = answer("¿Dónde va el dropout en una U-Net?", kb)
    without = answer("donde va el dropout en una u-net", kb)
    assert with_accents.terms == without.terms
    assert [r.id for r in with_accents.recommendations] == [r.id for r in without.recommendations]


def test_new_entries_answer_the_issue_questions(kb):
    asked = {
        "Why is my validation loss lower than my training loss with dropout?": "DRP402",
        "Does torch.no_grad() turn dropout off?": "DRP320",
        "How do I change the dropout rate during training?": "DRP322",
        "Dropout or weight decay?": "DRP104",
        "Where does dropout go in a U-Net?": "DRP030",
    }
    for question, expected in asked.items():
        result = answer(question, kb)
        assert result.status == "answered" and result.recommendations[0].id == expected, question


def test_empty_question_gets_the_overview(kb):
    assert answer("¿?", kb).status == "overview"


# ---- the review of issue 9 (review-advice.md, kind 13): ranking, the empty question, Spanish answers ----


@pytest.mark.parametrize(
    ("question", "first"),
    [
        ("¿Qué tasa de dropout uso para ajustar BERT?", "DRP020"),  # "ajustar BERT" is fine-tuning, not "change"
        ("Is dropout before batch norm bad?", "DRP101"),
        ("¿Dropout antes de la normalización por lotes?", "DRP101"),
        ("dropout in the attention of a transformer?", "DRP018"),  # BERT/GPT no longer read as "attention"
        ("Should I use dropout when fine-tuning LLaMA with LoRA?", "DRP208"),
        ("¿Cuánto dropout en un LSTM?", "DRP012"),  # "how much" asks for the rate, not the single-layer pitfall
        ("How much dropout in an LSTM?", "DRP012"),
    ],
)
def test_review_questions_lead_with_their_entry(runner, question, first):
    assert _ask(runner, question)["recommendations"][0]["id"] == first


def test_different_predictions_at_inference_finds_the_eval_mode_entries(runner):
    ids = [
        r["id"]
        for r in _ask(runner, "Why does my model give different predictions each time at inference?")["recommendations"]
    ]
    assert {"DRP302", "DRP320"} <= set(ids), ids


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question_is_a_usage_error(runner, question):
    result = runner.invoke(app, ["ask", question])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: the question is empty\nhint: ")


def test_spanish_question_says_the_answers_are_in_english(runner):
    payload = _ask(runner, "¿Cuánto dropout en un LSTM?")
    assert payload["question_language"] == "es"
    result = runner.invoke(app, ["ask", "¿Cuánto dropout en un LSTM?", "--format", "markdown"])
    assert "Answers are in English" in result.stdout


def test_english_question_carries_no_language_note(runner):
    result = runner.invoke(app, ["ask", "How much dropout in an LSTM?", "--format", "markdown"])
    assert result.exit_code == 0
    assert "Answers are in English" not in result.stdout
    assert _ask(runner, "How much dropout in an LSTM?")["question_language"] == "en"
