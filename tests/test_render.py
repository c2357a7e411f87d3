"""Knowledge text is shown as written: never read as Markdown or rich markup (issue 12)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from rich.markdown import Markdown

from advisor.cli import app, knowledge_cmds
from advisor.explain import citation_markdown, md_escape, recommendation_markdown


def _rendered(md: str) -> str:
    """What rich shows for a Markdown document, whitespace collapsed (so wrapping does not matter)."""
    out = io.StringIO()
    Console(file=out, width=2000, color_system=None, legacy_windows=False).print(Markdown(md))
    return " ".join(out.getvalue().split())


def _norm(text: str) -> str:
    return " ".join(text.split())


def test_escaped_text_renders_as_written():
    text = "Linear(512*7*7, 4096); __init__; <root>; `. Default: `; a & b; ~~x~~; [0.1, 0.5] | y\n- not a list"
    assert _rendered(md_escape(text)) == _norm(text)


def test_every_finding_of_every_source_renders_as_written(kb):
    for cit in kb.citations.values():
        shown = _rendered(citation_markdown(cit, kb))
        for f in cit.findings:
            for text in (f.where, f.quote, f.note, f.rate_text, f.section):
                if text:
                    assert _norm(text) in shown, (cit.key, text)
        for text in (cit.title, cit.note, *cit.unverified):
            if text:
                assert _norm(text) in shown, (cit.key, text)


def test_every_recommendation_renders_as_written(kb):
    for rec in kb.recommendations.values():
        shown = _rendered(recommendation_markdown(rec, kb))
        texts = [rec.title, rec.summary, rec.site.description, *rec.applies_to, *rec.not_applies_to]
        texts += [f"{p.claim} — {p.evidence}" for p in rec.positions]
        if rec.rate is not None and rec.rate.note:
            texts.append(rec.rate.note)
        for text in texts:
            assert _norm(text) in shown, (rec.id, text)
        for paragraph in rec.rationale.split("\n\n"):
            assert _norm(paragraph) in shown, (rec.id, paragraph)


def test_refs_show_piped_prints_the_text_as_written(runner):
    result = runner.invoke(app, ["refs", "show", "torchvision-models"])
    assert result.exit_code == 0, result.stderr
    assert "Linear(512*7*7, 4096)" in result.stdout
    assert "\\*" not in result.stdout


def test_refs_show_markdown_is_escaped_markdown(runner):
    result = runner.invoke(app, ["refs", "show", "torchvision-models", "-f", "markdown"])
    assert result.exit_code == 0
    assert r"Linear(512\*7\*7, 4096)" in result.stdout
    assert "Linear(512*7*7, 4096)" in _rendered(result.stdout)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["refs", "show", "torchvision-models"], "Linear(512*7*7, 4096)"),
        (["refs", "show", "pytorch-dropout"], "nn.Transformer.__init__ creates no embedding layer"),
        (["explain", "DRP307"], "created in __init__ but never used"),
        (["explain", "DRP203"], "Hugging Face *_dropout are drop probabilities"),
    ],
)
def test_on_a_terminal_rich_shows_the_text_as_written(runner, monkeypatch, args, expected):
    from advisor import views

    monkeypatch.setattr(knowledge_cmds, "is_terminal", lambda: True)
    monkeypatch.setattr(views, "_rich_ok", lambda: True)
    monkeypatch.setattr(views, "console", lambda: Console(width=2000, color_system=None, highlight=False))
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert expected in _norm(result.stdout)
    assert not re.search(r"\\[*_`<]", result.stdout)


def test_terminal_tables_show_brackets_as_written(monkeypatch, capsys):
    from advisor import views

    monkeypatch.setattr(views, "_rich_ok", lambda: True)
    monkeypatch.setattr(views, "console", lambda: Console(width=300, color_system=None, highlight=False))
    views._table(None, ["text"], [["on the pooled [CLS] output, [bold]not bold[/bold]"]])
    assert "on the pooled [CLS] output, [bold]not bold[/bold]" in capsys.readouterr().out
