"""The outcome of a run: final metrics for run.json, and the one-line summary."""

from __future__ import annotations

from typing import Any


def final_metrics(
    records: list[dict[str, Any]],
    result: Any,
    eval_metrics: dict[str, float],
    state: Any,
    seconds: float,
    cpu_seconds: float | None = None,
) -> dict[str, Any]:
    """Steps, tokens, time, tokens/s, first and final train loss, final eval loss.

    `train_cpu_seconds` (CPU time of this process in the training loop) makes runs on a
    shared CPU comparable where wall time is not."""
    losses = [r["loss"] for r in records if "loss" in r]
    tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    return {
        "steps": int(state.global_step),
        "epochs": state.epoch,
        "tokens": tokens,
        "train_seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "train_cpu_seconds": round(cpu_seconds, 2) if cpu_seconds is not None else None,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss_mean": result.training_loss if result is not None else None,
        "eval_loss": eval_metrics.get("eval_loss"),
    }


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_line(record: dict[str, Any]) -> str:
    """One line a user reads at the end of `recipe run`."""
    m = record.get("metrics") or {}
    parts = [
        f"{record.get('name', 'run')} {record.get('status', '?')}",
        f"{m.get('steps', 0)} steps",
        f"{m.get('tokens', 0):,} tokens",
        f"{_fmt(m.get('train_seconds'), '.1f')} s",
        f"{_fmt(m.get('tokens_per_second'), ',.0f')} tokens/s",
        f"train loss {_fmt(m.get('first_loss'))} -> {_fmt(m.get('final_loss'))}",
        f"eval loss {_fmt(m.get('eval_loss'))}",
    ]
    match = record.get("exact_match") or {}
    if match.get("after"):
        before = match["before"]["accuracy"] if match.get("before") else None
        parts.append(
            f"held-out exact match {_fmt(before, '.0%')} -> {_fmt(match['after']['accuracy'], '.0%')}"
        )
    parts.append(f"model in {record.get('model_path', '?')}")
    return "; ".join(parts)


def user_error_message(exc: BaseException) -> str | None:
    """A one-paragraph message for a failure the user can fix, or None for a bug.

    Data problems, a model or tokenizer that cannot be found, and running out of GPU
    memory are the user's to fix; anything else keeps its traceback.
    """
    from runner.data.sources import DataError

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, DataError):
        return str(exc)
    if type(exc).__name__ == "OutOfMemoryError":
        return (
            f"out of GPU memory ({first}); lower training.per_device_train_batch_size or "
            "training.max_length, turn on training.activation_checkpointing, or use lora/qlora "
            "(`recipe plan` estimates the memory a recipe needs)"
        )
    if isinstance(exc, OSError):
        return (
            f"cannot load the model or tokenizer: {first} (check model.id / model.tokenizer; "
            "offline, the model must be in the local Hugging Face cache or a local directory)"
        )
    return None
