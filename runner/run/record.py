"""A run's record in run.json: what it was made from, how it ended, and the summary line.

`record_start` (by `recipe run`, before launch: a new session, runner.run.session),
`record_success` / `record_stop` / `record_early_stop` (by the training process's main
rank: succeeded, or diverged / interrupted, each closing its session), `final_metrics`,
`summary_line`, and `translate_error` for the library failures a user can fix. run.json
is strict JSON: a non-finite number is written as null.
"""

from __future__ import annotations

from typing import Any

from runner.errors import UserError
from runner.run.provenance import start_provenance


def record_start(
    run: Any,
    checked: Any,
    argv: list[str],
    prepared: Any,
    overrides: tuple[str, ...],
    resume: Any = None,
    session: str = "",
) -> None:
    """Write the recipe as given and resolved, and run.json with its provenance, before
    training starts: `session` opens in its `sessions` (on resume: from the checkpoint,
    earlier fields and sessions kept, the last stop cleared)."""
    import os

    from runner.recipe.yaml_dialect import dump_yaml
    from runner.run.directory import library_versions, now, this_host
    from runner.run.resume import session_data
    from runner.run.session import open_session

    recipe, settings = checked.recipe, checked.settings
    if not run.recipe.is_file():
        run.recipe.write_text(recipe.text, encoding="utf-8")
    run.resolved.write_text(dump_yaml(settings.resolved), encoding="utf-8")
    resolved = settings.resolved
    earlier = run.read_run() if resume is not None and run.run_json.is_file() else {}
    data = session_data(earlier, prepared.record.get("sources") or [])  # what this session reads
    sessions = open_session(earlier, session, os.getpid(), this_host(), resume, **data)
    run.update_run(
        name=settings.name,
        revision=resolved["revision"],
        description=resolved.get("description"),
        recipe_path=str(recipe.path.resolve()),
        content_hash=f"sha256:{recipe.content_hash}",
        schema_version=resolved.get("schema_version"),
        overrides=list(overrides),
        method=settings.method,
        model=settings.model.get("id") or "model.config (random weights)",
        versions=library_versions(),
        **start_provenance(run.path, settings),  # runner version, lock hash, template copy
        command=argv,
        started_at=earlier.get("started_at") or now(),
        finished_at=None,
        status="running",
        pid=os.getpid(),
        host=this_host(),
        rows=prepared.rows,
        data_cache=prepared.pointer(prepared.seconds),
        plan=plan_record(checked),
        sessions=sessions,
        stopped=None,
        error=None,
        exit_code=None,
    )


def plan_record(checked: Any) -> dict[str, Any]:
    """The memory plan `recipe plan` makes for this exact recipe (its card, the same
    --set arguments): the figures `recipe plan --format json` prints, and the FLOPs per
    trained token model FLOPs utilisation is counted with."""
    from runner.plan.throughput import flops_per_token

    plan = checked.plan_or_error  # the plan the check made (runner.check)
    if plan is None or isinstance(plan, Exception):
        return {"error": str(plan) if plan is not None else "no plan"}
    estimate = plan.estimate
    return {
        "card": plan.card.name if plan.card else None,
        "verdict": plan.verdict,
        "peak_phase": estimate.phase,
        "total_bytes": estimate.total,
        "reserved_bytes": estimate.reserved,
        "allocated_bytes": estimate.allocated,
        "flops_per_token": flops_per_token(plan.arch, plan.setup),
    }


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


def record_baseline(run: Any, trainer: Any) -> None:
    """The held-out loss of the model before it trains (step 0), kept in run.json's
    `eval_before` so the summary can say what training changed. One evaluation pass
    (when: Settings.eval_before)."""
    before = trainer.evaluate(metric_key_prefix="before")
    if trainer.is_world_process_zero():
        run.update_run(eval_before={"loss": before.get("before_loss"), "step": 0})


def final_evaluation(trainer: Any, settings: Any) -> dict[str, float]:
    """The held-out metrics of the trained model (when: Settings.eval_after). The Trainer
    already evaluates at the last step under a steps (or epoch) eval_strategy; that
    evaluation is the final model's, so it is not run twice - unless
    load_best_model_at_end put other weights in place since."""
    state = trainer.state
    last = next((e for e in reversed(state.log_history) if "eval_loss" in e), None)
    best = settings.training["load_best_model_at_end"] is True
    if last is not None and last.get("step") == state.global_step and not best:
        return {k: v for k, v in last.items() if k.startswith("eval_")}
    return trainer.evaluate()


def record_success(
    run: Any,
    settings: Any,
    trainer: Any,
    result: Any,
    eval_metrics: dict[str, float],
    data: Any,
    callbacks: Any,
) -> None:
    """Mark the run succeeded in run.json with its final metrics, and plot its loss
    (main process only)."""
    from runner.run.directory import now
    from runner.run.metrics import plot_loss, read_metrics
    from runner.run.session import close_session

    records = read_metrics(run.metrics)
    plot_loss(records, run.loss_plot, title=settings.name)
    clock, meter = callbacks.clock, callbacks.meter
    plan = run.read_run().get("plan")
    examples = data.examples
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    mfu = utilisation(
        tokens,
        clock.seconds,
        (plan or {}).get("flops_per_token"),
        len(meter.processes),
        gpu_peak_tflops(meter.device),
    )
    close_session(
        run,
        callbacks.guard.session,
        "succeeded",
        None,
        int(trainer.state.global_step),
        finished_at=now(),
        metrics=final_metrics(
            records,
            result,
            eval_metrics,
            trainer.state,
            clock.seconds,
            clock.cpu_seconds,
            callbacks.resumed_from,
            slots=meter.slots,
            mfu=mfu,
        ),
        memory=memory_record(plan, meter),
        exact_match=callbacks.exact_match.record() if callbacks.exact_match else None,
        data={
            "shape": examples.shape,
            "skipped_rows": examples.skipped,
            "sources": examples.fingerprints,
        },
        model_path=str(run.final),
        end_of_turn_token=data.end_of_turn,
        pad_token=trainer.processing_class.pad_token,
    )


def resume_command(record: dict[str, Any]) -> str:
    """The command that continues a run from its newest complete checkpoint."""
    import shlex

    sets = [part for value in record.get("overrides") or [] for part in ("--set", value)]
    return shlex.join(["recipe", "run", str(record.get("recipe_path")), *sets, "--resume"])


def record_stop(run: Any, settings: Any, trainer: Any, callbacks: Any) -> int:
    """Record a run the guard stopped (diverged or interrupted); its exit code."""
    from runner.run.directory import now
    from runner.run.guard import DIVERGED_EXIT, INTERRUPTED_EXIT, likely_causes
    from runner.run.metrics import plot_loss, read_metrics
    from runner.run.session import close_session

    guard = callbacks.guard
    plot_loss(read_metrics(run.metrics), run.loss_plot, title=settings.name)
    stopped = stop_record(run, guard.step, guard.why)
    if guard.reason == "diverged":
        stopped.update(seen=guard.divergence, likely_causes=likely_causes(settings))
        stopped.pop("resume")
    memory = memory_record(run.read_run().get("plan"), callbacks.meter)
    close_session(
        run,
        guard.session,
        guard.reason,
        guard.why if guard.reason == "interrupted" else guard.divergence,
        guard.step,
        finished_at=now(),
        stopped=stopped,
        memory=memory,
    )
    return DIVERGED_EXIT if guard.reason == "diverged" else INTERRUPTED_EXIT


def stop_record(run: Any, step: int | None, reason: str | None) -> dict[str, Any]:
    """run.json's `stopped` for a run that stopped early: the step, why, the newest
    complete checkpoint and the command that continues from it."""
    from runner.run.checkpoints import resume_point

    point = resume_point(run)
    return {
        "step": step,
        "reason": reason,
        "last_good_checkpoint": str(point.checkpoint) if point else None,
        "resume": resume_command(run.read_run()),
    }


def record_early_stop(run: Any, session: str | None, reason: str, resume: Any = None) -> None:
    """Record a session whose `recipe run` ended before training began (nothing to
    save): interrupted at the step it would have started from."""
    from runner.run.checkpoints import step_of
    from runner.run.directory import now
    from runner.run.session import close_session

    step = step_of(resume) if resume is not None else 0
    why = f"{reason} before training began"
    stopped = stop_record(run, step, why)
    close_session(run, session, "interrupted", why, step, finished_at=now(), stopped=stopped)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_line(record: dict[str, Any]) -> str:
    """One line a user reads at the end of `recipe run`."""
    m = record.get("metrics") or {}
    parts = [
        f"{record.get('name', 'run')} {record.get('status', '?')}",
        f"{m.get('steps', 0)} steps",
        *rows_phrase(record.get("rows") or {}),
        f"{m.get('tokens', 0):,} tokens",
        f"{_fmt(m.get('train_seconds'), '.1f')} s",
        f"{_fmt(m.get('tokens_per_second'), ',.0f')} tokens/s",
        f"train loss {_fmt(m.get('first_loss'))} -> {_fmt(m.get('final_loss'))}",
        eval_phrase(record),
    ]
    if m.get("padding_share") is not None:
        parts.append(f"padding {m['padding_share']:.0%}")
    if m.get("mfu") is not None:
        parts.append(f"MFU {m['mfu']:.0%}")
    memory = record.get("memory") or {}
    if memory.get("peak_bytes"):
        parts.append(memory_phrase(memory))
    match = record.get("exact_match") or {}
    if match.get("after"):
        before = match["before"]["accuracy"] if match.get("before") else None
        parts.append(
            f"held-out exact match {_fmt(before, '.0%')} -> {_fmt(match['after']['accuracy'], '.0%')}"
        )
    parts.append(f"model in {record.get('model_path', '?')}")
    return "; ".join(parts)


def rows_phrase(rows: dict[str, Any]) -> list[str]:
    """[`48 rows trained (16 dropped)`]: the rows the run trained on, never the rows read
    ([] for a run.json without them)."""
    if "train" not in rows:
        return []
    others = [f"{rows[k]} {k}" for k in ("dropped", "cut") if rows.get(k)]
    return [f"{rows['train']} rows trained" + (f" ({', '.join(others)})" if others else "")]


def eval_phrase(record: dict[str, Any]) -> str:
    """`eval loss 2.3145 -> 0.0412`: held-out loss before training (when measured) and
    after."""
    after = (record.get("metrics") or {}).get("eval_loss")
    before = (record.get("eval_before") or {}).get("loss")
    if before is None:
        return f"eval loss {_fmt(after)}"
    return f"eval loss {_fmt(before)} -> {_fmt(after)}"


def memory_phrase(memory: dict[str, Any]) -> str:
    """`peak 11.2 GiB (plan 11.9 GiB)`: the measured peak beside the plan's figure for the
    same thing (reserved on CUDA; on the CPU the process's peak RSS, said so)."""
    gib = 1024**3
    what = "" if memory.get("measured") == "max_memory_reserved" else " RSS"
    phrase = f"peak {memory['peak_bytes'] / gib:.1f} GiB{what}"
    if memory.get("plan_bytes"):
        phrase += f" (plan {memory['plan_bytes'] / gib:.1f} GiB)"
    return phrase


def translate_error(exc: BaseException) -> UserError | None:
    """A library failure the user can fix, as a UserError; None for a bug.

    Running out of GPU memory is the user's to fix (a smaller batch or sequence,
    checkpointing, LoRA); anything else that is not already a UserError keeps its
    traceback.
    """
    if isinstance(exc, UserError):
        return exc
    if type(exc).__name__ == "OutOfMemoryError":
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return UserError(
            f"out of GPU memory ({first}); lower training.per_device_train_batch_size or "
            "training.max_length, turn on training.activation_checkpointing, or use lora/qlora "
            "(`recipe plan` estimates the memory a recipe needs)"
        )
    return None
