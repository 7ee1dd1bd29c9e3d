"""Keys a recipe has that its block does not know: where a key by that name belongs
(`misplaced-key`: a training key written at the top level), else the closest known key
here or elsewhere (`unknown-key`, with a did-you-mean).
"""

from __future__ import annotations

from typing import Any

from runner.lint.rules.renamed_keys import KEY_FIXES
from runner.lint.spelling import closest
from runner.lint.wording import did_you_mean, place_of, shown
from runner.recipe.diagnostics import Diagnostic
from runner.recipe.load import Recipe
from runner.recipe.schema import key_homes

LIBRARY_BLOCKS = {
    "training": "SFTConfig",
    "lora": "LoraConfig",
    "quantization": "BitsAndBytesConfig",
}


def unknown_keys(
    recipe: Recipe, path: tuple, instance: Any, schema: dict[str, Any]
) -> list[Diagnostic]:
    known = list(schema.get("properties", {}))
    block = str(path[-1]) if len(path) == 1 else ""
    return [
        misplaced_key(recipe, path, str(name)) or unknown_key(recipe, path, str(name), known)
        for name in instance
        if name not in known and not (len(path) <= 1 and (block, name) in KEY_FIXES)
        # (a key in KEY_FIXES: the renamed_keys rules say where it went)
    ]


def misplaced_key(recipe: Recipe, path: tuple, name: str) -> Diagnostic | None:
    """A key the recipe has, by this very name, in another block: where it belongs."""
    here = ".".join(str(part) for part in path if not isinstance(part, int))
    homes = [key for key in key_homes().get(name, ()) if key.rpartition(".")[0] != here]
    if not homes:
        return None
    blocks = [key.rpartition(".")[0] for key in homes]
    places = " or ".join(block or "the top level" for block in blocks)
    moves = " or ".join(
        f"under {block} ({key})" if block else "to the top level, unindented"
        for block, key in zip(blocks, homes, strict=True)
    )
    where = f"in {place_of(path)}" if path else "at the top level"
    return recipe.diagnostic(
        "misplaced-key",
        (*path, name),
        f"{shown(name)} belongs in {places}, not {where}",
        f"move it {moves}",
    )


def unknown_key(recipe: Recipe, path: tuple, name: str, known: list[str]) -> Diagnostic:
    """A key known nowhere: the closest key here, else the closest key elsewhere."""
    block = str(path[-1]) if len(path) == 1 else ""
    hint = did_you_mean(name, known)
    if not hint:
        home = nearest_home(name, path)
        if home:
            hint = f"did you mean {home}? (move it under {home.rpartition('.')[0]}) "
    if block in LIBRARY_BLOCKS:
        hint += f"{block} takes {LIBRARY_BLOCKS[block]} fields; see `recipe explain {block}`"
    elif not hint:
        hint = "known keys: " + ", ".join(known)
    return recipe.diagnostic(
        "unknown-key", (*path, name), f"unknown key {shown(name)} in {place_of(path)}", hint.strip()
    )


def nearest_home(name: str, path: tuple) -> str | None:
    """`optm` anywhere -> `training.optim`: the closest key name of another block."""
    here = ".".join(str(part) for part in path if not isinstance(part, int))
    homes = {
        leaf: [key for key in keys if key.rpartition(".")[0] != here]
        for leaf, keys in key_homes().items()
    }
    guess = closest(name, [leaf for leaf, keys in homes.items() if keys])
    return homes[guess][0] if guess else None
