"""The training processes live only as long as the `recipe run` that started them.

`recipe run` starts `accelerate launch` in a session of its own (so a Ctrl-C reaches the
runner only), which means nothing in the kernel ends the training when the runner is
killed (`kill -9`, the OOM killer, a dropped SSH session). So every training process, on
every machine, watches (`Lifeline`, a thread polling twice a second) the `recipe run` of
its machine, named in its environment (RECIPE_RUNNER_PID, with the process's start time
against pid reuse), and its own launcher. When either is gone it stops as on Ctrl-C: at
the end of the step it is in, after a checkpoint, the run recorded `interrupted` with the
reason (runner.run.guard; on several processes all ranks stop at the same step, so one
machine's loss stops every machine). Before training has begun there is nothing to save,
so it exits at once; and whatever it is doing, it is gone STOP_GRACE_SECONDS after it
noticed. The launcher ends when its training processes have: it is not signalled, since
torchrun's agent answers a SIGTERM by signalling its workers twice and taking its store
down with it.

No torch import here: `recipe run` uses this module too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

RUNNER_PID = "RECIPE_RUNNER_PID"
RUNNER_STARTED = "RECIPE_RUNNER_STARTED"
SESSION = "RECIPE_SESSION"
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 60  # a step and a checkpoint; after that the process exits anyway
INTERRUPTED_EXIT = 130


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3 onwards), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def start_time(pid: int) -> str | None:
    """When a process started (clock ticks after boot, /proc/<pid>/stat field 22): with
    the pid, it names one process even after the pid is used again. None off Linux."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def is_alive(pid: int, started: str | None = None) -> bool:
    """Whether process `pid` (started at `started`, when given) still runs; a zombie,
    dead but not yet reaped, does not."""
    fields = _stat_fields(pid)
    if fields is None:
        if Path("/proc/self/stat").is_file():
            return False  # Linux, and the process is gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] in ("Z", "X"):
        return False
    return not started or fields[19] == started


def runner_environment(session: str) -> dict[str, str]:
    """What `recipe run` puts in the environment of the processes it launches: itself,
    and the run session they belong to (runner.run.session)."""
    pid = os.getpid()
    return {RUNNER_PID: str(pid), RUNNER_STARTED: start_time(pid) or "", SESSION: session}


def detach_screen(log_file: Path) -> None:
    """Send this process's stdout and stderr to its log file from now on: nobody watches
    the terminal any more, and a closed one fails every write."""
    with contextlib.suppress(OSError):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


class Lifeline:
    """A training process's watch on its `recipe run` and its launcher (module
    docstring). `gone` is why it must stop (None while both live); the guard reads it
    at the end of each step."""

    def __init__(
        self,
        runner_pid: int | None,
        runner_started: str | None,
        log_file: Path,
        on_early_exit: Callable[[str], None] | None = None,
    ) -> None:
        self.runner_pid = runner_pid
        self.runner_started = runner_started or None
        self.session = os.environ.get(SESSION)  # the run session it belongs to
        self.parent = os.getppid()
        self.log_file = log_file
        self.on_early_exit = on_early_exit
        self.gone: str | None = None
        self.training = False  # set by the guard when the training loop begins
        self.held: object | None = None  # what must live as long as the process (its lock)

    @classmethod
    def from_environment(
        cls, log_file: Path, on_early_exit: Callable[[str], None] | None = None
    ) -> Lifeline:
        """The lifeline of a process `recipe run` launched (without RECIPE_RUNNER_PID,
        as when started by hand, only the launcher is watched)."""
        pid = os.environ.get(RUNNER_PID, "")
        started = os.environ.get(RUNNER_STARTED)
        return cls(int(pid) if pid.isdigit() else None, started, log_file, on_early_exit)

    def check(self) -> str | None:
        """Why this process must stop now, or None."""
        if self.runner_pid is not None and not is_alive(self.runner_pid, self.runner_started):
            return f"`recipe run` (pid {self.runner_pid}) ended"
        if os.getppid() != self.parent:
            return f"the launcher (pid {self.parent}) ended"
        return None

    def start(self) -> Lifeline:
        """Check once now (a runner already gone: exit before loading anything), then
        keep watching in a daemon thread."""
        reason = self.check()
        if reason is not None:
            self._stop(reason)
        threading.Thread(target=self._watch, name="recipe-lifeline", daemon=True).start()
        return self

    def _watch(self) -> None:
        while (reason := self.check()) is None:
            time.sleep(POLL_SECONDS)
        self._stop(reason)

    def detach_screen(self) -> None:
        """From now on, this process writes to its log file instead of the terminal."""
        detach_screen(self.log_file)

    def _stop(self, reason: str) -> None:
        self.gone = reason
        self.detach_screen()
        if not self.training:
            print(f"{reason}: stopping (training had not begun)", file=sys.stderr, flush=True)
            if self.on_early_exit is not None:
                with contextlib.suppress(Exception):  # exit whatever the record says
                    self.on_early_exit(reason)
            os._exit(INTERRUPTED_EXIT)
        print(f"{reason}: stopping after a checkpoint", file=sys.stderr, flush=True)
        time.sleep(STOP_GRACE_SECONDS)
        os._exit(INTERRUPTED_EXIT)  # the step or the checkpoint did not end in time
