"""What a run measured, for its record: steps, tokens, time and losses over the whole
run (a resumed run included: `final_metrics`), model FLOPs utilisation on a GPU
(`utilisation`, `gpu_peak_tflops`), and the peak memory beside the plan's figure for the
same thing (`memory_record`). Pure: runner.run.record writes what these compute.
"""

from __future__ import annotations

from typing import Any


def memory_record(plan: dict[str, Any] | None, meter: Any) -> dict[str, Any]:
    """Peak memory measured by every process (runner.run.metrics.RunMeter) beside the
    plan's figure for the same thing: on CUDA the peak `max_memory_reserved` against
    the plan's `reserved_bytes`; on the CPU the peak resident set size (the whole
    process) against `allocated_bytes` (the plan has no allocator or CUDA context
    there). `cap`: what --cap-memory did (None without it)."""
    cuda = meter.device.get("type") == "cuda"
    measured, planned = (
        ("max_memory_reserved", "reserved_bytes") if cuda else ("peak_rss", "allocated_bytes")
    )
    peaks = [p[measured] for p in meter.processes if p.get(measured) is not None]
    peak = max(peaks) if peaks else None
    plan_bytes = (plan or {}).get(planned)
    return {
        "device": meter.device,
        "processes": meter.processes,
        "measured": measured,
        "peak_bytes": peak,
        "plan_figure": planned,
        "plan_bytes": plan_bytes,
        "peak_over_plan": round(peak / plan_bytes, 3) if peak and plan_bytes else None,
        "cap": getattr(meter, "cap", None),
    }


def gpu_peak_tflops(device: dict[str, Any]) -> float | None:
    """Dense bf16 TFLOPS of the GPU a run trained on, from runner.recipe.hardware: the
    card whose model words appear in the device's name ("RTX 3090" in "NVIDIA GeForce
    RTX 3090"), the nearest in memory when several do (A100 40 GB or 80 GB); None for
    the CPU or a GPU not in the table."""
    import re

    from runner.recipe.hardware import CARDS

    if device.get("type") != "cuda" or not device.get("name"):
        return None
    words = " " + " ".join(re.split(r"[\s\-_]+", str(device["name"]).lower())) + " "
    gib = (device.get("memory_bytes") or 0) / 1024**3
    matches = [c for c in CARDS.values() if c.bf16_tflops and f" {card_model(c.label)} " in words]
    if not matches:
        return None
    return min(matches, key=lambda c: abs(c.memory_gib - gib)).bf16_tflops


def card_model(label: str) -> str:
    """The model words of a card's label: "NVIDIA GeForce RTX 3090 24 GB" -> "rtx 3090"."""
    words = [w for w in label.lower().split() if w not in ("nvidia", "geforce")]
    for index, word in enumerate(words):
        if word.isdigit() and index + 1 < len(words) and words[index + 1] == "gb":
            return " ".join(words[:index])
    return " ".join(words)


def utilisation(
    tokens: int,
    seconds: float,
    flops_per_token: float | None,
    processes: int,
    peak_tflops: float | None,
) -> float | None:
    """Model FLOPs utilisation: the FLOPs the trained (non-padding) tokens needed per
    second, over every process's GPU peak."""
    if not (tokens and seconds > 0 and flops_per_token and peak_tflops):
        return None
    return tokens * flops_per_token / (seconds * max(processes, 1) * peak_tflops * 1e12)


def train_loss_mean(
    records: list[dict[str, Any]], result: Any, steps: int, resumed_from: int | None
) -> float | None:
    """The mean training loss over the whole run. The Trainer's own covers only the
    steps this session trained, so a resumed run adds the logged losses (each the mean
    over its logging interval) up to the step it resumed from."""
    mean = result.training_loss if result is not None else None
    if mean is None or resumed_from is None or steps <= 0:
        return mean
    before, covered, previous = 0.0, 0, 0
    for record in records:
        step, loss = record.get("step", 0), record.get("loss")
        if step > resumed_from:
            break
        if isinstance(loss, float):
            before += loss * (step - previous)
            covered += step - previous
            previous = step
    after = mean * (steps - resumed_from)  # the Trainer's mean is over this session's steps
    return (before + after) / (covered + steps - resumed_from)


def final_metrics(
    records: list[dict[str, Any]],
    result: Any,
    eval_metrics: dict[str, float],
    state: Any,
    seconds: float,
    cpu_seconds: float | None = None,
    resumed_from: int | None = None,
    slots: int | None = None,
    mfu: float | None = None,
) -> dict[str, Any]:
    """Steps, tokens, time, tokens/s, first and final train loss, final eval loss, over
    the whole run (a resumed run included).

    `tokens` are the real (non-padding) input tokens; `token_slots` every position the
    forwards computed, padding included, so `padding_share` is the part spent on
    padding. `train_cpu_seconds` (CPU time of this process in the training loop) makes
    runs on a shared CPU comparable where wall time is not; `mfu` is model FLOPs
    utilisation on a GPU (None on the CPU)."""
    losses = [r["loss"] for r in records if "loss" in r]
    tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    padding = round(1 - tokens / slots, 4) if slots and tokens <= slots else None
    return {
        "steps": int(state.global_step),
        "epochs": state.epoch,
        "tokens": tokens,
        "train_seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "token_slots": slots,
        "padding_share": padding,
        "mfu": round(mfu, 4) if mfu is not None else None,
        "train_cpu_seconds": round(cpu_seconds, 2) if cpu_seconds is not None else None,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss_mean": train_loss_mean(records, result, int(state.global_step), resumed_from),
        "eval_loss": eval_metrics.get("eval_loss"),
    }
