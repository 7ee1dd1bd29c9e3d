"""`recipe run RECIPE`: lint, prepare, then train under `accelerate launch`.

The edge where a recipe meets the machine: the recipe is checked (errors stop here),
where it trains is decided (a GPU recipe on a machine without one stops, unless
--cpu), every data row is checked, the run directory is created with the recipe as
given and as resolved, then `accelerate launch -m runner.train RUN_DIR` trains and a
one-line summary is printed. Heavy libraries are imported inside, never at module top.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from runner.cli.options import SET_OPTION, checked_recipe, echo_skipped
from runner.errors import UserError
from runner.recipe.load import dump_yaml


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("recipe")
@click.argument("accelerate_args", nargs=-1, type=click.UNPROCESSED)
@SET_OPTION
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the launch command and the resolved recipe; start nothing.",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in output_dir.")
@click.option(
    "--resume", is_flag=True, help="Continue the run in output_dir from its last checkpoint."
)
@click.option("--cpu", is_flag=True, help="Train on the CPU even if the recipe is made for a GPU.")
def run(
    recipe: str,
    accelerate_args: tuple[str, ...],
    overrides: tuple[str, ...],
    dry_run: bool,
    overwrite: bool,
    resume: bool,
    cpu: bool,
) -> None:
    """Lint, prepare and train RECIPE under accelerate launch.

    Arguments after `--` go to `accelerate launch`. The run directory is the recipe's
    output_dir; an existing non-empty one is never overwritten without --overwrite.
    """
    from runner.expand.launch import executable_argv, launch_command, shell_command

    checked = checked_recipe(recipe, overrides)
    settings = checked.settings
    argv = launch_command(settings, force_cpu=cpu, extra=accelerate_args, resume=resume)
    if dry_run:
        click.echo("# launch command")
        click.echo(shell_command(argv))
        click.echo("# resolved recipe")
        click.echo(dump_yaml(settings.resolved), nl=False)
        return
    run_dir = prepare(checked, argv, overrides, overwrite=overwrite, resume=resume)
    click.echo(f"training in {run_dir.path}", err=True)
    click.echo(f"$ {shell_command(argv)}", err=True)
    code = subprocess.call(executable_argv(argv))
    click.echo(finish(run_dir, code))


def prepare(checked, argv: list[str], overrides: tuple[str, ...], *, overwrite: bool, resume: bool):
    """Check every data row, create the run directory and write its record (and, for a
    model.config recipe, its random initial weights) before anything trains."""
    from runner.data.prepare import load_examples
    from runner.run.directory import prepare_run_dir
    from runner.run.record import record_start

    settings = checked.settings
    examples = load_examples(settings)  # bad rows stop the run here, listed by source:row
    echo_skipped(examples)
    run_dir = prepare_run_dir(Path(settings.output_dir), overwrite=overwrite, resume=resume)
    record_start(run_dir, checked, argv, examples, overrides)
    if settings.from_config and not run_dir.base.is_dir():
        from runner.expand.model import save_config_model

        save_config_model(settings, run_dir.base)
    return run_dir


def finish(run_dir, code: int) -> str:
    """The summary line of a run that succeeded; UserError for one that did not."""
    from runner.run.directory import now
    from runner.run.record import summary_line

    record = run_dir.read_run()
    if code != 0 or record.get("status") != "succeeded":
        run_dir.update_run(status="failed", exit_code=code, finished_at=now())
        reason = record.get("error") or f"exit code {code}; see the output above"
        raise UserError(f"training failed: {reason}\nRun directory: {run_dir.path}")
    return summary_line(run_dir.update_run(exit_code=0))
