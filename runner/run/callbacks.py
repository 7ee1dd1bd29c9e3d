"""The Trainer callbacks of a run, each a plain transformers TrainerCallback in sight:
metrics.jsonl, the training clock, what the run measures of itself (peak memory, token
slots), the guard (divergence, interrupts), checkpoint completeness, the progress line
on the screen, held-out exact match, early stopping."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from runner.data.rows import TrainingData
from runner.recipe.settings import Settings
from runner.run.checkpoints import PROGRESS, progress_of, step_of
from runner.run.directory import RunDirectory
from runner.run.guard import RunGuard
from runner.run.metrics import MetricsFileCallback, RunMeter, TrainingClock
from runner.run.progress import LiveProgress
from runner.strict_json import strict_json


class CheckpointProgress(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has saved all of it (main
    process), with the training clock so far (runner.run.checkpoints)."""

    def __init__(self, run: RunDirectory, clock: Any, meter: Any = None) -> None:
        self.run = run
        self.clock = clock
        self.meter = meter  # runs before this one: its token slots are summed at each save

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            seconds, cpu_seconds = self.clock.elapsed()
            record = {"step": state.global_step, "seconds": seconds, "cpu_seconds": cpu_seconds}
            if self.meter is not None:
                record["token_slots"] = self.meter.slots
            (checkpoint / PROGRESS).write_text(strict_json(record) + "\n", encoding="utf-8")


@dataclass
class RunCallbacks:
    """The callbacks SFTTrainer gets, by name (the run record reads the clock, the guard
    and the exact-match results from them)."""

    metrics: MetricsFileCallback
    clock: TrainingClock
    meter: RunMeter
    guard: RunGuard
    progress: CheckpointProgress
    screen: LiveProgress
    exact_match: Any | None = None  # runner.run.exact_match.ExactMatchCallback
    early_stopping: Any | None = None  # transformers.EarlyStoppingCallback
    resumed_from: int | None = None  # the step of the checkpoint this session resumed

    def __iter__(self) -> Iterator[Any]:
        # The clock comes before exact match, so the clock stops before it measures;
        # the meter before the checkpoint progress, which records its token slots.
        for callback in (
            self.metrics,
            self.clock,
            self.meter,
            self.guard,
            self.progress,
            self.screen,
            self.exact_match,
            self.early_stopping,
        ):
            if callback is not None:
                yield callback


def first_logged_loss(run: RunDirectory) -> float | None:
    from runner.run.metrics import read_metrics

    return next((r["loss"] for r in read_metrics(run.metrics) if "loss" in r), None)


def run_callbacks(
    settings: Settings,
    run: RunDirectory,
    tokenizer: Any,
    data: TrainingData,
    resume: Path | None = None,
    memory_cap: Any = None,
    lifeline: Any = None,
) -> RunCallbacks:
    """The callbacks a recipe asks for (`resume`: the checkpoint this session resumes;
    `memory_cap`: what --cap-memory did, runner.run.memory_cap.MemoryCap; `lifeline`:
    this process's watch on its `recipe run`, and its run session, which the guard
    reads, runner.run.lifeline)."""
    earlier = progress_of(resume) if resume is not None else {}
    clock = TrainingClock(earlier.get("seconds") or 0.0, earlier.get("cpu_seconds") or 0.0)
    meter = RunMeter(
        int(earlier.get("token_slots") or 0),
        cap=memory_cap.record() if memory_cap is not None else None,
    )
    callbacks = RunCallbacks(
        MetricsFileCallback(run.metrics),
        clock,
        meter,
        RunGuard(
            run,
            settings,
            first_logged_loss(run) if resume is not None else None,
            lifeline=lifeline,
            session=lifeline.session if lifeline is not None else None,
        ),
        CheckpointProgress(run, clock, meter),
        LiveProgress(),
        resumed_from=step_of(resume) if resume is not None else None,
    )
    if settings.exact_match is not None:
        from runner.run.exact_match import ExactMatchCallback

        measured = (run.read_run().get("exact_match") or {}) if resume is not None else {}
        callbacks.exact_match = ExactMatchCallback(
            settings,
            tokenizer,
            data.examples.eval,
            before=measured.get("before"),  # a resumed run keeps the untrained model's score
            keep=lambda before: run.update_run(exact_match={"before": before, "after": None}),
        )
    if settings.early_stopping is not None:
        from transformers import EarlyStoppingCallback

        stop = settings.early_stopping
        callbacks.early_stopping = EarlyStoppingCallback(stop["patience"], stop["threshold"])
    return callbacks
