"""`recipe list`: the shipped recipes, one line each (read without linting)."""

from __future__ import annotations

import click


def recipe_rows() -> list[tuple[str, str, str, str]]:
    """(name, method, model, target GPU) of each shipped recipe."""
    from runner.recipe.catalog import shipped_recipes
    from runner.recipe.diagnostics import RecipeError
    from runner.recipe.hardware import card_for
    from runner.recipe.load import load_recipe

    rows = []
    for path in shipped_recipes():
        try:
            data = load_recipe(path).data
        except RecipeError:
            rows.append((path.stem, "?", "(unreadable: run `recipe lint`)", "?"))
            continue
        model = data.get("model") or {}
        if isinstance(model.get("config"), dict):
            label = f"{model['config'].get('model_type', '?')} from config (random init)"
        else:
            label = str(model.get("id", "?"))
        hardware = data.get("hardware") or {}
        card = card_for(hardware) if isinstance(hardware, dict) else None
        count = hardware.get("count", 1) if isinstance(hardware, dict) else 1
        gpu = (card.label if card else "any") + (f" x{count}" if count and count > 1 else "")
        rows.append((str(data.get("name", path.stem)), str(data.get("method", "?")), label, gpu))
    return rows


@click.command("list")
def list_recipes() -> None:
    """List the shipped recipes: name, method, model, target GPU."""
    rows = [("NAME", "METHOD", "MODEL", "GPU"), *recipe_rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        click.echo("  ".join([*cells, row[3]]).rstrip())
