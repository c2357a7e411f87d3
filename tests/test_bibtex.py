"""BibTeX export parses, has the required fields, unique keys, and LaTeX-safe text."""

from __future__ import annotations

import re

import pytest

from advisor.bibtex import REQUIRED, bibliography, entry_type, latex_escape, to_bibtex


def _balanced(text: str) -> bool:
    depth = 0
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def test_every_entry_is_balanced_ascii_and_complete(kb):
    for cit in kb.citations.values():
        entry = to_bibtex(cit)
        assert _balanced(entry), cit.key
        assert entry.isascii(), cit.key
        fields = set(re.findall(r"^\s+(\w+)\s+=", entry, flags=re.M))
        assert set(REQUIRED[entry_type(cit)]) <= fields, cit.key


def test_whole_bibliography_parses_with_pybtex(kb):
    pybtex = pytest.importorskip("pybtex.database")
    text = bibliography(list(kb.citations.values()))
    db = pybtex.parse_string(text, "bibtex")
    assert set(db.entries) == set(kb.citations)


def test_keys_are_unique(kb):
    keys = re.findall(r"^@\w+\{([^,]+),", bibliography(list(kb.citations.values())), flags=re.M)
    assert len(keys) == len(set(keys)) == len(kb.citations)


@pytest.mark.parametrize(
    ("raw", "latex"),
    [
        ("Łukasz Kaiser", r"{\L}ukasz Kaiser"),
        ("Petar Veličković", r"Petar Veli{\v{c}}kovi{\'c}"),
        ("Pietro Liò", r"Pietro Li{\`o}"),
        ("Günter Klambauer", r"G{\"u}nter Klambauer"),
        ("Hervé Jégou", r"Herv{\'e} J{\'e}gou"),
        ("50% & more_x", r"50\% \& more\_x"),
    ],
)
def test_latex_escape(raw, latex):
    assert latex_escape(raw) == latex


def test_accented_author_round_trips_through_pybtex(kb):
    pybtex = pytest.importorskip("pybtex.database")
    cit = kb.citation("vaswani2017")
    db = pybtex.parse_string(to_bibtex(cit), "bibtex")
    persons = db.entries["vaswani2017"].persons["author"]
    assert len(persons) == len(cit.authors)
