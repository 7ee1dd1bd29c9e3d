"""Checkpoints that are complete, or ignored.

The Trainer writes `checkpoint-<step>/` in place: model, optimizer, scheduler, RNG
state, then `trainer_state.json`. A process killed in the middle leaves a folder that
looks like a checkpoint but is not one. So when the Trainer reports a save done
(`on_save`), `CheckpointProgress` (runner.run.callbacks) writes `recipe-progress.json` into the checkpoint:
that file is the proof it is whole, and it carries what the record of a resumed run
needs (the training clock so far). `--resume` takes the newest checkpoint with it and
sets aside any newer, incomplete one (renamed `incomplete-checkpoint-<step>`, so the
Trainer's own rotation never counts it). No transformers import here: `recipe run` reads
checkpoints before anything heavy is loaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.run.directory import RunDirectory

PROGRESS = "recipe-progress.json"
INCOMPLETE = "incomplete-"


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / PROGRESS).is_file()


def progress_of(checkpoint: Path) -> dict[str, Any]:
    """What `CheckpointProgress` recorded at this checkpoint ({} when unreadable)."""
    try:
        return json.loads((checkpoint / PROGRESS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a resumed run continues from, and the incomplete ones set aside."""

    checkpoint: Path
    set_aside: tuple[str, ...] = ()

    @property
    def step(self) -> int:
        return step_of(self.checkpoint)


def resume_point(run: RunDirectory) -> ResumePoint | None:
    """The newest complete checkpoint, or None (nothing is moved)."""
    complete = [c for c in run.checkpoints() if is_complete(c)]
    return ResumePoint(complete[-1]) if complete else None


def set_aside_incomplete(run: RunDirectory, point: ResumePoint) -> ResumePoint:
    """Rename checkpoints newer than `point` that are not complete (they were being
    written when the run died); returns the point with their names."""
    moved = []
    for checkpoint in run.checkpoints():
        if step_of(checkpoint) > point.step and not is_complete(checkpoint):
            os.replace(checkpoint, checkpoint.with_name(INCOMPLETE + checkpoint.name))
            moved.append(checkpoint.name)
    return ResumePoint(point.checkpoint, tuple(moved))
