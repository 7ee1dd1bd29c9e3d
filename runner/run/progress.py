"""What a person watches during a run: one live progress line.

    step 30/60 · loss 0.0412 · lr 8.6e-04 · 1,180 tokens/s · ETA 0:41 · eval loss 0.0371

On a terminal the line is rewritten in place after every optimizer step (the loss and
learning rate are the last logged ones); output that is not a terminal (CI, `| tee`, a
log file) gets one plain line per logging step and no carriage returns. It replaces the
Trainer's own progress bar and its raw `{'loss': ..., 'grad_norm': ...}` dicts, which
stay in metrics.jsonl (runner.run.metrics) and the TensorBoard logs. Only the main
process prints.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from transformers import TrainerCallback


class LiveProgress(TrainerCallback):
    """The progress line (see the module docstring), written to `stream` (stderr)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started: float | None = None  # at the first step: setup is not training
        self.stopped: float | None = None
        self.first_step = 0
        self.first_tokens = 0
        self.shown = ""
        self.ended = False  # the final evaluation logs after training ends
        self.values: dict[str, float] = {}

    def on_step_begin(self, args, state, control, **kwargs):
        if self.started is None:  # a resumed session times its own steps
            self.started = time.perf_counter()
            self.first_step = state.global_step
            self.first_tokens = int(state.num_input_tokens_seen or 0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.live and state.is_world_process_zero:
            self._show(self.line(state), final=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        for key in ("loss", "learning_rate", "eval_loss"):
            if isinstance(logs.get(key), int | float):
                self.values[key] = float(logs[key])
        if "loss" in logs or "eval_loss" in logs:
            self._show(self.line(state), final=self.ended or not self.live)

    def on_train_end(self, args, state, control, **kwargs):
        self.ended = True
        self.stopped = time.perf_counter()
        if self.live and self.shown and state.is_world_process_zero:
            self._show(self.line(state), final=True)

    def line(self, state: Any) -> str:
        """The progress line for the Trainer's state now."""
        parts = [f"step {state.global_step}/{state.max_steps}"]
        if "loss" in self.values:
            parts.append(f"loss {self.values['loss']:.4g}")
        if "learning_rate" in self.values:
            parts.append(f"lr {self.values['learning_rate']:.1e}")
        end = self.stopped if self.stopped is not None else time.perf_counter()
        elapsed = end - self.started if self.started is not None else 0.0
        steps = state.global_step - self.first_step
        tokens = int(state.num_input_tokens_seen or 0) - self.first_tokens
        if elapsed > 0 and tokens > 0:
            parts.append(f"{tokens / elapsed:,.0f} tokens/s")
        if steps > 0 and state.max_steps > state.global_step:
            parts.append(f"ETA {clock(elapsed / steps * (state.max_steps - state.global_step))}")
        if "eval_loss" in self.values:
            parts.append(f"eval loss {self.values['eval_loss']:.4g}")
        return " · ".join(parts)

    def _show(self, line: str, *, final: bool) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
            self.shown = "" if final else line
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
