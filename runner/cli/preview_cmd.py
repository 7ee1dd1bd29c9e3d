"""`recipe preview RECIPE`: rendered training examples with the trained tokens marked,
then token-length statistics. Loads the tokenizer and the data, never model weights."""

from __future__ import annotations

import sys

import click

from runner.cli.options import (
    SET_OPTION,
    TRUST_REMOTE_CODE_OPTION,
    checked_recipe,
    echo_skipped,
    quiet_libraries,
)


@click.command()
@click.argument("recipe")
@click.option("-n", "count", default=3, show_default=True, help="How many examples to show.")
@SET_OPTION
@TRUST_REMOTE_CODE_OPTION
def preview(recipe: str, count: int, overrides: tuple[str, ...], trust_remote_code: bool) -> None:
    """Render training examples and show which tokens are trained.

    Trained tokens are coloured on a terminal and [[bracketed]] otherwise. Loads the
    tokenizer and the data, never the model weights.
    """
    from runner.data.prepare import training_data
    from runner.data.preview import length_stats, render_marked
    from runner.data.tokens import trained_tokens
    from runner.expand.tokenizer import load_tokenizer
    from runner.recipe.remote_code import require_permission

    settings = checked_recipe(recipe, overrides, trust_remote_code=trust_remote_code).settings
    require_permission(settings.model, trust_remote_code, subject=recipe)  # before loading
    quiet_libraries(cpu=True)  # preview loads no model: nothing runs on a GPU
    tokenizer = load_tokenizer(settings)
    data = training_data(settings, tokenizer)
    echo_skipped(data.examples)
    colour = sys.stdout.isatty()
    tokenized = [trained_tokens(tokenizer, row, data.end_of_turn) for row in data.train]
    for index, (ids, mask) in enumerate(tokenized[:count]):
        header = f"--- example {index + 1} ({len(ids)} tokens, {sum(mask)} trained)"
        click.echo(click.style(header, bold=True) if colour else header)
        click.echo(render_marked(tokenizer, ids, mask, colour))
    click.echo(length_stats([len(ids) for ids, _ in tokenized], settings.max_length))
    click.echo(f"pad token {tokenizer.pad_token!r}, end-of-turn token {data.end_of_turn!r}")
