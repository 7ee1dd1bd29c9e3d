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

    Trained tokens are coloured on a terminal and [[bracketed]] otherwise. The rows are
    read, tokenized and fitted to max_length exactly as `recipe run` prepares them, and
    the counts say what became of every row. Loads the tokenizer and the data, never the
    model weights.
    """
    from runner.data.preview import length_stats, render_marked, template_values
    from runner.data.store import training_data
    from runner.expand.tokenizer import load_tokenizer
    from runner.recipe.remote_code import require_permission

    settings = checked_recipe(recipe, overrides, trust_remote_code=trust_remote_code).settings
    require_permission(settings.model, trust_remote_code, subject=recipe)  # before loading
    quiet_libraries(cpu=True)  # preview loads no model: nothing runs on a GPU
    tokenizer = load_tokenizer(settings)
    data = training_data(settings, tokenizer)  # as `recipe run` prepares it
    echo_skipped(data.examples)
    colour = sys.stdout.isatty()
    mask_column = next((c for c in data.train.column_names if c != "input_ids"), None)
    lengths = []
    for index, row in enumerate(data.train):
        ids = row["input_ids"]
        lengths.append(len(ids))
        if index >= count:
            continue
        mask = row[mask_column] if mask_column else [1] * len(ids)
        header = f"--- example {index + 1} ({len(ids)} tokens, {sum(mask)} trained)"
        click.echo(click.style(header, bold=True) if colour else header)
        click.echo(render_marked(tokenizer, ids, mask, colour))
    click.echo(length_stats(lengths, settings.max_length))
    if data.counts is not None:
        click.echo(data.counts.line())
    click.echo(f"pad token {tokenizer.pad_token!r}, end-of-turn token {data.end_of_turn!r}")
    values = template_values(settings, tokenizer)
    if values:
        click.echo(f"template variables: {values} (data.template_variables)")
