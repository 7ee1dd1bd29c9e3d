"""The run directory (the recipe's output_dir): what a run writes, and where.

.recipe-run             the marker: written first, the only proof a folder is a run
.recipe-run.lock        the run lock: held by the run's `recipe run` and training processes
recipe.yaml             the recipe as given (byte for byte)
recipe.resolved.yaml    the resolved recipe (defaults, --set values, absolute paths)
run.json                provenance and outcome (see docs/run-directory.md)
metrics.jsonl           one JSON object per logged step
loss.png                train and eval loss against step
tensorboard/            TensorBoard events (when training.report_to has tensorboard)
base/                   a model.config recipe's random initial weights (+ tokenizer)
checkpoint-<step>/      Trainer checkpoints
final/                  the trained model (full) or adapter (LoRA/QLoRA) + tokenizer
export/                 GGUF files `recipe export` wrote, their Modelfiles, export.json
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.strict_json import strict_json

MARKER = ".recipe-run"
LOCK = ".recipe-run.lock"
RECIPE = "recipe.yaml"
RESOLVED = "recipe.resolved.yaml"
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
LOSS_PLOT = "loss.png"
TENSORBOARD = "tensorboard"
FINAL = "final"
BASE = "base"
EVAL_JSON = "eval.json"
EVAL_GENERATIONS = "eval-generations.jsonl"
MERGED = "merged"
EXPORT = "export"  # runner.after.export
# Everything the runner writes at the top of a run directory (checkpoint-<step>/ too).
# `--overwrite` deletes these and nothing else; a folder holding anything more is not
# the runner's to delete.
RUNNER_ENTRIES = frozenset(
    {
        MARKER,
        LOCK,
        RECIPE,
        RESOLVED,
        RUN_JSON,
        RUN_JSON + ".tmp",
        METRICS,
        LOSS_PLOT,
        TENSORBOARD,
        FINAL,
        BASE,
        BASE + ".partial",
        EVAL_JSON,
        EVAL_GENERATIONS,
        MERGED,
        MERGED + ".partial",
        EXPORT,
        ".recipe-stop",
        "template",  # the template text the run used (runner.run.template_copy)
        "logs",  # the libraries' full logs (runner.logs)
        "README.md",  # the model card the Trainer writes when it saves the model
        "accelerate.yaml",  # the run's accelerate config (runner.expand.engines)
        "deepspeed.json",  # its DeepSpeed config
        "prepared.json",  # where its prepared data is (runner.data.store)
        "prepared",  # that data, when prepared outside the cache (--no-cache)
    }
)
STATUSES = ("running", "succeeded", "failed", "diverged", "interrupted", "stale")
LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes")


class RunDirError(UserError):
    """The run directory cannot be used as asked; the message says what to do."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_node_folder(name: str) -> bool:
    """`.recipe-node-<rank>/`: what machine <rank> > 0 of a multi-machine run keeps."""
    return name.startswith(".recipe-node-")


def is_runner_entry(name: str) -> bool:
    """Whether a top-level name in a run directory is one the runner writes."""
    if name in RUNNER_ENTRIES or is_node_folder(name):
        return True
    name = name.removeprefix("incomplete-")
    return name.startswith("checkpoint-") and name.removeprefix("checkpoint-").isdigit()


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def this_host() -> str:
    return socket.gethostname()


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

    @property
    def stop_request(self) -> Path:
        """Written by `recipe run` on Ctrl-C: every training process stops at the next
        step boundary, after a checkpoint."""
        return self.path / ".recipe-stop"

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK

    def is_run(self) -> bool:
        """A folder is a run when, and only when, the runner's marker is in it."""
        return self.marker.is_file()

    def write_marker(self, version: str) -> None:
        """Mark the (new, empty) folder as a run directory of this runner."""
        import uuid

        record = {"runner": "recipe-runner", "version": version, "run_id": uuid.uuid4().hex}
        self.marker.write_text(strict_json({**record, "created_at": now()}) + "\n")

    def run_id(self) -> str | None:
        try:
            return json.loads(self.marker.read_text(encoding="utf-8")).get("run_id")
        except (OSError, ValueError):
            return None

    def foreign_entries(self) -> list[str]:
        """Top-level names in the folder that the runner did not write."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if not is_runner_entry(p.name))

    def keep_metrics_until(self, step: int) -> None:
        """Drop metrics.jsonl records after `step` (a resumed run logs them again)."""
        if not self.metrics.is_file():
            return
        lines = self.metrics.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line and json.loads(line).get("step", 0) <= step]
        self.metrics.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def read_run(self) -> dict[str, Any]:
        return json.loads(self.run_json.read_text(encoding="utf-8"))

    def status(self) -> str:
        """The run's status as it is now: run.json's, except `stale` for a run that says
        `running` while no process of it lives (killed, or the machine died): nothing
        holds its lock (runner.run.lock), or, without a lock file, its `recipe run`
        (`pid` on `host`) is gone. Not for a process that holds the lock."""
        from runner.run.lock import holder

        if not self.run_json.is_file():
            return "unknown"
        record = self.read_run()
        status = str(record.get("status", "unknown"))
        pid, host = record.get("pid"), record.get("host")
        if status != "running" or host not in (None, this_host()):
            return status  # another machine's run: it cannot be seen from here
        if self.lock_file.is_file():
            return status if holder(self.lock_file) is not None else "stale"
        return status if isinstance(pid, int) and process_alive(pid) else "stale"

    def write_run(self, record: dict[str, Any]) -> None:
        """Write run.json atomically (a crash never leaves half a file), as strict JSON."""
        tmp = self.run_json.with_suffix(".json.tmp")
        tmp.write_text(strict_json(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_json)

    def update_run(self, **fields: Any) -> dict[str, Any]:
        record = self.read_run() if self.run_json.is_file() else {}
        record.update(fields)
        self.write_run(record)
        return record

    def read_resolved(self) -> dict[str, Any]:
        """The run's recorded recipe, with defaults for keys added since it was recorded."""
        from runner.recipe.resolve import with_recipe_defaults
        from runner.recipe.yaml_dialect import round_trip_yaml, to_plain

        recorded = to_plain(round_trip_yaml().load(self.resolved.read_text(encoding="utf-8")))
        return with_recipe_defaults(recorded) if isinstance(recorded, dict) else recorded
