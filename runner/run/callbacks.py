"""The Trainer callbacks of a run, each a plain transformers TrainerCallback in sight:
metrics.jsonl, the training clock, held-out exact match, early stopping."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runner.data.prepare import TrainingData
from runner.recipe.settings import Settings
from runner.run.directory import RunDirectory
from runner.run.metrics import MetricsFileCallback, TrainingClock


@dataclass
class RunCallbacks:
    """The callbacks SFTTrainer gets, by name (the run record reads the clock and the
    exact-match results from them)."""

    metrics: MetricsFileCallback
    clock: TrainingClock
    exact_match: Any | None = None  # runner.after.exact_match.ExactMatchCallback
    early_stopping: Any | None = None  # transformers.EarlyStoppingCallback

    def __iter__(self) -> Iterator[Any]:
        # The clock comes before exact match, so the clock stops before it measures.
        for callback in (self.metrics, self.clock, self.exact_match, self.early_stopping):
            if callback is not None:
                yield callback


def run_callbacks(
    settings: Settings, run: RunDirectory, tokenizer: Any, data: TrainingData
) -> RunCallbacks:
    """The callbacks a recipe asks for."""
    callbacks = RunCallbacks(MetricsFileCallback(run.metrics), TrainingClock())
    if settings.exact_match is not None:
        from runner.after.exact_match import ExactMatchCallback

        earlier = (run.read_run().get("exact_match") or {}) if run.run_json.is_file() else {}
        callbacks.exact_match = ExactMatchCallback(
            settings, tokenizer, data.examples.eval, before=earlier.get("before")
        )
    if settings.early_stopping is not None:
        from transformers import EarlyStoppingCallback

        stop = settings.early_stopping
        callbacks.early_stopping = EarlyStoppingCallback(stop["patience"], stop["threshold"])
    return callbacks
