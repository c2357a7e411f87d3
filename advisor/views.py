"""Terminal views: rich on a terminal, plain text when piped. Imported only by the CLI."""

from __future__ import annotations

import os
import sys
from typing import Any

from advisor.explain import rate_str, short_ref
from advisor.knowledge import KnowledgeBase
from advisor.schema import Citation, Recommendation
from advisor.search import Hit


def _rich_ok() -> bool:
    return sys.stdout.isatty()


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False, no_color="NO_COLOR" in os.environ)


def print_markdown(md: str) -> None:
    if not _rich_ok():
        sys.stdout.write(md)
        return
    from rich.markdown import Markdown

    console().print(Markdown(md, code_theme="ansi_dark"))


def _table(title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    if not _rich_ok():
        for row in rows:
            sys.stdout.write("\t".join(row) + "\n")
        return
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console().print(table)


def recommendation_rows(recs: list[Recommendation]) -> None:
    rows = []
    for r in recs:
        rate = rate_str(r.rate.default, r.rate.low, r.rate.high) if r.rate else "-"
        flag = " (contested)" if r.contested else ""
        rows.append([r.id, r.category, r.confidence + flag, rate, r.summary])
    _table("Placement recommendations", ["ID", "category", "confidence", "drop p", "summary"], rows)


def citation_rows(cits: list[Citation]) -> None:
    rows = []
    for c in cits:
        ident = f"arXiv:{c.arxiv}" if c.arxiv else (f"doi:{c.doi}" if c.doi else (c.url or ""))
        rows.append([c.key, short_ref(c), c.title, ident])
    _table("Sources", ["key", "reference", "title", "id"], rows)


def search_rows(hits: list[Hit], kb: KnowledgeBase) -> None:
    rows = []
    for h in hits:
        rows.append([f"{h.score:.2f}", h.kind, h.key, h.title, h.snippet])
    _table(None, ["score", "kind", "key", "title", "detail"], rows)
