"""Reference recipes: what published model configurations do with dropout (list, show)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from advisor.cli.common import DocFormat, Format, emit_json, emit_text, guarded
from advisor.cli.help import HelpGroup

if TYPE_CHECKING:
    from advisor.knowledge import KnowledgeBase

recipes_app = typer.Typer(
    cls=HelpGroup,
    help="Published model configurations: every dropout site, its rate, and where it was read.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _kb() -> KnowledgeBase:
    from advisor.knowledge import default_kb

    return default_kb()


def register(app: typer.Typer) -> None:
    app.add_typer(recipes_app, name="recipes")


@recipes_app.command("list")
@guarded
def recipes_list(fmt: Format = typer.Option(Format.text, "--format", "-f", help="Output format.")) -> None:
    """Every recipe, one line each: key, name, regime, sites as role=p, confidence.

    \b
    Examples:
      dropout-advisor recipes list
      dropout-advisor recipes list --format json
    """
    from advisor.recipes_view import recipe_list_json, recipe_table

    recipes = sorted(_kb().recipes.values(), key=lambda r: r.key)
    if fmt is Format.json:
        emit_json(recipe_list_json(recipes))
        return
    emit_text(recipe_table(recipes))


@recipes_app.command("show")
@guarded
def recipes_show(
    name: list[str] = typer.Argument(
        ..., metavar="NAME", help="Recipe keys, aliases or library names (vit-b-16, bert-base-uncased, resnet50)."
    ),
    fmt: DocFormat = typer.Option(DocFormat.text, "--format", "-f", help="text, markdown or json."),
) -> None:
    """One recipe in full: every site with where, kind, p, fields and sources; disagreements; notes.

    Exit code 1 for an unknown name (with close matches).

    \b
    Examples:
      dropout-advisor recipes show bert-base
      dropout-advisor recipes show vit-b-16 resnet50 --format markdown
    """
    from advisor.recipes_view import recipe_markdown, recipes_envelope

    kb = _kb()
    recipes = [kb.recipe(n) for n in name]
    if fmt is DocFormat.json:
        emit_json(recipes_envelope(recipes))
        return
    md = "\n".join(recipe_markdown(r, kb) for r in recipes)
    if fmt is DocFormat.markdown:
        emit_text(md)
        return
    from advisor.views import print_markdown

    print_markdown(md)
