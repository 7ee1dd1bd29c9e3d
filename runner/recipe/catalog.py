"""Find recipes: a path, or the name of a recipe shipped in recipes/."""

from __future__ import annotations

import difflib
from pathlib import Path

from runner import RECIPES_DIR
from runner.recipe.diagnostics import ERROR, Diagnostic, RecipeError


def shipped_recipes() -> list[Path]:
    """The shipped recipe files, sorted by name."""
    return sorted(RECIPES_DIR.glob("*.yaml"))


def find_recipe(name_or_path: str) -> Path:
    """Resolve a RECIPE argument: an existing path wins, then a shipped recipe name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    names = {p.stem: p for p in shipped_recipes()}
    stem = name_or_path.removesuffix(".yaml").removesuffix(".yml")
    if stem in names and not path.parent.parts:
        return names[stem]
    close = difflib.get_close_matches(stem, list(names), n=1)
    hint = (
        f"did you mean `{close[0]}`?"
        if close
        else "give a path to a .yaml file or one of: " + ", ".join(names)
    )
    raise RecipeError(
        [
            Diagnostic(
                rule="file-not-found",
                severity=ERROR,
                message=f"no recipe file or shipped recipe named '{name_or_path}'",
                hint=hint,
                file=name_or_path,
            )
        ]
    )
