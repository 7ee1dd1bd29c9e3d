"""The training processes under `recipe run`.

They run in a session of their own, so a Ctrl-C reaches `recipe run` only, which turns
the first into a stop request the guard reads (runner.run.guard: checkpoint at the end
of the step, exit 130) and the second into a kill of the whole process tree. A closed
terminal (SIGHUP) is a first Ctrl-C: the run stops after a checkpoint, recorded as
`interrupted` because the terminal closed; under `nohup` (SIGHUP ignored), tmux or screen
the run goes on. Whatever ends `recipe run` itself, `kill -9` included, its training
processes follow it (runner.run.lifeline): each stops after a checkpoint, and the
launcher with them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import click


def train_under(argv: list[str], run_dir, session: str, lock) -> tuple[int, int]:
    """Run the launch command as `session` of the run; (its exit code, how many
    interrupts came). Returns when the launcher and every training process holding
    `lock` (runner.ownership.RunLock) with it have ended.

    The first interrupt asks the training processes (through the run directory) to
    checkpoint and stop; the second kills them.
    """
    from runner.expand.launch import executable_argv, launch_env
    from runner.run.lifeline import runner_environment

    run_dir.stop_request.unlink(missing_ok=True)
    process = subprocess.Popen(
        executable_argv(argv),
        start_new_session=True,
        env={**launch_env(), **runner_environment(session)},  # what they watch
    )
    interrupts = 0

    def on_signal(signum: int, frame) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            kill_run(process, lock)
            return
        run_dir.stop_request.write_text(signal.Signals(signum).name + "\n")
        if signum == signal.SIGHUP:
            detach_from_terminal()  # nobody reads it now, and writing to it fails
            return
        with contextlib.suppress(OSError):
            click.echo(
                "\ninterrupted: saving a checkpoint at the end of this step, then stopping "
                "(Ctrl-C again to stop at once)",
                err=True,
            )

    signums = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # as nohup leaves it
        signums.append(signal.SIGHUP)
    previous = {s: signal.signal(s, on_signal) for s in signums}
    try:
        code = process.wait()
        wait_for_training_processes(lock)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        run_dir.stop_request.unlink(missing_ok=True)
    return code, interrupts


def wait_for_training_processes(lock) -> None:
    """Wait until no training process holds the run's lock: the launcher can end before
    them (killed, or a torchrun agent's own end), and the run's outcome is theirs to
    record. At most the time they take to stop (runner.run.lifeline)."""
    from runner.run.lifeline import STOP_GRACE_SECONDS

    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while lock.others() is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def detach_from_terminal() -> None:
    """Point stdout and stderr at /dev/null: after a hang-up, every write to the
    terminal fails, and the run's record says how it ended."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)


def kill_run(process: subprocess.Popen, lock) -> None:
    """SIGKILL the launcher's process tree (while it runs: a reaped pid may be another
    process's now) and every training process still holding the run's lock."""
    if process.returncode is None:
        kill_tree(process.pid)
    for _ in range(100):  # each holder in turn; the kernel frees its lock as it dies
        holder = lock.others()
        if holder is None or holder.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGKILL)
        time.sleep(0.02)


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
