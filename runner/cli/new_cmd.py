"""`recipe new DEST --from RECIPE`: copy a recipe, comments kept, adapt it, lint the copy."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.options import echo_diagnostics
from runner.errors import UserError


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option("--from", "source", required=True, metavar="RECIPE", help="Recipe to copy.")
@click.option("--data", "data_path", metavar="PATH", help="Train on this file or hub dataset.")
@click.option(
    "--format",
    "data_format",
    type=click.Choice(["alpaca", "dolly", "prompt_completion", "messages", "text"]),
    help="Format of the data (--data, or every existing train source).",
)
@click.option("--model", "model_id", metavar="ID", help="Hub id or local folder of the model.")
def new(
    dest: str,
    source: str,
    data_path: str | None,
    data_format: str | None,
    model_id: str | None,
) -> None:
    """Copy RECIPE to DEST, comments kept, and adapt it; the copy is linted."""
    from runner.check import check_recipe
    from runner.recipe.copy import copy_recipe

    notes = copy_recipe(source, Path(dest), data=data_path, data_format=data_format, model=model_id)
    click.echo(f"wrote {dest} (from {source})")
    for note in notes:
        click.echo(f"  {note}")
    checked = check_recipe(dest)
    echo_diagnostics(checked.diagnostics)
    if not checked.ok:
        raise UserError(f"{dest}: {len(checked.errors)} error(s) to fix, then `recipe lint {dest}`")
    click.echo(f"{dest}: lint ok - next: `recipe plan {dest}` and `recipe run {dest}`")
