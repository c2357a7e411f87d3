"""Terminal views: rich on a terminal, plain text when piped. Imported only by the CLI."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from advisor.explain import layer_count, rate_str, short_ref, site_group_view, stack_rows
from advisor.knowledge import KnowledgeBase
from advisor.schema import Citation, Recommendation

if TYPE_CHECKING:  # the search module (and its vocabulary) only for the commands that search
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
    """The user's layer stack with dropout rows inserted, then the site groups, places to avoid and notes."""
    if not _rich_ok():
        sys.stdout.write(plan_plain(plan))
        return
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    con = console()
    rows = stack_rows(plan)
    if rows:
        stack = Text()
        for what, x in rows:
            if what == "site":
                sched = f" ({x.schedule})" if x.schedule != "constant" else ""
                stack.append(f"  ▶ {x.module}  p={x.p:g}{sched}", style="bold green")
                stack.append(f"   {x.id} · {', '.join(x.recommendations)}\n", style="green")
            elif what == "op":
                stack.append(f"  {x.label}\n", style="dim" if x.kind in ("input", "output") else "")
            else:
                stack.append(f"  {x}\n", style="italic")
        con.print(Panel(stack, title=_title(plan) + " · dropout in green", expand=False))
    else:
        con.print(f"[bold]{_title(plan)}[/bold]")
    if plan.sites:
        table = Table(title="Dropout sites", header_style="bold", show_lines=True)
        for col in ("sites", "where", "module", "p", "range", "why", "sources"):
            table.add_column(col, overflow="fold")
        for group in plan.site_groups():
            v = site_group_view(group)
            why = v["why"] + f" ({v['recommendations']})"
            if v["schedule"]:
                why += f"\nschedule: {v['schedule']}"
            if v["fields"]:
                why += f"\nset by: {v['fields']}"
            if v["evidence"]:
                why += f"\nread in: {v['evidence']}"
            table.add_row(
                Text(v["ids"]),
                Text((v["where"] + "\n" if v["where"] else "") + v["layers"]),
                Text(v["module"]),
                Text(v["rates"]),
                Text(v["range"]),
                Text(why),
                Text(v["sources"]),
            )
        con.print(table)
    else:
        con.print("[bold]No dropout sites[/bold] for this network: see the notes.")
    if plan.avoid:
        con.print("\n[bold red]Do not put dropout here[/bold red]")
        for a in plan.avoid:
            con.print(Text(f"  ✗ {a.where}: {a.reason} ") + Text(f"({', '.join(a.recommendations)})", style="dim"))
    if plan.notes:
        con.print("\n[bold]Notes[/bold]")
        for n in plan.notes:
            line = Text(f"  • {n.text}")
            if n.contested:
                line.append(" (contested)", style="yellow")
            line.append(f" ({', '.join(n.recommendations)}; {', '.join(n.citations)})", style="dim")
            con.print(line)
    con.print("\n[dim]Details: dropout-advisor explain ID · sources: dropout-advisor refs show KEY[/dim]")


def _title(plan: Any) -> str:
    spec = plan.spec
    title = f"{spec.get('arch')} · {layer_count(spec.get('layers'))}"
    if spec.get("base"):
        title += f" · following {spec.get('base')} ({spec.get('regime')})"
    return title


def plan_plain(plan: Any) -> str:
    """The plan as plain text (piped output): stack, one entry per group of like sites, avoid list, notes."""
    spec = plan.spec
    head = f"Dropout plan: {spec.get('arch')}, {layer_count(spec.get('layers'))}"
    if spec.get("base"):
        head += f", following {spec.get('base')} ({spec.get('regime')})"
    out = [head, ""]
    rows = stack_rows(plan)
    for what, x in rows:
        if what == "site":
            sched = f" ({x.schedule})" if x.schedule != "constant" else ""
            out.append(f"  >> {x.module}  p={x.p:g}{sched}  [{x.id}: {', '.join(x.recommendations)}]")
        elif what == "op":
            out.append(f"     {x.label}")
        else:
            out.append(f"     {x}")
    if rows:
        out.append("")
    if plan.sites:
        groups = plan.site_groups()
        out.append(f"Sites ({len(plan.sites)} in {len(groups)} group{'s' if len(groups) != 1 else ''}):")
        for group in groups:
            v = site_group_view(group)
            out.append(f"  {v['ids']}  {v['module']}  {v['rates']} (range {v['range'].replace('–', '-')})")
            if v["where"]:
                out.append(f"      where: {v['where']}")
            out.append(f"      layers: {v['layers']}")
            if v["schedule"]:
                out.append(f"      schedule: {v['schedule']}")
            out.append(f"      why: {v['why']} ({v['recommendations']})")
            if v["fields"]:
                out.append(f"      set by: {v['fields']}")
            if v["evidence"]:
                out.append(f"      read in: {v['evidence']}")
            out.append(f"      sources: {v['sources']}")
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
