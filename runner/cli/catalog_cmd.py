"""`recipe list`, `show`, `new` and `explain`: browse, inspect and copy recipes.

None of these import torch or TRL: `show --as sft|lora|bnb` prints the keyword
arguments from runner.expand.library_kwargs, computed without the libraries.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import click

from runner.cli.lint_cmd import checked_recipe, echo_diagnostics


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def _dump_yaml(data: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # keep the recipe's key order
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def recipe_rows() -> list[tuple[str, str, str, str]]:
    """(name, method, model, target GPU) of each shipped recipe, read without linting."""
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


@click.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a value.")
@click.option(
    "--as",
    "as_",
    type=click.Choice(["recipe", "sft", "lora", "bnb", "launch"]),
    default="recipe",
    show_default=True,
    help="recipe: the resolved recipe; sft/lora/bnb: keyword arguments of SFTConfig / "
    "LoraConfig / BitsAndBytesConfig; launch: the accelerate command.",
)
def show(recipe: str, overrides: tuple[str, ...], as_: str) -> None:
    """Print RECIPE resolved (defaults and --set applied), or what it expands to."""
    from runner.expand import library_kwargs

    result = checked_recipe(recipe, overrides)
    resolved = result.resolved
    if as_ == "recipe":
        click.echo(_dump_yaml(resolved), nl=False)
        return
    if as_ == "launch":
        click.echo(_launch_command(resolved))
        return
    expand = {
        "sft": (library_kwargs.sft_kwargs, "trl.SFTConfig"),
        "lora": (library_kwargs.lora_kwargs, "peft.LoraConfig"),
        "bnb": (library_kwargs.bnb_kwargs, "transformers.BitsAndBytesConfig"),
    }
    function, target = expand[as_]
    kwargs = function(resolved)
    if kwargs is None:
        reason = "method full trains no adapter" if as_ == "lora" else "the model is not quantized"
        _fail(f"{recipe}: no {target} - {reason} (method: {resolved.get('method')})")
    click.echo(f"# keyword arguments for {target}(**kwargs)")
    if as_ == "sft":
        click.echo("# (the run adds data-dependent arguments on top)")
    click.echo(_dump_yaml(kwargs), nl=False)


def _launch_command(resolved: dict[str, Any]) -> str:
    try:
        from runner.expand.launch import launch_argv, shell_command
    except ImportError:
        _fail("`recipe show --as launch` is not available yet in this version")
    hardware = resolved.get("hardware") or {}
    training = resolved.get("training") or {}
    use_cpu = hardware.get("gpu") == "cpu" or training.get("use_cpu") is True
    run_dir = Path(resolved["output_dir"])
    return shell_command(launch_argv(resolved, run_dir, use_cpu=use_cpu))


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
    from runner.lint import check_recipe
    from runner.recipe.copy import RecipeCopyError, copy_recipe

    try:
        notes = copy_recipe(
            source, Path(dest), data=data_path, data_format=data_format, model=model_id
        )
    except RecipeCopyError as exc:
        _fail(f"error: {exc}")
    click.echo(f"wrote {dest} (from {source})")
    for note in notes:
        click.echo(f"  {note}")
    result = check_recipe(dest)
    echo_diagnostics(result.diagnostics)
    if not result.ok:
        _fail(f"{dest}: {len(result.errors)} error(s) to fix, then `recipe lint {dest}`")
    click.echo(f"{dest}: lint ok - next: `recipe plan {dest}` and `recipe run {dest}`")


@click.command()
@click.argument("key")
def explain(key: str) -> None:
    """Explain a recipe KEY in plain words (e.g. training.learning_rate, lora.r, bf16)."""
    from runner.lint.explain import explain_key

    text, ok = explain_key(key)
    if not ok:
        _fail(text)
    click.echo(text)
