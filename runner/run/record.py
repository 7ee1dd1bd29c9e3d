"""A run's record in run.json: what it was made from, how it ended, and the summary line.

`record_start` (by `recipe run`, before launch), `record_success` / `record_stop` (by
the training process's main rank: succeeded, or diverged / interrupted), `final_metrics`,
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
) -> None:
    """Write the recipe as given and resolved, and run.json with its provenance, before
    training starts (on resume: the resumed-from step, earlier fields kept)."""
    import os

    from runner.recipe.load import dump_yaml
    from runner.run.directory import library_versions, now, this_host

    recipe, settings = checked.recipe, checked.settings
    if not run.recipe.is_file():
        run.recipe.write_text(recipe.text, encoding="utf-8")
    run.resolved.write_text(dump_yaml(settings.resolved), encoding="utf-8")
    resolved = settings.resolved
    earlier = run.read_run() if resume is not None and run.run_json.is_file() else {}
    if resume is not None:
        resumes = [*earlier.get("resumes", []), {"from_step": resume.step, "at": now()}]
        run.update_run(resumes=resumes, error=None, stopped=None)
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
    )


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
) -> dict[str, Any]:
    """Steps, tokens, time, tokens/s, first and final train loss, final eval loss, over
    the whole run (a resumed run included).

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
        "train_loss_mean": train_loss_mean(records, result, int(state.global_step), resumed_from),
        "eval_loss": eval_metrics.get("eval_loss"),
    }


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

    records = read_metrics(run.metrics)
    plot_loss(records, run.loss_plot, title=settings.name)
    clock = callbacks.clock
    examples = data.examples
    run.update_run(
        status="succeeded",
        finished_at=now(),
        metrics=final_metrics(
            records,
            result,
            eval_metrics,
            trainer.state,
            clock.seconds,
            clock.cpu_seconds,
            callbacks.resumed_from,
        ),
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
    from runner.run.checkpoints import resume_point
    from runner.run.directory import now
    from runner.run.guard import DIVERGED_EXIT, INTERRUPTED_EXIT, likely_causes
    from runner.run.metrics import plot_loss, read_metrics

    guard = callbacks.guard
    plot_loss(read_metrics(run.metrics), run.loss_plot, title=settings.name)
    point = resume_point(run)
    stopped: dict[str, Any] = {
        "step": guard.step,
        "last_good_checkpoint": str(point.checkpoint) if point else None,
    }
    if guard.reason == "diverged":
        stopped.update(seen=guard.divergence, likely_causes=likely_causes(settings))
    else:
        stopped["resume"] = resume_command(run.read_run())
    run.update_run(status=guard.reason, finished_at=now(), stopped=stopped)
    return DIVERGED_EXIT if guard.reason == "diverged" else INTERRUPTED_EXIT


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
