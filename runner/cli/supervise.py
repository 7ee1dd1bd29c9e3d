"""The training processes under `recipe run`: started in a session of their own, so a
Ctrl-C reaches `recipe run` only, which turns the first into a stop request the guard
reads (runner.run.guard: checkpoint at the end of the step, exit 130) and the second
into a kill of the whole process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import click


def train_under(argv: list[str], run_dir) -> tuple[int, int]:
    """Run the launch command; (its exit code, how many interrupts came).

    The training processes run in their own session, so a Ctrl-C reaches this process
    only: the first asks them (through the run directory) to checkpoint and stop, the
    second kills them.
    """
    from runner.expand.launch import executable_argv, launch_env

    run_dir.stop_request.unlink(missing_ok=True)
    process = subprocess.Popen(executable_argv(argv), start_new_session=True, env=launch_env())
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
            kill_tree(process.pid)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        run_dir.stop_request.unlink(missing_ok=True)
    return code, interrupts


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process under it (torchrun starts the training
    processes in process groups of their own, so a group kill would miss them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, found = [pid], []
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    for each in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)
