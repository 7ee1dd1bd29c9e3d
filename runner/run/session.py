"""A run's sessions: its first start and each `--resume`, in run.json's `sessions`.

Each `recipe run` of a run directory opens a session with a new id, which its training
processes get in their environment (RECIPE_SESSION, runner.run.lifeline). run.json's
`sessions` lists them oldest first, each with how it began and how it ended:

    {"id", "started_at", "host", "pid" (its `recipe run`), "from_checkpoint", "from_step",
     "status", "reason", "stopped_at", "step", "last_checkpoint"}

`status` takes run.json's words (`running` while it runs; `succeeded`, `failed`,
`diverged`, `interrupted`; `stale` when its processes all ended without saying how,
found by the next session); `reason` says why it stopped (Ctrl-C, the terminal closed,
`recipe run` ended ...); `step` is the step it stopped at (for a stale one, the last step
it logged), and `last_checkpoint` the newest complete checkpoint when it stopped: what a
resume continues from. Later fields may be
added to an entry; readers ignore what they do not know.

Only the newest session writes the run: a process of an older one (`is_current` false)
never again writes run.json, metrics or checkpoints, and exits (runner.run.guard). The
lock (runner.run.lock) keeps a second session out while any process of the first lives;
this check holds where the lock cannot reach (another machine writing to a shared
folder, a lock file deleted by hand).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.run.checkpoints import resume_point
from runner.run.directory import RunDirectory, now
from runner.run.lifeline import SESSION, Lifeline
from runner.run.lock import LockFile, training_byte

SUPERSEDED_EXIT = 4  # a process of an older session that found a newer one


class Superseded(UserError):
    """A newer session has started on this run; this process must not write it."""


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


def sessions_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    sessions = record.get("sessions")
    return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []


def is_current(run: RunDirectory, session: str | None) -> bool:
    """Whether `session` is the run's newest (True when run.json lists none, as in the
    folder of a machine other than 0, or when there is no session to compare)."""
    if not session:
        return True
    try:
        record = run.read_run()
    except (OSError, ValueError):
        return True
    listed = sessions_of(record)
    return not listed or listed[-1].get("id") == session


def last_logged_step(run: RunDirectory) -> int | None:
    try:
        lines = run.metrics.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    steps = [json.loads(line).get("step") for line in lines if line.strip()]
    steps = [s for s in steps if isinstance(s, int)]
    return max(steps) if steps else None


def settle_earlier(run: RunDirectory) -> None:
    """Before a resume (the lock taken, so no process of any earlier session lives): a
    last session still `running` ended without saying how; record it as `stale`, with
    the last step it logged and the newest complete checkpoint it left."""
    if not run.run_json.is_file():
        return
    record = run.read_run()
    listed = sessions_of(record)
    if not listed or listed[-1].get("status") != "running":
        return
    point = resume_point(run)
    listed[-1].update(
        status="stale",
        reason="its processes all ended without recording how (killed, or the machine stopped)",
        stopped_at=None,
        step=last_logged_step(run),
        last_checkpoint=point.checkpoint.name if point is not None else None,
    )
    run.write_run({**record, "sessions": listed, "status": "stale"})


def open_session(
    record: dict[str, Any], session: str, pid: int, host: str, resume: Any = None
) -> list[dict[str, Any]]:
    """`record`'s sessions with a new one, running from `resume` (a ResumePoint) or
    from the start."""
    entry = {
        "id": session,
        "started_at": now(),
        "host": host,
        "pid": pid,
        "from_checkpoint": resume.checkpoint.name if resume is not None else None,
        "from_step": resume.step if resume is not None else 0,
        "status": "running",
    }
    return [*sessions_of(record), entry]


def close_session(
    run: RunDirectory,
    session: str | None,
    status: str,
    reason: str | None,
    step: int | None,
    **fields: Any,
) -> dict[str, Any]:
    """Record how this session ended, in its entry and at the top of run.json (with
    `fields`), in one write; Superseded when a newer session owns the run."""
    if not is_current(run, session):
        raise Superseded(f"{run.path}: a newer session has started; this one stops unrecorded")
    record = run.read_run() if run.run_json.is_file() else {}
    listed = sessions_of(record)
    point = resume_point(run)
    if listed:
        listed[-1].update(
            status=status,
            reason=reason,
            stopped_at=now(),
            step=step,
            last_checkpoint=point.checkpoint.name if point is not None else None,
        )
    record.update(fields, status=status, sessions=listed)
    if not listed:
        record.pop("sessions")
    run.write_run(record)
    return record


def join_run(
    run: RunDirectory, log_file: Path, on_early_exit: Callable[[str], None] | None = None
) -> Lifeline:
    """What a training process does first (runner.train): hold its byte of the run lock
    for its whole life (runner.run.lock), check that its session is the run's newest,
    and watch its `recipe run` and launcher (runner.run.lifeline). A process of an older
    session exits here, having written nothing."""
    session = os.environ.get(SESSION)
    hold = LockFile(run.lock_file)
    if not hold.take_byte(training_byte(int(os.environ.get("LOCAL_RANK", "0")))) or (
        not is_current(run, session)
    ):
        print(
            f"{run.path}: another session of this run has started; this training process "
            f"(session {session}) stops without writing anything",
            file=sys.stderr,
        )
        sys.exit(SUPERSEDED_EXIT)
    lifeline = Lifeline.from_environment(log_file, on_early_exit)
    lifeline.held = hold  # the lock lives as long as the process
    return lifeline.start()
