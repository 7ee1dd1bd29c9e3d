"""`recipe run RECIPE`: lint, prepare, then train under `accelerate launch`.

The edge where a recipe meets the machine: the recipe is checked (errors stop here),
where it trains is decided (a GPU recipe on a machine without one stops, unless --cpu),
every data row is checked, the run directory is claimed (runner.run.ownership: never a
folder the runner did not make, one run at a time) and gets the recipe as given and as
resolved, then `accelerate launch -m runner.train RUN_DIR` trains and a one-line summary
is printed. Ctrl-C asks the training processes to save a checkpoint and stop; a second
Ctrl-C stops them at once. Heavy libraries are imported inside, never at module top.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import click

from runner.cli.options import SET_OPTION, checked_recipe, echo_skipped, quiet_libraries
from runner.errors import UserError
from runner.recipe.load import dump_yaml


class RunStopped(UserError):
    """The run ended early: diverged or interrupted (exit code 3 or 130)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("recipe")
@click.argument("accelerate_args", nargs=-1, type=click.UNPROCESSED)
@SET_OPTION
@click.option(
    "--dry-run", is_flag=True, help="Print the launch command and the resolved recipe; start nothing."
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in output_dir.")
@click.option(
    "--resume", is_flag=True, help="Continue the run in output_dir from its newest checkpoint."
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
    output_dir; an existing non-empty one is never overwritten without --overwrite,
    which replaces an earlier run and nothing else.
    """
    from runner.expand.launch import launch_argv, shell_command
    from runner.expand.placement import choose_placement, gpu_available
    from runner.run.ownership import claim_run_dir

    checked = checked_recipe(recipe, overrides)
    settings = checked.settings
    placement = choose_placement(settings, gpu_here=gpu_available(), force_cpu=cpu)
    if dry_run:
        point = resume_point_of(settings.output_dir) if resume else None
        argv = launch_argv(settings, placement, extra=accelerate_args, resume=point)
        click.echo("# launch command")
        click.echo(shell_command(argv))
        click.echo("# resolved recipe")
        click.echo(dump_yaml(settings.resolved), nl=False)
        return
    quiet_libraries(cpu=placement.cpu)  # the libraries' warnings off the screen (runner.logs)
    examples = checked_examples(settings)  # bad rows stop here, before anything is written
    run_dir, lock = claim_run_dir(
        settings.output_dir, overwrite=overwrite, resume=resume, protected=used_paths(checked)
    )
    try:
        point = continue_from(run_dir, settings) if resume else None
        argv = launch_argv(settings, placement, extra=accelerate_args, resume=point)
        prepare(run_dir, checked, argv, examples, overrides, point)
        click.echo(f"training in {run_dir.path}", err=True)
        click.echo(f"$ {shell_command(argv)}", err=True)
        code, interrupts = train_under(argv, run_dir)
        click.echo(finish(run_dir, code, interrupts))
    finally:
        lock.release()


def checked_examples(settings):
    """Every data row read and checked; bad rows are listed by source and row."""
    from runner.data.prepare import load_examples

    examples = load_examples(settings)
    echo_skipped(examples)
    return examples


def used_paths(checked) -> list[Path]:
    """The recipe file and its local data: never inside a run directory to delete."""
    settings = checked.settings
    sources = list(settings.data["train"])
    if isinstance(settings.data.get("eval"), list):
        sources += settings.data["eval"]
    local = [Path(s["source"]) for s in sources if Path(s["source"]).is_absolute()]
    return [checked.recipe.path.resolve(), *local]


def resume_point_of(path: Path) -> Path | None:
    from runner.run.checkpoints import resume_point
    from runner.run.directory import RunDirectory

    point = resume_point(RunDirectory(path))
    return point.checkpoint if point else None


def continue_from(run_dir, settings) -> Path:
    """The checkpoint a resumed run continues from, after checking the recipe is the
    run's own (except keys safe to change) and setting aside incomplete checkpoints."""
    from runner.run.checkpoints import resume_point, set_aside_incomplete
    from runner.run.directory import RunDirError
    from runner.run.resume import SAFE_ON_RESUME, resume_differences

    if run_dir.resolved.is_file():
        changed = resume_differences(run_dir.read_resolved(), settings.resolved)
        if changed:
            raise RunDirError(
                f"--resume continues {run_dir.path} with the recipe it was started with, "
                f"but these keys differ: {', '.join(changed)}. Undo them, or start a new run "
                f"(another output_dir, or --overwrite). Safe to change on resume: "
                f"{', '.join(SAFE_ON_RESUME)}"
            )
    point = resume_point(run_dir)
    if point is None:
        raise RunDirError(
            f"{run_dir.path}: no complete checkpoint to resume from (checkpoints are saved "
            "per training.save_strategy, or on Ctrl-C; run without --resume to start afresh)"
        )
    point = set_aside_incomplete(run_dir, point)
    for name in point.set_aside:
        click.echo(f"{name} was not completely written (the run stopped while saving it): "
                   f"set aside as incomplete-{name}", err=True)  # fmt: skip
    click.echo(f"resuming from {point.checkpoint.name}", err=True)
    run_dir.keep_metrics_until(point.step)
    return point.checkpoint


def prepare(run_dir, checked, argv, examples, overrides, point) -> None:
    """Write the run's record (and, for a model.config recipe, its random initial
    weights) before anything trains."""
    from runner.run.checkpoints import ResumePoint
    from runner.run.record import record_start

    resume = ResumePoint(point) if point is not None else None
    record_start(run_dir, checked, argv, examples, overrides, resume)
    settings = checked.settings
    if settings.from_config and not run_dir.base.is_dir():
        from runner.expand.model import save_config_model

        save_config_model(settings, run_dir.base)


def train_under(argv: list[str], run_dir) -> tuple[int, int]:
    """Run the launch command; (its exit code, how many interrupts came).

    The training processes run in their own session, so a Ctrl-C reaches this process
    only: the first asks them (through the run directory) to checkpoint and stop, the
    second kills them.
    """
    from runner.expand.launch import executable_argv

    run_dir.stop_request.unlink(missing_ok=True)
    process = subprocess.Popen(executable_argv(argv), start_new_session=True)
    interrupts = 0

    def on_signal(signum: int, frame) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            run_dir.stop_request.write_text(signal.Signals(signum).name + "\n")
            click.echo(
                "\ninterrupted: saving a checkpoint at the end of this step, then stopping "
                "(Ctrl-C again to stop at once)",
                err=True,
            )
        else:
            os.killpg(process.pid, signal.SIGKILL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        run_dir.stop_request.unlink(missing_ok=True)
    return code, interrupts


def finish(run_dir, code: int, interrupts: int) -> str:
    """The summary of a run that succeeded; RunStopped / UserError for one that did not."""
    from runner.run.directory import now
    from runner.run.record import resume_command, summary_line

    record = run_dir.read_run()
    status = record.get("status")
    if status == "succeeded" and code == 0:
        return summary_line(run_dir.update_run(exit_code=0))
    if status == "running" and interrupts > 1:
        record = run_dir.update_run(status="interrupted", exit_code=code, finished_at=now())
        status = "interrupted"
    if status == "interrupted":
        stopped = record.get("stopped") or {}
        saved = stopped.get("last_good_checkpoint") or "no checkpoint yet"
        raise RunStopped(
            f"{record.get('name')} interrupted at step {stopped.get('step', '?')} ({saved}); "
            f"continue it with: {resume_command(record)}",
            130,
        )
    if status == "diverged":
        stopped = record.get("stopped") or {}
        causes = "; ".join(stopped.get("likely_causes") or [])
        good = stopped.get("last_good_checkpoint") or "none was saved"
        raise RunStopped(
            f"{record.get('name')} diverged at step {stopped.get('step')}: {stopped.get('seen')}. "
            f"Nothing after that was saved; the last good checkpoint is {good}. Likely: {causes}",
            3,
        )
    run_dir.update_run(status="failed", exit_code=code, finished_at=now())
    reason = record.get("error") or f"exit code {code}; see the output above"
    raise UserError(f"training failed: {reason}\nRun directory: {run_dir.path}")
