"""`recipe run RECIPE`: lint, prepare, then train under `accelerate launch`.

The edge where a recipe meets the machine: the recipe is checked (errors stop here),
where it trains is decided (a GPU recipe on a machine without one stops, unless --cpu;
planning it with --dry-run or --print-launch works anywhere), every data row is checked,
the run directory is claimed (runner.run.ownership: never a folder the runner did not
make, one run at a time) and gets the recipe as given and as resolved, then `accelerate
launch -m runner.train RUN_DIR` trains as a new session of the run (runner.run.session)
and a one-line summary is printed. Ctrl-C or a closed terminal asks the training
processes to save a checkpoint and stop; a second Ctrl-C stops them at once; and if
`recipe run` is killed outright they stop by themselves (runner.cli.supervise). Heavy
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
from runner.cli.supervise import train_under
from runner.errors import UserError
from runner.recipe.yaml_dialect import dump_yaml


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
    if settings.machine_rank > 0:
        click.echo(
            run_other_machine(settings, placement, accelerate_args, resume, no_cache, cap_memory)
        )
        return
    model_code = code_permission(settings, recipe, resume)  # before anything loads it
    quiet_libraries(cpu=placement.cpu)  # the libraries' warnings off the screen (runner.logs)
    check_before_loading(settings)  # lora.target_modules on the meta device, where lint could not
    prepared = prepared_data(settings, no_cache)  # bad rows stop here, before anything is written
    train_in_run_dir(
        checked, placement, prepared, model_code, overrides, accelerate_args,
        overwrite=overwrite, resume=resume, allow_data_change=allow_data_change,
        cap_memory=cap_memory,
    )  # fmt: skip


def train_in_run_dir(
    checked, placement, prepared, model_code, overrides, accelerate_args, *,
    overwrite: bool, resume: bool, allow_data_change: bool, cap_memory: bool,
) -> None:  # fmt: skip
    """Claim the run directory (one owner: runner.run.ownership), write what the training
    processes read, launch them and say how the run ended; the lock is released however
    it ends."""
    from runner.expand.launch import launch_argv, shell_command
    from runner.run.ownership import claim_run_dir

    settings = checked.settings
    run_dir, lock = claim_run_dir(
        settings.output_dir, overwrite=overwrite, resume=resume, protected=used_paths(checked),
        say=lambda line: click.echo(line, err=True),
    )  # fmt: skip
    session = lock.session  # this start's id in run.json's sessions (runner.run.session)
    try:
        point = continue_from(run_dir, settings, prepared, allow_data_change) if resume else None
        argv = launch_argv(
            settings, placement, extra=accelerate_args, resume=point, cap_memory=cap_memory
        )
        prepare(run_dir, checked, placement, argv, prepared, overrides, point, session)
        if model_code is not None:  # the code allowed, hashed (--resume and infer compare)
            run_dir.update_run(remote_code=model_code.record())
        click.echo(f"training in {run_dir.path}\n$ {shell_command(argv)}", err=True)
        code, interrupts = train_under(argv, run_dir, session, lock)
        click.echo(finish(run_dir, code, interrupts, session))
    finally:
        lock.release()


def dry_run_text(settings, placement, extra, resume: bool, cap_memory: bool) -> str:
    """`--dry-run`: the launch command and the resolved recipe."""
    from runner.expand.launch import launch_argv, shell_command

    point = resume_point_of(settings.output_dir) if resume else None
    argv = launch_argv(settings, placement, extra=extra, resume=point, cap_memory=cap_memory)
    return f"# launch command\n{shell_command(argv)}\n# resolved recipe\n" + dump_yaml(
        settings.resolved
    ).rstrip("\n")


def per_machine_commands(
    recipe, overrides, settings, placement, extra, *, cap_memory: bool = False, cpu: bool = False
) -> str:
    """What to start on each machine: its `recipe run`, and the launch it executes."""
    from runner.expand.launch import launch_argv, shell_command
    from runner.recipe.settings import Settings

    lines = []
    sets = [part for value in overrides if not value.startswith("launch.machine_rank=")
            for part in ("--set", value)]  # fmt: skip
    for rank in range(settings.num_machines):
        resolved = dict(settings.resolved)
        resolved["launch"] = {**settings.launch, "machine_rank": rank}
        node = Settings(resolved, settings.remote_code_allowed)
        command = ["recipe", "run", recipe, *sets]
        if settings.num_machines > 1:
            command += ["--set", f"launch.machine_rank={rank}"]
        if cpu:
            command.append("--cpu")
        if cap_memory:
            command.append("--cap-memory")
        if settings.trust_remote_code:
            command.append("--trust-remote-code")
        node_argv = launch_argv(node, placement, extra=extra, cap_memory=cap_memory)
        lines.append(f"# machine {rank} of {settings.num_machines}:")
        lines.append(shell_command(command + (["--", *extra] if extra else [])))
        lines.append(f"#   which runs: {shell_command(node_argv)}")
    return "\n".join(lines)


def run_other_machine(
    settings, placement, extra, resume: bool, no_cache: bool, cap_memory: bool = False
) -> str:
    """A machine other than 0 of a multi-machine run: its own launch files (so a shared
    run directory is not written twice) and its training processes; the run's record,
    metrics and model are machine 0's."""
    from runner.data.prepared import write_pointer
    from runner.expand.engines import launch_home
    from runner.expand.launch import launch_argv, shell_command, write_launch_files
    from runner.run.directory import RunDirectory, RunDirError
    from runner.run.ownership import lock_when_free

    code_permission(settings, str(settings.output_dir), resume=False)
    prepared = prepared_data(settings, no_cache)
    home = RunDirectory(launch_home(settings))
    home.path.mkdir(parents=True, exist_ok=True)
    lock = lock_when_free(home, say=lambda line: click.echo(line, err=True))
    session = lock.session  # this machine's: its processes watch its `recipe run`
    try:
        write_pointer(home.path, keep_prepared(prepared, home.path))
        point = resume_point_of(settings.output_dir) if resume else None
        if resume and point is None:
            raise RunDirError(f"{settings.output_dir}: no complete checkpoint to resume from")
        argv = launch_argv(settings, placement, extra=extra, resume=point, cap_memory=cap_memory)
        home.resolved.write_text(dump_yaml(settings.resolved), encoding="utf-8")
        write_launch_files(settings, placement, home.path)
        if settings.builds_base and not home.base.is_dir():
            write_base(settings, home.base)
        where = f"machine {settings.machine_rank} of {settings.num_machines}"
        click.echo(f"{where}: training; $ {shell_command(argv)}", err=True)
        code, _ = train_under(argv, home, session, lock)
    finally:
        lock.release()
    if code != 0:
        raise UserError(
            f"{where}: training failed (exit code {code}); see the output above and the "
            f"run's record on machine 0 ({settings.output_dir})"
        )
    return f"{where}: done; machine 0 writes the run's record and model in {settings.output_dir}"


def code_permission(settings, subject: str, resume: bool):
    """The model code this run may import, checked before anything loads it (None when
    the recipe asks for none; runner.recipe.remote_code): allowed by --trust-remote-code,
    and on --resume the code the run recorded in run.json."""
    from runner.recipe.remote_code import require_permission
    from runner.run.directory import RunDirectory
    from runner.run.provenance import recorded_code

    recorded = recorded_code(RunDirectory(settings.output_dir)) if resume else None
    return require_permission(
        settings.model, settings.remote_code_allowed, subject=subject, recorded=recorded
    )


def prepared_data(settings, no_cache: bool):
    """The data prepared once for every training process: from the cache, or every row
    read and checked (bad rows listed by source and line), rendered and tokenized."""
    import tempfile

    from runner.data.prepared import prepare_data
    from runner.data.truncation import rows_line

    scratch = Path(tempfile.mkdtemp(prefix="recipe-prepared-")) / "prepared"
    prepared = prepare_data(settings, use_cache=not no_cache, into=scratch)
    if prepared.hit:
        click.echo(f"data cache: hit (key {prepared.record['key'][:12]})", err=True)
    else:
        where = "cache" if prepared.record.get("key") else "run directory"
        click.echo(f"data: prepared in {prepared.seconds:.1f} s (into the {where})", err=True)
    click.echo(rows_line(prepared.rows), err=True)  # every row accounted for
    if prepared.rows["skipped"]:
        click.echo(f"first bad row skipped: {prepared.first_bad_row}", err=True)
    return prepared


def keep_prepared(prepared, home: Path):
    """Data prepared outside the cache moves into the run directory it belongs to."""
    import shutil

    from runner.data.prepared import Prepared

    if prepared.record.get("key"):
        return prepared
    target = home / "prepared"
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(prepared.path), target)
    return Prepared(target, prepared.record, prepared.hit, prepared.seconds)


def used_paths(checked) -> list[Path]:
    """The recipe file and its local data: never inside a run directory to delete."""
    settings = checked.settings
    local = [Path(s["source"]) for s in settings.sources if Path(s["source"]).is_absolute()]
    return [checked.recipe.path.resolve(), *local]


def resume_point_of(path: Path) -> Path | None:
    from runner.run.checkpoints import resume_point
    from runner.run.directory import RunDirectory

    point = resume_point(RunDirectory(path))
    return point.checkpoint if point else None


def continue_from(run_dir, settings, prepared, allow_data_change: bool) -> Path:
    """The checkpoint a resumed run continues from, after checking that the recipe and
    the data are the run's own (except keys safe to change, and data that
    --allow-data-change lets change; a refusal leaves the run untouched), and setting
    aside incomplete checkpoints."""
    from runner.run.checkpoints import resume_point, set_aside_incomplete
    from runner.run.directory import RunDirError
    from runner.run.resume import SAFE_ON_RESUME, resume_differences
    from runner.run.session import settle_earlier

    if run_dir.resolved.is_file():
        changed = resume_differences(run_dir.read_resolved(), settings.resolved)
        if changed:
            raise RunDirError(
                f"--resume continues {run_dir.path} with the recipe it was started with, "
                f"but these keys differ: {', '.join(changed)}. Undo them, or start a new run "
                f"(another output_dir, or --overwrite). Safe to change on resume: "
                f"{', '.join(SAFE_ON_RESUME)}"
            )
    same_data(run_dir, prepared, allow_data_change)  # like the recipe, before anything is written
    settle_earlier(run_dir)  # a session that ended without a record is `stale`
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


def same_data(run_dir, prepared, allow: bool) -> None:
    """Refuse to resume on data whose content changed since the run last trained on it
    (runner.run.resume), naming each source, unless --allow-data-change."""
    from runner.run.directory import RunDirError
    from runner.run.resume import data_changes, recorded_data

    recorded = recorded_data(run_dir.read_run()) if run_dir.run_json.is_file() else None
    changes = data_changes(recorded or [], prepared.record.get("sources") or [])
    if not changes:
        return
    if not allow:
        raise RunDirError(
            f"--resume continues {run_dir.path} on the data it trained on, but "
            f"{'; '.join(changes)}. Put the data back, start a new run (another output_dir, "
            "or --overwrite), or continue on the changed data with --resume "
            "--allow-data-change (run.json's sessions keep which steps trained on which data)"
        )
    for change in changes:
        click.echo(f"continuing on changed data (--allow-data-change): {change}", err=True)


def prepare(run_dir, checked, placement, argv, prepared, overrides, point, session) -> None:
    """Write the run's record, its accelerate (and DeepSpeed) config, where its prepared
    data is and, for a model.config or GGUF recipe, the base model it starts from
    (runner.expand.model.save_base_model) before anything trains."""
    from runner.data.prepared import write_pointer
    from runner.expand.engines import stray_default_config
    from runner.expand.launch import write_launch_files
    from runner.run.checkpoints import ResumePoint
    from runner.run.record import record_start

    resume = ResumePoint(point) if point is not None else None
    prepared = keep_prepared(prepared, run_dir.path)
    write_pointer(run_dir.path, prepared)
    record_start(run_dir, checked, argv, prepared, overrides, resume, session)
    settings = checked.settings
    write_launch_files(settings, placement, run_dir.path)
    stray = stray_default_config()
    if stray is not None:
        click.echo(f"note: {stray} (accelerate's default config) is not used; this run's "
                   f"is {run_dir.path / 'accelerate.yaml'}", err=True)  # fmt: skip
    if settings.builds_base and not run_dir.base.is_dir():
        write_base(settings, run_dir.base)


def write_base(settings, base: Path) -> None:
    """The base model a model.config or GGUF recipe starts from, written into the run
    (runner.expand.model.save_base_model), saying what it does: a GGUF file takes a
    while to dequantize."""
    import time

    from runner.expand.model import save_base_model

    started = time.perf_counter()
    gguf = settings.gguf_path
    if gguf is not None:
        click.echo(f"model: dequantizing {gguf.name} into {base} ...", err=True)
    save_base_model(settings, base)
    if gguf is not None:
        click.echo(f"model: {base} written in {time.perf_counter() - started:.1f} s", err=True)


def finish(run_dir, code: int, interrupts: int, session: str) -> str:
    """The summary of a run that succeeded; RunStopped / UserError for one that did not."""
    from runner.run.directory import now
    from runner.run.record import resume_command, stop_record, summary_line
    from runner.run.session import close_session, is_current, last_logged_step

    if not is_current(run_dir, session):
        raise UserError(
            f"{run_dir.path}: another session of this run has started (see run.json's "
            "sessions); this one's training processes stopped without writing"
        )
    record = run_dir.read_run()
    status = record.get("status")
    if status == "succeeded" and code == 0:
        return summary_line(run_dir.update_run(exit_code=0))
    if status == "running" and interrupts > 1:
        why, step = "a second interrupt stopped it at once", last_logged_step(run_dir)
        record = close_session(
            run_dir, session, "interrupted", why, step, exit_code=code, finished_at=now(),
            stopped=stop_record(run_dir, step, why),
        )  # fmt: skip
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
    reason = record.get("error") or f"exit code {code}; see the output above"
    if status == "failed":
        run_dir.update_run(exit_code=code)  # the training process recorded why
    else:
        first = str(reason).splitlines()[0]
        close_session(run_dir, session, "failed", first, None, exit_code=code, finished_at=now())
    raise UserError(f"training failed: {reason}\nRun directory: {run_dir.path}")
