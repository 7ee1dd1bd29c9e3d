"""Whether `recipe run` may use a folder as its run directory, and the lock it holds there.

The runner never deletes or overwrites what it did not write:
- a new run goes into a missing or empty folder, which gets the marker (`.recipe-run`)
  first; a non-empty folder is refused unless `--resume` or `--overwrite`;
- `--overwrite` replaces an earlier run only: the folder must carry the marker and hold
  nothing but what the runner writes (runner.run.directory.RUNNER_ENTRIES), and it is
  never the current directory, a folder holding the recipe or its data, the home folder
  or the filesystem root; only the runner's entries are deleted;
- `--resume` needs a run directory with a checkpoint.

One run at a time per folder: the run lock (runner.run.lock), held by the session's
`recipe run` and by each of its training processes for as long as any of them lives (the
kernel releases it when a process dies, however it dies). A second `recipe run`,
`--resume` or `--overwrite` refuses, naming the holder (pid, host, since when), except
when what holds it are the training processes of a `recipe run` that was killed: they
are saving a checkpoint and stopping (runner.run.lifeline), so it waits for them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from runner import __version__
from runner.run.directory import (
    RunDirectory,
    RunDirError,
    is_node_folder,
    is_runner_entry,
    now,
    this_host,
)
from runner.run.lifeline import STOP_GRACE_SECONDS, start_time
from runner.run.lock import Holder, LockFile
from runner.run.session import new_session_id

MAX_LISTED = 5
WAIT_MARGIN_SECONDS = 30  # beyond the stopping processes' own grace


class RunBusy(RunDirError):
    """The run directory is locked by a live process of another session."""

    def __init__(self, run: RunDirectory, holder: Holder, waited: float = 0.0) -> None:
        self.holder = holder
        if waited:
            message = (
                f"{run.path} is still in use by {holder.describe()}: it did not stop within "
                f"{waited:.0f} s; stop it (kill {holder.pid or holder.runner_pid}) and try again"
            )
        else:
            message = (
                f"{run.path} is in use by another run session ({holder.describe()}); wait "
                "for it to finish or stop it, or choose another output_dir with "
                "--set output_dir=..."
            )
        super().__init__(message)


class RunLock:
    """A session's lock on a run directory (`recipe run`'s part: byte 0), released by
    `release()` or process exit."""

    def __init__(self, run: RunDirectory, session: str | None = None) -> None:
        self.run = run
        self.session = session or new_session_id()  # the session this lock starts
        self.file = LockFile(run.lock_file)

    def acquire(self) -> RunLock:
        """Take the lock, or RunBusy naming a process that holds it."""
        info = {
            "session": self.session,
            "pid": os.getpid(),
            "started": start_time(os.getpid()),
            "host": this_host(),
            "since": now(),
        }
        if not self.file.take_run(info):
            holder = self.file.others() or Holder(pid=None)
            self.file.release()
            raise RunBusy(self.run, holder)
        return self

    def others(self) -> Holder | None:
        """A process other than this one that holds the lock: a training process."""
        return self.file.others()

    def release(self) -> None:
        self.file.release()


def lock_when_free(
    run: RunDirectory, session: str | None = None, say: Callable[[str], None] | None = None
) -> RunLock:
    """The run's lock; when the training processes of a killed `recipe run` hold it,
    after they have saved and stopped (at most STOP_GRACE_SECONDS and a margin)."""
    session = session or new_session_id()
    deadline = None
    while True:
        try:
            return RunLock(run, session).acquire()
        except RunBusy as busy:
            # nobody named: the holder ended between the two looks; try again
            vanished = busy.holder.pid is None and busy.holder.runner_pid is None
            if not (vanished or busy.holder.runner_gone()):
                raise
            if deadline is None:
                deadline = time.monotonic() + STOP_GRACE_SECONDS + WAIT_MARGIN_SECONDS
                if say is not None and not vanished:
                    say(
                        f"waiting for {busy.holder.describe()}: its run was killed, and it "
                        "is saving a checkpoint and stopping"
                    )
            elif time.monotonic() > deadline:
                raise RunBusy(run, busy.holder, STOP_GRACE_SECONDS + WAIT_MARGIN_SECONDS) from None
            time.sleep(0.2)


def claim_run_dir(
    path: Path,
    *,
    overwrite: bool,
    resume: bool,
    protected: Iterable[Path] = (),
    session: str | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[RunDirectory, RunLock]:
    """Check that `path` can take this run, lock it for `session` (a new one by
    default: `lock.session`), and prepare it (see the module docstring). `protected` are
    paths the run directory must never contain (the recipe file, its local data); `say`
    tells the user what is waited for."""
    run = RunDirectory(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} exists and is not a folder; choose another output_dir")
    # another machine of a multi-machine run may have made its own folder here first
    entries = [p for p in path.iterdir() if not is_node_folder(p.name)] if path.is_dir() else []
    if entries and not run.is_run():
        raise RunDirError(_not_a_run(path, run.foreign_entries() or [p.name for p in entries]))
    if not entries:
        path.mkdir(parents=True, exist_ok=True)
        run.write_marker(__version__)
    lock = lock_when_free(run, session, say)
    try:
        _check_use(run, entries=bool(entries), overwrite=overwrite, resume=resume)
        if entries and overwrite:
            _refuse_dangerous(path, protected)
            _delete_runner_entries(run)
            run.write_marker(__version__)
    except BaseException:
        lock.release()
        raise
    return run, lock


def _check_use(run: RunDirectory, *, entries: bool, overwrite: bool, resume: bool) -> None:
    if resume:
        if not run.checkpoints():
            raise RunDirError(
                f"{run.path}: no checkpoint to resume from (checkpoints are saved per "
                "training.save_strategy; run without --resume to start afresh)"
            )
        return
    if entries and not overwrite:
        raise RunDirError(
            f"{run.path} exists and is not empty; refusing to overwrite it "
            "(pass --overwrite to replace an earlier run, --resume to continue it, "
            "or choose another output_dir with --set output_dir=...)"
        )
    foreign = run.foreign_entries()
    if foreign:
        raise RunDirError(
            f"{run.path} holds files the runner did not write ({_listed(foreign)}); "
            "--overwrite deletes only what an earlier run wrote, so move them out first "
            "or choose another output_dir"
        )


def _not_a_run(path: Path, names: list[str]) -> str:
    return (
        f"{path} is not a run directory (no .recipe-run marker) and is not empty "
        f"({_listed(names)}); the runner never writes into or deletes a folder it did not "
        "create: choose another output_dir with --set output_dir=..., or empty it yourself"
    )


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _refuse_dangerous(path: Path, protected: Iterable[Path]) -> None:
    """Never delete in the current directory, home, the root, or above the recipe/data."""
    target = path.resolve()
    named = {Path.cwd().resolve(): "the current directory", Path.home().resolve(): "your home"}
    named[Path(target.anchor)] = "the filesystem root"
    if target in named:
        raise RunDirError(
            f"refusing --overwrite of {path}: it is {named[target]}; give the run its own "
            "output_dir (e.g. outputs/NAME)"
        )
    for item in protected:
        item = item.resolve()
        if item == target or target in item.parents:
            raise RunDirError(
                f"refusing --overwrite of {path}: it holds {item}, which the recipe uses; "
                "give the run its own output_dir (e.g. outputs/NAME)"
            )


def _delete_runner_entries(run: RunDirectory) -> None:
    for entry in sorted(run.path.iterdir()):
        if entry.name == run.lock_file.name or not is_runner_entry(entry.name):
            continue
        if is_node_folder(entry.name):
            continue  # another machine's, maybe in use right now
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
