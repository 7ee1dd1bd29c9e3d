"""`schema_version` migrations: an older recipe is upgraded by code, never guessed.

v1 is the only version today. Each future version adds one function to MIGRATIONS that
turns version N data into version N+1 data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.recipe.diagnostics import Diagnostic
from runner.recipe.load import Recipe

CURRENT_VERSION = 1

# from-version -> function returning the next version's data (a new dict, never mutated)
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate(recipe: Recipe) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Return the recipe's data at CURRENT_VERSION, or diagnostics saying why not."""
    data = recipe.data
    version = data.get("schema_version")
    if "schema_version" not in data:
        return data, [
            recipe.diagnostic(
                "schema-version",
                (),
                "the recipe has no schema_version",
                f"add `schema_version: {CURRENT_VERSION}` as the first key",
            )
        ]
    if isinstance(version, bool) or not isinstance(version, int):
        return data, [
            recipe.diagnostic(
                "schema-version",
                ("schema_version",),
                f"schema_version must be a whole number, not {version!r}",
                f"write `schema_version: {CURRENT_VERSION}`",
            )
        ]
    if version > CURRENT_VERSION or (version < CURRENT_VERSION and version not in MIGRATIONS):
        return data, [
            recipe.diagnostic(
                "schema-version",
                ("schema_version",),
                f"unknown schema_version {version}; this runner reads version "
                f"{CURRENT_VERSION}" + (" and older" if MIGRATIONS else ""),
                "upgrade recipe-runner for a newer recipe, or fix the number",
            )
        ]
    while version < CURRENT_VERSION:
        data = MIGRATIONS[version](data)
        version = data["schema_version"]
    return data, []
