"""What several commands share: the `--set` and `--trust-remote-code` options, checking a
RECIPE argument, the note of a planning command on a machine without the recipe's GPU,
and keeping the libraries' chatter off the user's screen."""

from __future__ import annotations

from collections.abc import Iterable

import click

from runner.recipe.diagnostics import Diagnostic

SET_OPTION = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe value (repeatable), e.g. training.learning_rate=1e-4.",
)

# The only way to let a model's own Python code run (runner.recipe.remote_code): a recipe
# asks with model.trust_remote_code, the person at the command line allows it here.
TRUST_REMOTE_CODE_OPTION = click.option(
    "--trust-remote-code",
    is_flag=True,
    help="Let the model's own Python code run, when the recipe asks for it "
    "(model.trust_remote_code). Read that code first.",
)


def echo_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    """Print diagnostics to stderr, one per line."""
    for diagnostic in diagnostics:
        click.echo(diagnostic.format(), err=True)


def checked_recipe(recipe: str, overrides: Iterable[str] = (), **options):  # -> Checked
    """Check RECIPE (path or shipped name) for a command that needs a usable recipe.

    Warnings are printed to stderr; any error raises the RecipeError the command line
    prints (every diagnostic, then a count). Returns the `runner.check.Checked`.
    """
    from runner.check import check_recipe

    checked = check_recipe(recipe, tuple(overrides), **options)
    if checked.ok:
        echo_diagnostics(checked.warnings)
    checked.require(subject=recipe)
    return checked


def echo_skipped(examples) -> None:
    """Say how many bad rows `data.bad_rows: skip` dropped, and the first of them."""
    if examples.skipped:
        click.echo(
            f"skipped {examples.skipped} bad row(s) (data.bad_rows: skip); first: "
            f"{examples.bad_rows[0].format()}",
            err=True,
        )


def echo_missing_gpu(settings, placement) -> None:
    """On a machine without the recipe's GPU, the one line that says the printed
    command is for the recipe's hardware (stderr: stdout stays the command)."""
    from runner.expand.placement import missing_gpu_note

    note = missing_gpu_note(settings, placement)
    if note is not None:
        click.echo(note, err=True)


def quiet_libraries(cpu: bool | None = None) -> None:
    """Keep the libraries' warnings and progress bars off the user's screen (runner.logs;
    a trained run's commands also log everything into the run, see runner.after.load).
    `cpu`: this process uses no GPU (None: ask torch)."""
    from runner.logs import quiet_libraries as quiet

    quiet(cpu=cpu)
