"""The run directory (the recipe's output_dir): what a run writes, and where.

recipe.yaml             the recipe as given (byte for byte)
recipe.resolved.yaml    the resolved recipe (defaults, --set values, absolute paths)
run.json                provenance and outcome (see docs/run-directory.md)
metrics.jsonl           one JSON object per logged step
loss.png                train and eval loss against step
tensorboard/            TensorBoard events (when training.report_to has tensorboard)
base/                   a model.config recipe's random initial weights (+ tokenizer)
checkpoint-<step>/      Trainer checkpoints
final/                  the trained model (full) or adapter (LoRA/QLoRA) + tokenizer
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner.errors import UserError

RECIPE = "recipe.yaml"
RESOLVED = "recipe.resolved.yaml"
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
LOSS_PLOT = "loss.png"
TENSORBOARD = "tensorboard"
FINAL = "final"
BASE = "base"
LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes")


class RunDirError(UserError):
    """The run directory cannot be used as asked; the message says what to do."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a run depends on (no import needed)."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for name in ("recipe-runner", *LIBRARIES):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass(frozen=True)
class RunDirectory:
    """Paths inside one run directory, and the few writes the runner makes there."""

    path: Path

    @property
    def recipe(self) -> Path:
        return self.path / RECIPE

    @property
    def resolved(self) -> Path:
        return self.path / RESOLVED

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def loss_plot(self) -> Path:
        return self.path / LOSS_PLOT

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def final(self) -> Path:
        """Where the trained model or adapter and its tokenizer are saved."""
        return self.path / FINAL

    @property
    def base(self) -> Path:
        """A model.config recipe's random initial weights, saved before training."""
        return self.path / BASE

    def checkpoints(self) -> list[Path]:
        """Checkpoints, oldest first."""
        found = [p for p in self.path.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
        return sorted(found, key=lambda p: int(p.name.split("-")[-1]))

    def is_run(self) -> bool:
        return self.run_json.is_file() or self.resolved.is_file()

    def read_run(self) -> dict[str, Any]:
        return json.loads(self.run_json.read_text(encoding="utf-8"))

    def write_run(self, record: dict[str, Any]) -> None:
        """Write run.json atomically (a crash never leaves half a file)."""
        tmp = self.run_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_json)

    def update_run(self, **fields: Any) -> dict[str, Any]:
        record = self.read_run() if self.run_json.is_file() else {}
        record.update(fields)
        self.write_run(record)
        return record

    def read_resolved(self) -> dict[str, Any]:
        from runner.recipe.load import round_trip_yaml, to_plain

        return to_plain(round_trip_yaml().load(self.resolved.read_text(encoding="utf-8")))


def prepare_run_dir(path: Path, *, overwrite: bool, resume: bool) -> RunDirectory:
    """Check the output directory can take this run, and create it.

    A non-empty directory is refused, unless `resume` (it must hold a checkpoint of an
    earlier run) or `overwrite` (it must be an earlier run directory, which is removed;
    any other non-empty folder is never deleted).
    """
    run = RunDirectory(path)
    busy = path.exists() and (not path.is_dir() or any(path.iterdir()))
    if resume:
        if not run.checkpoints():
            raise RunDirError(
                f"{path}: no checkpoint to resume from (checkpoints are saved per "
                "training.save_strategy; run without --resume to start afresh)"
            )
        return run
    if busy and not overwrite:
        raise RunDirError(
            f"{path} exists and is not empty; refusing to overwrite it "
            "(pass --overwrite to replace an earlier run, --resume to continue it, "
            "or choose another output_dir with --set output_dir=...)"
        )
    if busy:
        if not run.is_run():
            raise RunDirError(
                f"{path} is not a run directory (no run.json); --overwrite only replaces "
                "earlier runs (empty it yourself or choose another output_dir)"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return run
