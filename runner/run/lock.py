"""The run lock: which live processes own a run directory.

`.recipe-run.lock` is locked with POSIX record locks (fcntl), which the kernel drops when
their process ends, however it ends (`kill -9`, the OOM killer), so a dead process never
holds it, and a live one always does:

- byte 0: the session's `recipe run`. It takes the whole file first, so it gets the lock
  only when no process of any session holds any byte, then keeps byte 0 alone;
- byte 1 + local rank: each training process of the session on this machine, for its
  whole life (runner.run.lifeline.join_run).

So the run is locked while its `recipe run` or any of its training processes lives, and
`holder` names one of them (the kernel gives its pid). The file's text says which session
took it: the session id, its `recipe run` (pid, start time, host) and since when.

POSIX locks belong to a process, not to a file handle: closing any handle a process has
on this file drops all its locks on it. So a holder opens the file once (`LockFile`) and
asks through that handle (`LockFile.others`); `holder(path)` is for other processes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runner.run.lifeline import is_alive

RUNNER_BYTE = 0
# struct flock: Linux (l_type, l_whence, l_start, l_len, l_pid); the BSDs and macOS
# put the offsets first
_FLOCK = "hhqqi" if sys.platform.startswith("linux") else "qqihh"
_BUSY = (errno.EACCES, errno.EAGAIN)


def training_byte(local_rank: int) -> int:
    """The byte a training process of local rank `local_rank` holds."""
    return 1 + local_rank


@dataclass(frozen=True)
class Holder:
    """A live process holding the lock, and the session that took it."""

    pid: int | None  # the holding process, as the kernel names it
    session: str | None = None
    runner_pid: int | None = None  # that session's `recipe run`
    runner_started: str | None = None
    host: str | None = None
    since: str | None = None

    def runner_gone(self) -> bool:
        """The session's `recipe run` is known to have ended (on this machine): what
        holds the lock are its training processes, stopping (runner.run.lifeline)."""
        if self.runner_pid is None or self.host != socket.gethostname():
            return False
        return not is_alive(self.runner_pid, self.runner_started)

    def describe(self) -> str:
        """Who holds the lock, for a message: pid, host, since when."""
        host = self.host or "an unknown host"
        since = f"since {self.since}" if self.since else "since an unknown time"
        if self.pid is None or self.pid == self.runner_pid:
            pid = self.runner_pid if self.pid is None else self.pid
            return f"`recipe run` pid {pid} on {host}, {since}"
        runner = f"`recipe run` pid {self.runner_pid}" if self.runner_pid else "a `recipe run`"
        gone = ", which is gone" if self.runner_gone() else ""
        return f"pid {self.pid} on {host}, a training process started by {runner}{gone}, {since}"


def _parse(text: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _other_holder(handle: IO[str]) -> Holder | None:
    """Who else holds any byte of the file open as `handle` (None: nobody)."""
    query = struct.pack(_FLOCK, *_flock(fcntl.F_WRLCK))
    try:
        answer = fcntl.fcntl(handle.fileno(), fcntl.F_GETLK, query)
    except OSError:
        return None
    values = struct.unpack(_FLOCK, answer)
    kind, pid = (values[0], values[4]) if _FLOCK == "hhqqi" else (values[3], values[2])
    if kind == fcntl.F_UNLCK:
        return None
    handle.seek(0)
    info = _parse(handle.read())
    runner = info.get("pid")
    return Holder(
        pid=pid if pid > 0 else None,
        session=info.get("session"),
        runner_pid=runner if isinstance(runner, int) else None,
        runner_started=info.get("started"),
        host=info.get("host"),
        since=info.get("since"),
    )


def _flock(kind: int) -> tuple[int, ...]:
    """The whole file (from 0, length 0 = to the end and beyond), as struct flock."""
    if _FLOCK == "hhqqi":
        return (kind, os.SEEK_SET, 0, 0, 0)
    return (0, 0, 0, kind, os.SEEK_SET)


def holder(path: Path) -> Holder | None:
    """Who holds the lock file at `path` now; None when nobody does or there is none.
    Not for a process that holds it (see the module docstring)."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError:
        return None
    with handle:
        return _other_holder(handle)


class LockFile:
    """One process's hold on a run's lock file (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self.handle is None:
            self.handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held)
        return self.handle

    def take_run(self, info: dict[str, Any]) -> bool:
        """For `recipe run`: the lock, when no process holds any of it; keeps byte 0 and
        writes `info` (who took it). False when it is held."""
        handle = self._open()
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0)
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            return False
        fcntl.lockf(handle, fcntl.LOCK_UN, 0, RUNNER_BYTE + 1)  # the rest: the trainers'
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(info) + "\n")
        handle.flush()
        return True

    def take_byte(self, byte: int) -> bool:
        """For a training process: its own byte; False when another process has it."""
        handle = self._open()
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            return False
        return True

    def others(self) -> Holder | None:
        """Another process holding any byte (this one's own locks left out)."""
        return _other_holder(self._open())

    def release(self) -> None:
        """Give up every byte this process holds; the last holder empties the file (a
        process that dies holding it leaves its text, which names nobody once the lock
        is free)."""
        if self.handle is not None:
            if _other_holder(self.handle) is None:
                self.handle.truncate(0)
            fcntl.lockf(self.handle, fcntl.LOCK_UN, 0, 0)
            self.handle.close()
            self.handle = None
