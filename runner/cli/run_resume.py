"""`recipe run --resume`: the checkpoint a run continues from, once the recipe and the
data are checked to be the run's own (runner.run.resume says what may change)."""

from __future__ import annotations

from pathlib import Path

import click


def resume_checkpoint(home, settings, prepared, allow_data_change: bool) -> Path:
    """The checkpoint this machine continues from. The machine that owns the run checks
    the run may continue and settles its earlier sessions (`continue_from`); another
    machine continues from the checkpoint the run directory holds, and checks nothing
    it does not own."""
    from runner.expand.engines import owns_run
    from runner.run.directory import RunDirError

    if owns_run(settings):
        return continue_from(home, settings, prepared, allow_data_change)
    point = resume_point_of(settings.output_dir)
    if point is None:
        raise RunDirError(f"{settings.output_dir}: no complete checkpoint to resume from")
    return point


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
