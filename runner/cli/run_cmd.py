"""`recipe preview` and `recipe run`.

`run` is the edge where a recipe meets the machine: it lints (errors stop here), checks
every data row, creates the run directory, writes the recipe as given and as resolved,
then starts `accelerate launch -m runner.train RUN_DIR` and prints a one-line summary.
Heavy libraries are imported inside the commands, never at module top.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from runner.cli.lint_cmd import checked_recipe
from runner.recipe.load import round_trip_yaml


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def checked_examples(resolved: dict[str, Any]) -> Any:
    """Read and check every data row; bad rows are listed (source:row N) and stop the run
    under `bad_rows: error`, or are counted under `skip`."""
    from runner.data.prepare import BadRowsError, load_examples
    from runner.data.sources import DataError

    try:
        examples = load_examples(resolved)
    except BadRowsError as exc:
        _fail(f"error: bad data rows, nothing was trained:\n{exc}")
    except DataError as exc:
        _fail(f"error: {exc}")
    if examples.skipped:
        click.echo(
            f"skipped {examples.skipped} bad row(s) (data.bad_rows: skip); first: "
            f"{examples.bad_rows[0].format()}",
            err=True,
        )
    return examples


def dump_yaml(data: dict[str, Any]) -> str:
    stream = io.StringIO()
    round_trip_yaml().dump(data, stream)
    return stream.getvalue()


@click.command()
@click.argument("recipe")
@click.option("-n", "count", default=3, show_default=True, help="How many examples to show.")
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key."
)
def preview(recipe: str, count: int, overrides: tuple[str, ...]) -> None:
    """Render training examples and show which tokens are trained.

    Trained tokens are coloured on a terminal and [[bracketed]] otherwise. Loads the
    tokenizer and the data, never the model weights.
    """
    from runner.data.preview import length_stats, render_marked

    result = checked_recipe(recipe, overrides)
    resolved = result.resolved
    examples = checked_examples(resolved)
    from runner.data.prepare import to_trl_rows, uses_assistant_only_loss
    from runner.data.sources import DataError
    from runner.data.templates import template_kind, use_training_chat_template
    from runner.data.tokens import trained_tokens
    from runner.expand.tokenizer import end_of_turn_token, load_tokenizer

    try:
        tokenizer = load_tokenizer(resolved)
    except (OSError, ValueError) as exc:
        _fail(f"error: cannot load the tokenizer: {str(exc).splitlines()[0]}")
    end_of_turn = end_of_turn_token(
        tokenizer, template_kind(resolved["data"].get("template", "chat"))
    )
    if uses_assistant_only_loss(examples.shape):
        try:
            use_training_chat_template(tokenizer)
        except DataError as exc:
            _fail(f"error: {exc}")
    rows = to_trl_rows(examples.train, examples.shape, resolved, tokenizer, end_of_turn)
    colour = sys.stdout.isatty()
    tokenized = [trained_tokens(tokenizer, row, end_of_turn) for row in rows]
    for index, (ids, mask) in enumerate(tokenized[:count]):
        header = f"--- example {index + 1} ({len(ids)} tokens, {sum(mask)} trained)"
        click.echo(click.style(header, bold=True) if colour else header)
        click.echo(render_marked(tokenizer, ids, mask, colour))
    max_length = (resolved.get("training") or {}).get("max_length", 1024)
    click.echo(length_stats([len(ids) for ids, _ in tokenized], max_length))
    click.echo(f"pad token {tokenizer.pad_token!r}, end-of-turn token {end_of_turn!r}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("recipe")
@click.argument("accelerate_args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key."
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the launch command and the resolved recipe; start nothing.",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in output_dir.")
@click.option(
    "--resume", is_flag=True, help="Continue the run in output_dir from its last checkpoint."
)
def run(
    recipe: str,
    accelerate_args: tuple[str, ...],
    overrides: tuple[str, ...],
    dry_run: bool,
    overwrite: bool,
    resume: bool,
) -> None:
    """Lint, prepare and train RECIPE under accelerate launch.

    Arguments after `--` go to `accelerate launch`. The run directory is the recipe's
    output_dir; an existing non-empty one is never overwritten without --overwrite.
    """
    from runner.expand.launch import executable_argv, launch_argv, shell_command
    from runner.run.directory import (
        RunDirError,
        library_versions,
        now,
        prepare_run_dir,
    )
    from runner.run.outcome import summary_line

    result = checked_recipe(recipe, overrides)
    resolved = result.resolved
    run_path = Path(resolved["output_dir"])
    argv = launch_argv(resolved, run_path, use_cpu=not _has_gpu(), extra=accelerate_args)
    if resume:
        argv.append("--resume")
    if dry_run:
        click.echo("# launch command")
        click.echo(shell_command(argv))
        click.echo("# resolved recipe")
        click.echo(dump_yaml(resolved), nl=False)
        return

    examples = checked_examples(resolved)
    try:
        run_dir = prepare_run_dir(run_path, overwrite=overwrite, resume=resume)
    except RunDirError as exc:
        _fail(f"error: {exc}")
    recipe_obj = result.recipe
    if not resume:
        run_dir.recipe.write_text(recipe_obj.text, encoding="utf-8")
    run_dir.resolved.write_text(dump_yaml(resolved), encoding="utf-8")
    run_dir.update_run(
        name=resolved.get("name"),
        revision=resolved.get("revision", 1),
        description=resolved.get("description"),
        recipe_path=str(recipe_obj.path.resolve()),
        content_hash=f"sha256:{recipe_obj.content_hash}",
        schema_version=resolved.get("schema_version"),
        overrides=list(overrides),
        method=resolved.get("method"),
        model=resolved["model"].get("id") or "model.config (random weights)",
        versions=library_versions(),
        command=argv,
        started_at=now(),
        finished_at=None,
        status="running",
        rows={
            "train": len(examples.train),
            "eval": len(examples.eval),
            "skipped": examples.skipped,
        },
    )
    click.echo(f"training in {run_dir.path}", err=True)
    click.echo(f"$ {shell_command(argv)}", err=True)
    code = subprocess.call(executable_argv(argv))
    record = run_dir.read_run()
    if code != 0 or record.get("status") != "succeeded":
        run_dir.update_run(status="failed", exit_code=code, finished_at=now())
        if record.get("error"):
            _fail(f"error: training failed: {record['error']}\nRun directory: {run_dir.path}")
        _fail(
            f"error: training failed (exit code {code}); see the output above. Run directory: {run_dir.path}"
        )
    record = run_dir.update_run(exit_code=0)
    click.echo(summary_line(record))


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


__all__ = ["preview", "run"]
