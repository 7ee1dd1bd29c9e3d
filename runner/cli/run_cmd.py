"""`recipe run RECIPE`: check, place, prepare the data, write the launch files, launch
and supervise the training under `accelerate launch`, report.

The edge where a recipe meets the machine. Every machine of a run takes the same steps,
in this order (`run`, then `train_on_this_machine`):
1. check the recipe (errors stop here) and decide where it trains (a GPU recipe on a
   machine without one stops, unless --cpu; planning it with --dry-run or
   --print-launch works anywhere: runner.cli.run_planning);
2. prepare the data, every row checked, once for all its training processes
   (runner.cli.run_data);
3. take this machine's launch home and lock it (`claim_home`);
4. with --resume, find the checkpoint to continue from (runner.cli.run_resume);
5. write the launch files the training processes read (runner.cli.run_files);
6. run `accelerate launch -m runner.train HOME` as a new session of the run
   (runner.run.session), under supervision: Ctrl-C or a closed terminal asks the
   training processes to save a checkpoint and stop, a second Ctrl-C stops them at once,
   and if `recipe run` is killed outright they stop by themselves (runner.cli.supervise);
7. report how it ended (runner.cli.run_report).

Machine 0 owns the run (runner.expand.engines.owns_run): it claims the run directory
(runner.run.ownership: never a folder the runner did not make, one run at a time), keeps
run.json, the metrics and the model. Another machine of a multi-machine recipe
(launch.machine_rank > 0) differs in one branch of steps 3, 4, 5 and 7: its home is
`<run>/.recipe-node-<rank>/`, it continues from the checkpoint the run holds without
checking the run's record, writes no record, and reports as `machine N of M`. Heavy
libraries are imported inside, never at module top.
"""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.options import (
    SET_OPTION,
    TRUST_REMOTE_CODE_OPTION,
    checked_recipe,
    echo_missing_gpu,
    quiet_libraries,
)
from runner.cli.run_data import data_for_run
from runner.cli.run_files import write_launch_files
from runner.cli.run_planning import dry_run_text, per_machine_commands
from runner.cli.run_report import report, starting_line
from runner.cli.run_resume import resume_checkpoint
from runner.cli.supervise import train_under


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
    "--resume", is_flag=True, help="Continue the run in output_dir from its newest checkpoint."
)
@click.option(
    "--allow-data-change",
    is_flag=True,
    help="With --resume: continue although a data source changed since the run last trained "
    "(each session in run.json's sessions records the data it trained on).",
)
@click.option("--cpu", is_flag=True, help="Train on the CPU even if the recipe is made for a GPU.")
@click.option(
    "--no-cache",
    is_flag=True,
    help="Prepare the data afresh into the run directory, not the cache.",
)
@click.option(
    "--print-launch",
    is_flag=True,
    help="Print the command to run on each machine (several machines: one per node); start nothing.",
)
@click.option(
    "--cap-memory",
    is_flag=True,
    help="Hold each training process's CUDA memory to the recipe's card (hardware.gpu), "
    "to check on a bigger GPU that the recipe fits the card it names; does nothing on the CPU.",
)
@TRUST_REMOTE_CODE_OPTION
def run(
    recipe: str,
    accelerate_args: tuple[str, ...],
    overrides: tuple[str, ...],
    dry_run: bool,
    overwrite: bool,
    resume: bool,
    allow_data_change: bool,
    cpu: bool,
    no_cache: bool,
    print_launch: bool,
    cap_memory: bool,
    trust_remote_code: bool,
) -> None:
    """Lint, prepare and train RECIPE under accelerate launch.

    Arguments after `--` go to `accelerate launch`. The run directory is the recipe's
    output_dir; an existing non-empty one is never overwritten without --overwrite,
    which replaces an earlier run and nothing else. --cap-memory makes a bigger GPU
    behave like the recipe's card (torch.cuda.set_per_process_memory_fraction), and
    run.json's memory.cap says what it did.
    """
    from runner.expand.placement import choose_placement, gpu_available, require_gpu_here
    from runner.expand.targets import check_before_loading

    checked = checked_recipe(recipe, overrides, trust_remote_code=trust_remote_code)
    settings = checked.settings
    placement = choose_placement(settings, gpu_here=gpu_available(), force_cpu=cpu)
    if print_launch or dry_run:  # planning: on any machine, GPU or not; starts nothing
        echo_missing_gpu(settings, placement)
        click.echo(
            per_machine_commands(recipe, overrides, settings, placement, accelerate_args,
                                 cap_memory=cap_memory, cpu=cpu)
            if print_launch
            else dry_run_text(settings, placement, accelerate_args, resume, cap_memory)
        )  # fmt: skip
        return
    require_gpu_here(settings, placement)  # planning works anywhere; training does not
    model_code = code_permission(settings, recipe, resume)  # before anything loads it
    quiet_libraries(cpu=placement.cpu)  # the libraries' warnings off the screen (runner.logs)
    check_before_loading(settings)  # lora.target_modules on the meta device, where lint could not
    prepared = data_for_run(settings, no_cache)  # bad rows stop here, before anything is written
    train_on_this_machine(
        checked, placement, prepared, model_code, overrides, accelerate_args,
        overwrite=overwrite, resume=resume, allow_data_change=allow_data_change,
        cap_memory=cap_memory,
    )  # fmt: skip


def train_on_this_machine(
    checked, placement, prepared, model_code, overrides, accelerate_args, *,
    overwrite: bool, resume: bool, allow_data_change: bool, cap_memory: bool,
) -> None:  # fmt: skip
    """Take this machine's launch home (`claim_home`), write what the training processes
    read, launch them and say how the training ended; the lock is released however it
    ends. The same steps on every machine; where machine 0 and the others differ is
    inside `claim_home`, `resume_checkpoint`, `write_launch_files` and `report`."""
    from runner.expand.launch import launch_argv

    settings = checked.settings
    home, lock = claim_home(checked, overwrite=overwrite, resume=resume)
    session = lock.session  # this start's id (runner.run.session); its processes watch us
    try:
        point = resume_checkpoint(home, settings, prepared, allow_data_change) if resume else None
        argv = launch_argv(
            settings, placement, extra=accelerate_args, resume=point, cap_memory=cap_memory
        )
        write_launch_files(home, checked, placement, argv, prepared, overrides, point, session,
                           model_code)  # fmt: skip
        click.echo(starting_line(home, settings, argv), err=True)
        code, interrupts = train_under(argv, home, session, lock)
        click.echo(report(home, settings, code, interrupts, session))
    finally:
        lock.release()


def code_permission(settings, subject: str, resume: bool):
    """The model code this run may import, checked before anything loads it (None when
    the recipe asks for none; runner.recipe.remote_code): allowed by --trust-remote-code,
    and on --resume the code the run recorded in run.json (read by the machine that owns
    the run, the one that keeps run.json)."""
    from runner.expand.engines import owns_run
    from runner.recipe.remote_code import require_permission
    from runner.run.directory import RunDirectory
    from runner.run.provenance import recorded_code

    owner = owns_run(settings)
    recorded = recorded_code(RunDirectory(settings.output_dir)) if resume and owner else None
    return require_permission(
        settings.model, settings.remote_code_allowed, subject=subject, recorded=recorded
    )


def claim_home(checked, *, overwrite: bool, resume: bool):
    """This machine's launch home (a RunDirectory) and its lock, for a new session
    (`lock.session`). The machine that owns the run claims the run directory
    (runner.run.ownership: never a folder the runner did not make, one run at a time,
    --overwrite and --resume checked); another locks its own folder in it, so a shared
    run directory is not written twice."""
    from runner.expand.engines import launch_home, owns_run
    from runner.run.directory import RunDirectory
    from runner.run.ownership import claim_run_dir, lock_when_free

    settings = checked.settings

    def say(line: str) -> None:
        click.echo(line, err=True)

    if owns_run(settings):
        return claim_run_dir(
            settings.output_dir, overwrite=overwrite, resume=resume,
            protected=used_paths(checked), say=say,
        )  # fmt: skip
    home = RunDirectory(launch_home(settings))
    home.path.mkdir(parents=True, exist_ok=True)
    return home, lock_when_free(home, say=say)


def used_paths(checked) -> list[Path]:
    """The recipe file and its local data: never inside a run directory to delete."""
    settings = checked.settings
    local = [Path(s["source"]) for s in settings.sources if Path(s["source"]).is_absolute()]
    return [checked.recipe.path.resolve(), *local]
