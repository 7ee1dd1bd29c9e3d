"""Stopping a run early, on every process at the same step: divergence and interrupts.

`RunGuard` is a TrainerCallback that ends training for one of two reasons:

- **diverged**: the trainable weights are no longer finite after an optimizer step (what
  a NaN or infinite loss or gradient does to them; there is no way back), or the logged
  loss or gradient norm has been non-finite `divergence.patience` logs in a row (an
  fp16 overflow that skips steps recovers; one that keeps going does not), or a logged
  loss exceeds `divergence.loss_spike` times the first one (the untrained model's: a
  run that learns never goes there; one whose loss jumps to millions and then sits at
  the uniform-guess loss has blown up even though every number stays finite). No
  checkpoint is written after that point, so the last one saved is good.
- **interrupted**: the first SIGINT/SIGTERM to a training process, or the stop request
  `recipe run` writes on Ctrl-C (`<run>/.recipe-stop`), saves a checkpoint at the end of
  the current step and stops; a second signal exits at once.

On several processes the decision is all-reduced each step, so every rank stops at the
same step (a rank that stopped alone would hang the others).
"""

from __future__ import annotations

import math
import os
import signal
import sys
from typing import Any

from transformers import TrainerCallback

from runner.recipe.settings import Settings
from runner.run.directory import RunDirectory

INTERRUPTED_EXIT = 130
DIVERGED_EXIT = 3


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


class RunGuard(TrainerCallback):
    """Stops a run that diverged or was interrupted (see the module docstring)."""

    def __init__(
        self, run: RunDirectory, settings: Settings, first_loss: float | None = None
    ) -> None:
        divergence = settings.resolved["divergence"]
        self.stop_file = run.stop_request
        self.patience = int(divergence["patience"])
        self.loss_spike = divergence.get("loss_spike")
        self.first_loss = first_loss  # a resumed run keeps the first session's
        self.signals = 0
        self.bad_logs = 0
        self.divergence: str | None = None  # what was seen, until the step ends
        self.reason: str | None = None  # "diverged" | "interrupted", once stopped
        self.step: int | None = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signals > 1:
            os._exit(INTERRUPTED_EXIT)  # the second one: at once, no checkpoint
        if int(os.environ.get("RANK", "0")) == 0:
            print(
                f"\n{signal.Signals(signum).name}: saving a checkpoint at the end of this step, "
                "then stopping (again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.divergence is None and model is not None and not _weights_finite(model):
            self.divergence = f"non-finite weights after optimizer step {state.global_step + 1}"

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._check_log(state, logs or {})
        if self.divergence is not None:
            control.should_save = False  # the save that follows this log would keep it
        return control

    def _check_log(self, state, logs: dict[str, Any]) -> None:
        if "loss" not in logs and "grad_norm" not in logs:
            return  # an evaluation or the end-of-training summary
        loss, grad_norm = logs.get("loss"), logs.get("grad_norm")
        if not (_finite(loss) and _finite(grad_norm)):
            self.bad_logs += 1
            if self.bad_logs >= self.patience and self.divergence is None:
                self.divergence = (
                    f"loss {loss}, gradient norm {grad_norm} at step {state.global_step} "
                    f"({self.bad_logs} logs in a row)"
                )
            return
        self.bad_logs = 0
        if not isinstance(loss, float):
            return
        if self.first_loss is None:
            self.first_loss = loss
        elif self.loss_spike and loss > self.loss_spike * self.first_loss:
            self.divergence = self.divergence or (
                f"loss {loss:.4g} at step {state.global_step} is over {self.loss_spike:g} "
                f"times the first logged loss ({self.first_loss:.4g})"
            )

    def on_step_end(self, args, state, control, **kwargs):
        interrupt = self.signals > 0 or self.stop_file.exists()
        interrupt, diverge = _on_every_rank(interrupt, self.divergence is not None)
        if diverge:
            self.reason, self.step = "diverged", state.global_step
            self.divergence = self.divergence or "another process saw non-finite values"
            control.should_training_stop = True
            control.should_save = control.should_evaluate = False
        elif interrupt:
            self.reason, self.step = "interrupted", state.global_step
            control.should_save = control.should_training_stop = True
        return control


def _weights_finite(model: Any) -> bool:
    """Whether every trainable weight is finite: one float32 sum per tensor (a NaN or an
    infinity anywhere makes its sum non-finite), ten times cheaper than an element-wise
    `isfinite` over every weight. Only weights past 1e38 could overflow the sum, and
    those have diverged too."""
    import torch

    with torch.no_grad():
        sums = [p.sum(dtype=torch.float32) for p in model.parameters() if p.requires_grad]
        return bool(torch.stack(sums).isfinite().all()) if sums else True


def _on_every_rank(*flags: bool) -> tuple[bool, ...]:
    """Each flag, true when it is true on any process (all-reduced when distributed)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flags
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    values = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in values.tolist())


def likely_causes(settings: Settings) -> list[str]:
    """What in the recipe most often makes a run diverge, in plain words."""
    from runner.lint.rules.learning_rate import USUAL_RANGES

    training = settings.training
    causes = []
    _, high, usual = USUAL_RANGES[settings.method]
    rate = training["learning_rate"]
    if rate > high:
        causes.append(
            f"learning_rate {rate:g} is far above the usual {usual} for {settings.method} "
            "fine-tuning"
        )
    if training["fp16"]:
        causes.append("fp16 overflows easily; bf16 (on cards that have it) keeps fp32's range")
    if not training["max_grad_norm"]:
        causes.append("max_grad_norm 0 turns gradient clipping off")
    if not training["warmup_steps"]:
        causes.append("no warmup: the first steps take the full learning rate")
    return causes or [f"learning_rate {rate:g} may still be too high for this data; try a tenth"]
