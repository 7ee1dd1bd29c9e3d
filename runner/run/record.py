"""A run's record in run.json: what it was made from and how it ended.

`record_start` (by `recipe run`, before launch: a new session, runner.run.session),
`record_success` / `record_stop` / `record_early_stop` (by the training process's main
rank: succeeded, or diverged / interrupted, each closing its session), and
`translate_error` for the library failures a user can fix. What the run measured comes
from runner.run.measures; the line a user reads at the end from runner.run.summary.
run.json is strict JSON: a non-finite number is written as null.
"""

from __future__ import annotations

from typing import Any

from runner.errors import UserError
from runner.run.measures import final_metrics, gpu_peak_tflops, memory_record, utilisation
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
