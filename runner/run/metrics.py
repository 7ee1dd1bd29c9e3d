"""Metrics of a run: every logged step to metrics.jsonl, and the loss plot."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from runner.strict_json import strict_json


class MetricsFileCallback(TrainerCallback):
    """Appends each `Trainer.log` call (train and eval) to metrics.jsonl, on rank 0."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(strict_json(record) + "\n")  # a non-finite loss is written as null


class TrainingClock(TrainerCallback):
    """Wall and CPU seconds of the training loop: from its first step to its end (what
    callbacks do when training begins, such as exact match, is not counted). A resumed
    run starts from the seconds its checkpoint recorded, so the total covers the run."""

    def __init__(self, seconds: float = 0.0, cpu_seconds: float = 0.0) -> None:
        self.earlier = (seconds, cpu_seconds)
        self.started: tuple[float, float] | None = None
        self.seconds, self.cpu_seconds = seconds, cpu_seconds

    def elapsed(self) -> tuple[float, float]:
        """(wall, CPU) seconds so far, earlier sessions included."""
        if self.started is None:
            return self.earlier
        return (
            self.earlier[0] + time.perf_counter() - self.started[0],
            self.earlier[1] + time.process_time() - self.started[1],
        )

    def on_step_begin(self, args, state, control, **kwargs):
        if self.started is None:
            self.started = (time.perf_counter(), time.process_time())

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds, self.cpu_seconds = self.elapsed()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def loss_curves(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) pairs of the train loss and the eval loss."""
    return {
        "train": [(r["step"], r["loss"]) for r in records if "loss" in r],
        "eval": [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r],
    }


def plot_loss(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Train and eval loss against step, as a PNG (matplotlib's Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = loss_curves(records)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for label, points in curves.items():
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if label == "eval" else None, label=f"{label} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if any(curves.values()):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
