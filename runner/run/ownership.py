"""Whether `recipe run` may use a folder as its run directory, and the lock it holds there.

The runner never deletes or overwrites what it did not write:
- a new run goes into a missing or empty folder, which gets the marker (`.recipe-run`)
  first; a non-empty folder is refused unless `--resume` or `--overwrite`;
- `--overwrite` replaces an earlier run only: the folder must carry the marker and hold
  nothing but what the runner writes (runner.run.directory.RUNNER_ENTRIES), and it is
  never the current directory, a folder holding the recipe or its data, the home folder
  or the filesystem root; only the runner's entries are deleted;
- `--resume` needs a run directory with a checkpoint.

One `recipe run` at a time per folder: an exclusive `fcntl` lock on `.recipe-run.lock`,
held for the life of the run (the kernel releases it when the process dies, however it
dies). The lock file names the holder (pid, host), so a second run says who has it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from runner import __version__
from runner.run.directory import (
    RunDirectory,
    RunDirError,
    is_node_folder,
    is_runner_entry,
    now,
    this_host,
)

MAX_LISTED = 5


class RunLock:
    """An exclusive lock on a run directory, released by `release()` or process exit."""

    def __init__(self, run: RunDirectory) -> None:
        self.run = run
        self.handle: IO[str] | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or RunDirError naming the `recipe run` that holds it."""
        handle = open(self.run.lock_file, "a+", encoding="utf-8")  # noqa: SIM115 (held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise RunDirError(
                f"{self.run.path} is in use by another `recipe run` ({holder}); wait for it "
                "to finish or stop it, or choose another output_dir with --set output_dir=..."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": this_host(), "since": now()}))
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.handle.truncate(0)
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "a process that did not say who it is"


def claim_run_dir(
    path: Path,
    *,
    overwrite: bool,
    resume: bool,
    protected: Iterable[Path] = (),
) -> tuple[RunDirectory, RunLock]:
    """Check that `path` can take this run, lock it, and prepare it (see the module
    docstring). `protected` are paths the run directory must never contain (the recipe
    file, its local data)."""
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
    lock = RunLock(run).acquire()
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
