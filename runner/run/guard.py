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
- **interrupted**: the first SIGINT/SIGTERM to a training process, the stop request
  `recipe run` writes on Ctrl-C, SIGTERM or a closed terminal (`<run>/.recipe-stop`,
  holding the signal's name), or the end of the process's `recipe run` or launcher
  (runner.run.lifeline) saves a checkpoint at the end of the current step and stops;
  `why` says which, in words, for run.json. A second signal exits at once, unless it
  comes within REPEAT_SECONDS of the first: that is the same stop asked twice (SLURM
  signals every process of a job, and torchrun's agent passes its own SIGTERM on).

On several processes the decision is all-reduced each step, so every rank stops at the
same step (a rank that stopped alone would hang the others). The same all-reduce tells
every rank when a newer session has started on the run (runner.run.session): they all
exit at once, before this step's log or checkpoint is written.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from typing import Any

from transformers import TrainerCallback

from runner.recipe.settings import Settings
from runner.run.directory import RunDirectory
from runner.run.lifeline import Lifeline
from runner.run.session import SUPERSEDED_EXIT, is_current

INTERRUPTED_EXIT = 130
DIVERGED_EXIT = 3
REPEAT_SECONDS = 2.0
# what interrupted a run, in rising order: the all-reduce keeps the strongest
SIGNALLED, ASKED, ORPHANED = 1, 2, 3
ASKED_BY = {
    "SIGINT": "Ctrl-C",
    "SIGTERM": "SIGTERM to `recipe run`",
    "SIGHUP": "the terminal closed (SIGHUP to `recipe run`)",
}
ELSEWHERE = {
    SIGNALLED: "a signal to another training process",
    ASKED: "a stop request to another training process",
    ORPHANED: "the `recipe run` or launcher of another training process ended",
}


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


class RunGuard(TrainerCallback):
    """Stops a run that diverged or was interrupted (see the module docstring)."""

    def __init__(
        self,
        run: RunDirectory,
        settings: Settings,
        first_loss: float | None = None,
        lifeline: Lifeline | None = None,
        session: str | None = None,
    ) -> None:
        divergence = settings.resolved["divergence"]
        self.run = run
        self.stop_file = run.stop_request
        self.lifeline = lifeline
        self.session = session  # this process's run session (None: not checked)
        self.why: str | None = None  # what interrupted it, in words
        self.patience = int(divergence["patience"])
        self.loss_spike = divergence["loss_spike"]
        self.first_loss = first_loss  # a resumed run keeps the first session's
        self.signals = 0
        self.bad_logs = 0
        self.divergence: str | None = None  # what was seen, until the step ends
        self.reason: str | None = None  # "diverged" | "interrupted", once stopped
        self.step: int | None = None
        self.signal_name: str | None = None
        self.first_signal = 0.0  # when the first signal came (time.monotonic)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signals and time.monotonic() - self.first_signal < REPEAT_SECONDS:
            return  # the same stop, from a second sender
        self.signals += 1
        if self.signals > 1:
            os._exit(INTERRUPTED_EXIT)  # the second one: at once, no checkpoint
        self.signal_name, self.first_signal = signal.Signals(signum).name, time.monotonic()
        if int(os.environ.get("RANK", "0")) == 0:
            with contextlib.suppress(OSError):  # a closed terminal fails the write
                print(
                    f"\n{self.signal_name}: saving a checkpoint at the end of this step, "
                    "then stopping (again to stop at once)",
                    file=sys.stderr,
                    flush=True,
                )

    def on_train_begin(self, args, state, control, **kwargs):
        if self.lifeline is not None:
            self.lifeline.training = True  # from now on, it stops after a checkpoint

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

    def _interrupt(self) -> tuple[int, str | None]:
        """What interrupts this process now (0: nothing), and in words."""
        # asked now too, not only through the watch thread, so the ranks of one machine
        # agree on the reason whichever of them polled first
        gone = self.lifeline is not None and (self.lifeline.gone or self.lifeline.check())
        if gone:
            return ORPHANED, gone
        if self.stop_file.exists():
            try:
                name = self.stop_file.read_text().strip()
            except OSError:
                name = ""
            if name == "SIGHUP" and self.lifeline is not None:
                self.lifeline.detach_screen()  # the terminal is gone
            return ASKED, ASKED_BY.get(name, "a stop request from `recipe run`")
        if self.signals:
            return SIGNALLED, f"{self.signal_name} to a training process"
        return 0, None

    def on_step_end(self, args, state, control, **kwargs):
        mine, why = self._interrupt()
        superseded = not is_current(self.run, self.session)
        interrupt, diverge, superseded = _most_on_every_rank(
            mine, self.divergence is not None, superseded
        )
        if superseded:  # a newer session owns the run: nothing more is written
            os._exit(SUPERSEDED_EXIT)
        if diverge:
            self.reason, self.step = "diverged", state.global_step
            self.divergence = self.divergence or "another process saw non-finite values"
            control.should_training_stop = True
            control.should_save = control.should_evaluate = False
        elif interrupt:
            self.reason, self.step = "interrupted", state.global_step
            if interrupt > mine:  # another rank saw it first; after the all-reduce, ask again
                mine, why = self._interrupt()
            self.why = why if interrupt == mine else ELSEWHERE[interrupt]
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


def _most_on_every_rank(*values: int) -> tuple[int, ...]:
    """Each value, the largest over all processes (all-reduced when distributed); for a
    flag, true when it is true on any process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tuple(int(v) for v in values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([float(v) for v in values], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tuple(int(v) for v in tensor.tolist())


def likely_causes(settings: Settings) -> list[str]:
    """What in the recipe most often makes a run diverge, in plain words."""
    from runner.recipe.learning_rate import unusual_learning_rate

    training = settings.training
    causes = []
    rate = training["learning_rate"]
    unusual = unusual_learning_rate(settings)  # the ranges lint warns from
    if unusual is not None and unusual.direction == "high":
        causes.append(
            f"learning_rate {rate:g} is far above the usual {unusual.usual} for "
            f"{settings.method} fine-tuning"
        )
    if training["fp16"]:
        causes.append("fp16 overflows easily; bf16 (on cards that have it) keeps fp32's range")
    if not training["max_grad_norm"]:
        causes.append("max_grad_norm 0 turns gradient clipping off")
    if not training["warmup_steps"]:
        causes.append("no warmup: the first steps take the full learning rate")
    return causes or [f"learning_rate {rate:g} may still be too high for this data; try a tenth"]
