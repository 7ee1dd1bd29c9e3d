"""`recipe explain KEY`: what a recipe key means, in plain words, from the schema."""

from __future__ import annotations

import click

from runner.errors import UserError


@click.command()
@click.argument("key")
def explain(key: str) -> None:
    """Explain a recipe KEY in plain words (e.g. training.learning_rate, lora.r, bf16)."""
    from runner.lint.explain import explain_key

    text, ok = explain_key(key)
    if not ok:
        raise UserError(text)
    click.echo(text)
