"""Reading the knowledge base: list, explain, refs list/show/search/bibtex."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from advisor.cli.common import DocFormat, Format, emit_json, emit_text, guarded, is_terminal
from advisor.cli.help import HelpGroup
from advisor.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from advisor.knowledge import KnowledgeBase

refs_app = typer.Typer(
    cls=HelpGroup,
    help="The sources behind the advice: list, show, search, and export BibTeX.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _kb() -> KnowledgeBase:
    from advisor.knowledge import default_kb

    return default_kb()


def _show(document: Callable[[bool], str], fmt: DocFormat) -> None:
    """Knowledge text is shown literally: escaped in Markdown (also when rich renders it on a terminal),
    as written in plain text when piped."""
    if fmt is DocFormat.markdown:
        emit_text(document(True))
    elif is_terminal():
        from advisor.views import print_markdown

        print_markdown(document(True))
    else:
        emit_text(document(False))


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command("explain")(explain_cmd)
    app.add_typer(refs_app, name="refs")


@guarded
def list_cmd(
    category: str | None = typer.Option(
        None,
        "--category",
        "-c",
        metavar="[placement|interaction|rate|implementation|process]",
        help="Only this category: placement, interaction, rate, implementation, process.",
    ),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="Output format."),
) -> None:
    """Every placement recommendation, one line each.

    \b
    Examples:
      dropout-advisor list
      dropout-advisor list --category implementation
      dropout-advisor list --format json
    """
    from advisor.explain import envelope, recommendation_json

    kb = _kb()
    recs = kb.active()
    if category is not None:
        cats = sorted({r.category for r in recs})
        if category not in cats:
            raise UsageError(f"unknown category '{category}'", hint="choose one of: " + ", ".join(cats))
        recs = [r for r in recs if r.category == category]
    if fmt is Format.json:
        emit_json(envelope("recommendations", [recommendation_json(r) for r in recs]))
        return
    from advisor.views import recommendation_rows

    recommendation_rows(recs)


@guarded
def explain_cmd(
    ident: list[str] = typer.Argument(None, metavar="ID", help="Recommendation IDs (DRP012) or audit rule slugs."),
    all_: bool = typer.Option(False, "--all", help="Explain every recommendation."),
    fmt: DocFormat = typer.Option(DocFormat.text, "--format", "-f", help="text, markdown or json."),
) -> None:
    """One recommendation in full: what, why, where not, rate, example, sources.

    Exit code 1 for an unknown ID or rule slug (with close matches).

    \b
    Examples:
      dropout-advisor explain DRP009
      dropout-advisor explain dropout-before-batchnorm   # by audit rule
      dropout-advisor explain DRP001 DRP002 --format markdown
      dropout-advisor explain --all --format json
    """
    from advisor.explain import envelope, recommendation_json, recommendation_markdown

    kb = _kb()
    if all_:
        recs = kb.active()
    elif ident:
        recs = [kb.recommendation(i) for i in ident]
    else:
        raise UsageError("give a recommendation ID or --all", hint="run 'dropout-advisor list' to see every ID")
    if fmt is DocFormat.json:
        emit_json(envelope("recommendations", [recommendation_json(r) for r in recs]))
        return
    _show(lambda escape: "\n".join(recommendation_markdown(r, kb, escape=escape) for r in recs), fmt)


@refs_app.command("list")
@guarded
def refs_list(fmt: Format = typer.Option(Format.text, "--format", "-f", help="Output format.")) -> None:
    """Every source, one line each.

    \b
    Examples:
      dropout-advisor refs list
      dropout-advisor refs list --format json
    """
    from advisor.explain import citation_json, envelope

    kb = _kb()
    cits = sorted(kb.citations.values(), key=lambda c: (c.year, c.key))
    if fmt is Format.json:
        emit_json(envelope("citations", [citation_json(c) for c in cits]))
        return
    from advisor.views import citation_rows

    citation_rows(cits)


@refs_app.command("show")
@guarded
def refs_show(
    key: list[str] = typer.Argument(..., metavar="KEY", help="Citation keys, e.g. srivastava2014."),
    fmt: DocFormat = typer.Option(DocFormat.text, "--format", "-f", help="text, markdown or json."),
) -> None:
    """Full metadata of a source and the placement findings taken from it.

    Exit code 1 for an unknown key (with close matches).

    \b
    Examples:
      dropout-advisor refs show srivastava2014
      dropout-advisor refs show torchvision-models --format markdown
    """
    from advisor.explain import citation_json, citation_markdown, envelope

    kb = _kb()
    cits = [kb.citation(k) for k in key]
    if fmt is DocFormat.json:
        emit_json(envelope("citations", [citation_json(c) for c in cits]))
        return
    _show(lambda escape: "\n".join(citation_markdown(c, kb, escape=escape) for c in cits), fmt)


@refs_app.command("search")
@guarded
def refs_search(
    query: list[str] = typer.Argument(..., metavar="QUERY", help='Words to look for, e.g. "batch norm".'),
    limit: int = typer.Option(10, "--limit", "-n", min=1, max=100, help="How many matches to show."),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="Output format."),
) -> None:
    """Ranked matches over the sources (titles, authors, findings), then the recommendations that match.

    English or Spanish words; "dropout" is a search word like any other. Exit code 1 when nothing matches.

    \b
    Examples:
      dropout-advisor refs search "batch norm"
      dropout-advisor refs search stochastic depth --limit 3 --format json
    """
    from advisor.search import knowledge_index

    kb = _kb()
    text = " ".join(query)
    ranked = knowledge_index(kb).query(text, limit=len(kb.citations) + len(kb.recommendations))
    hits = [h for h in ranked if h.kind == "citation"][:limit]
    recs = [h for h in ranked if h.kind == "recommendation"][:limit]
    if fmt is Format.json:
        emit_json(
            {
                "schema_version": 1,
                "query": text,
                "hits": [h.__dict__ for h in hits],
                "recommendations": [h.__dict__ for h in recs],
            }
        )
        return
    if not hits and not recs:
        raise NotFoundError(
            f"no source matches '{text}', and no recommendation does", hint="try fewer or more general words"
        )
    if not hits:
        ids = ", ".join(h.key for h in recs)
        sys.stderr.write(f"no source matches '{text}'; {len(recs)} recommendation(s) do: {ids}\n")
    from advisor.views import search_rows

    search_rows(hits + recs, kb)


@refs_app.command("bibtex")
@guarded
def refs_bibtex(
    key: list[str] = typer.Argument(None, metavar="KEY", help="Citation keys; all sources when omitted."),
    output: Path | None = typer.Option(
        None, "--output", "-o", metavar="FILE", help="Write to this file instead of stdout."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Export sources as BibTeX.

    \b
    Examples:
      dropout-advisor refs bibtex srivastava2014 li2019
      dropout-advisor refs bibtex -o refs.bib            # every source
      dropout-advisor refs bibtex -o refs.bib --force    # replace refs.bib
    """
    from advisor.bibtex import bibliography
    from advisor.fileio import write_text_atomic

    kb = _kb()
    cits = [kb.citation(k) for k in key] if key else sorted(kb.citations.values(), key=lambda c: c.key)
    text = bibliography(cits)
    if output is None or str(output) == "-":
        emit_text(text)
        return
    result = write_text_atomic(output, text, force=force)
    sys.stderr.write(f"{output}: {result.value}{result.via} ({len(cits)} entries)\n")
