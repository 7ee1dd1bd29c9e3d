"""Metrics of a run: every logged step to metrics.jsonl, the training clock, what the run
measures of itself (peak memory per process, token slots for the padding share, the GPU
for model FLOPs utilisation), and the loss plot."""

from __future__ import annotations

import json
import resource
import sys
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


class RunMeter(TrainerCallback):
    """What a run measures of itself, on every process:

    - token slots: the input positions every training forward computes (padding
      included), counted by a forward pre-hook on the input embeddings (shapes only: no
      device sync); with the Trainer's non-padding token count they give the padding
      share. Summed over processes at each save (a resumed run starts from its
      checkpoint's count) and at the end of training.
    - peak memory of each process at the end of training: on CUDA
      `torch.cuda.max_memory_allocated` and `max_memory_reserved`, on the CPU the peak
      resident set size (`ru_maxrss`: the whole process, Python and the libraries
      included); gathered to every process.
    - the GPU's name and memory, for model FLOPs utilisation against its peak.
    - `cap`: what `recipe run --cap-memory` did (runner.run.memory_cap), kept for the
      record; None without it.
    """

    def __init__(self, earlier_slots: int = 0, cap: dict[str, Any] | None = None) -> None:
        self.earlier_slots = earlier_slots
        self.cap = cap
        self.local_slots = 0  # this process, this session
        self.slots = earlier_slots  # all processes, whole run, as of the last sum
        self.processes: list[dict[str, Any]] = []
        self.device: dict[str, Any] = {"type": "cpu"}
        self._hook: Any = None

    def _count(self, module: Any, args: tuple[Any, ...]) -> None:
        if module.training and args and hasattr(args[0], "numel"):
            self.local_slots += args[0].numel()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and self._hook is None:
            embeddings = model.get_input_embeddings()
            self._hook = embeddings.register_forward_pre_hook(self._count)

    def on_save(self, args, state, control, **kwargs):
        self.slots = self.earlier_slots + _sum_over_processes(self.local_slots)

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.slots = self.earlier_slots + _sum_over_processes(self.local_slots)
        self.device = device_of(args.device)
        self.processes = _gather_over_processes(process_peak_memory(args.device))


def device_of(device: Any) -> dict[str, Any]:
    """The device a process trained on: its type, and for a GPU its name and memory."""
    if getattr(device, "type", "cpu") != "cuda":
        return {"type": "cpu"}
    import torch

    properties = torch.cuda.get_device_properties(device)
    return {"type": "cuda", "name": properties.name, "memory_bytes": properties.total_memory}


def process_peak_memory(device: Any) -> dict[str, Any]:
    """This process's peak memory so far (see RunMeter)."""
    import os

    rank = int(os.environ.get("RANK", "0"))
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        return {
            "rank": rank,
            "max_memory_allocated": torch.cuda.max_memory_allocated(device),
            "max_memory_reserved": torch.cuda.max_memory_reserved(device),
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rank": rank, "peak_rss": rss if sys.platform == "darwin" else rss * 1024}


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _sum_over_processes(value: int) -> int:
    if not _distributed():
        return value
    import torch
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total.item())


def _gather_over_processes(record: dict[str, Any]) -> list[dict[str, Any]]:
    if not _distributed():
        return [record]
    import torch.distributed as dist

    records: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(records, record)
    return sorted(records, key=lambda r: r["rank"])


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
    """Train and eval loss against step, as a PNG (matplotlib's Agg backend, no display).
    The plot is a convenience: without matplotlib it is left out with a warning, and the
    run's record stands (metrics.jsonl holds the same numbers)."""
    try:
        import matplotlib
    except ImportError:
        import sys

        print(
            f"warning: {path.name} not drawn: matplotlib is not installed (pip install "
            f"matplotlib); {path.parent / 'metrics.jsonl'} has the losses",
            file=sys.stderr,
        )
        return

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
