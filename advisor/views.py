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


def literal(text: str) -> str:
    """Text for ``console.print`` that rich shows as written: ``[0.1, 0.5]`` is not read as a style tag.

    Knowledge text put into rich markup goes through this (issue 12); in Markdown it goes through
    :func:`advisor.explain.md_escape`.
    """
    from rich.markup import escape

    return escape(text)


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
    from rich.text import Text

    table = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # literal: "[CLS]" is text, not a style tag
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


def print_plan(plan: Any, kb: KnowledgeBase) -> None:
    """The user's layer stack with dropout rows inserted, then the sites, places to avoid and notes."""
    if not _rich_ok():
        sys.stdout.write(plan_plain(plan))
        return
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    con = console()
    stack = Text()
    for pos, op in enumerate(plan.layers):
        for site in plan.sites_at(pos):
            stack.append(f"  ▶ {site.module}  p={site.p:g}", style="bold green")
            stack.append(f"   {site.id} · {', '.join(site.recommendations)}\n", style="green")
        stack.append(f"  {op.label}\n", style="dim" if op.kind in ("input", "output") else "")
    spec = plan.spec
    con.print(Panel(stack, title=f"{spec.get('arch')} · {spec.get('layers')} layers · dropout in green", expand=False))
    if plan.sites:
        table = Table(title="Dropout sites", header_style="bold", show_lines=True)
        for col in ("site", "where", "module", "p", "range", "why", "sources"):
            table.add_column(col, overflow="fold")
        for s in plan.sites:
            table.add_row(
                s.id,
                f"after {s.after_label}\nbefore {s.before_label}",
                s.module,
                f"{s.p:g}",
                f"{s.p_range[0]:g}–{s.p_range[1]:g}",
                s.reason + f" ({', '.join(s.recommendations)})",
                ", ".join(s.citations),
            )
        con.print(table)
    else:
        con.print("[bold]No dropout sites[/bold] for this network: see the notes.")
    if plan.avoid:
        con.print("\n[bold red]Do not put dropout here[/bold red]")
        for a in plan.avoid:
            con.print(f"  ✗ {a.where}: {a.reason} [dim]({', '.join(a.recommendations)})[/dim]")
    if plan.notes:
        con.print("\n[bold]Notes[/bold]")
        for n in plan.notes:
            tag = " [yellow](contested)[/yellow]" if n.contested else ""
            con.print(f"  • {n.text}{tag} [dim]({', '.join(n.recommendations)}; {', '.join(n.citations)})[/dim]")
    con.print("\n[dim]Details: dropout-advisor explain ID · sources: dropout-advisor refs show KEY[/dim]")


def plan_plain(plan: Any) -> str:
    out = [f"Dropout plan: {plan.spec.get('arch')}, {plan.spec.get('layers')} layers", ""]
    for pos, op in enumerate(plan.layers):
        for site in plan.sites_at(pos):
            out.append(f"  >> {site.module}  p={site.p:g}  [{site.id}: {', '.join(site.recommendations)}]")
        out.append(f"     {op.label}")
    out.append("")
    if plan.sites:
        out.append("Sites:")
        for s in plan.sites:
            out.append(
                f"  {s.id}  {s.module}  p={s.p:g} (range {s.p_range[0]:g}-{s.p_range[1]:g})"
                f"  after {s.after_label}, before {s.before_label}"
            )
            out.append(f"      why: {s.reason} ({', '.join(s.recommendations)})")
            out.append(f"      sources: {', '.join(s.citations)}")
    else:
        out.append("No dropout sites for this network: see the notes.")
    if plan.avoid:
        out.append("Do not put dropout here:")
        for a in plan.avoid:
            out.append(f"  x {a.where}: {a.reason} ({', '.join(a.recommendations)})")
    if plan.notes:
        out.append("Notes:")
        for n in plan.notes:
            tag = " (contested)" if n.contested else ""
            out.append(f"  - {n.text}{tag} ({', '.join(n.recommendations)}; {', '.join(n.citations)})")
    return "\n".join(out) + "\n"
