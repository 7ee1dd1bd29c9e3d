"""Rules about evaluation, checkpoint saving and early stopping fitting together, and
about step intervals the run never reaches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _load_best_mismatch(ctx: RuleContext) -> Iterator[Finding]:
    training = ctx.s.training
    if training["load_best_model_at_end"] is not True:
        return
    evals, saves = ctx.s.strategy_of("eval"), ctx.s.strategy_of("save")
    key = ("training", "load_best_model_at_end")
    if evals == "no" or saves == "no" or saves == "best" or evals != saves:
        yield Finding(key, {"eval": evals, "save": saves})
        return
    if evals == "steps":
        eval_steps, save_steps = training["eval_steps"], training["save_steps"]
        numbers = _is_number(eval_steps) and _is_number(save_steps) and eval_steps >= 1
        if numbers and save_steps % eval_steps != 0:
            yield Finding(
                ("training", "save_steps"),
                message="load_best_model_at_end needs save_steps ({save}) to be a multiple "
                "of eval_steps ({eval})",
                hint="set save_steps to a multiple of eval_steps, e.g. both 200",
                values={"save": save_steps, "eval": eval_steps},
            )


def _eval_strategy_without_data(ctx: RuleContext) -> Iterator[Finding]:
    strategy = ctx.s.strategy_of("eval")
    if strategy != "no" and not ctx.s.has_eval_data:
        yield Finding(("training", "eval_strategy"), {"strategy": strategy})


def _eval_data_without_strategy(ctx: RuleContext) -> Iterator[Finding]:
    # Evaluating only before and after training is a fine choice when written down
    # (eval_strategy: "no"); TRL's silent default is what a user may not expect.
    if ctx.s.has_eval_data and not ctx.s.evaluates and not ctx.written("training", "eval_strategy"):
        yield Finding(("data", "eval"), {"when": ctx.s.eval_schedule()})


def _steps_without_steps_strategy(ctx: RuleContext) -> Iterator[Finding]:
    for kind in ("eval", "save", "logging"):
        steps_key = f"{kind}_steps"
        strategy = ctx.s.strategy_of(kind)
        if ctx.written("training", steps_key) and strategy != "steps":
            when = f" (data.eval is evaluated {ctx.s.eval_schedule()})" if kind == "eval" else ""
            yield Finding(
                ("training", steps_key),
                {
                    "key": steps_key,
                    "strategy_key": f"{kind}_strategy",
                    "strategy": strategy,
                    "when": when,
                },
            )


def _early_stopping_needs_eval(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.early_stopping is not None and not ctx.s.evaluates:
        yield Finding(("early_stopping",))


def _early_stopping_needs_load_best(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.early_stopping is not None and ctx.s.training["load_best_model_at_end"] is not True:
        yield Finding(("early_stopping",))


# What a run misses when a steps interval is never reached (eval: see _never_done).
NEVER_DONE = {
    "eval": "evaluates during training",
    "save": "saves a checkpoint, and an interrupted run cannot --resume",
    "logging": "logs the training loss (metrics.jsonl and loss.png stay empty)",
}


def _never_done(ctx: RuleContext, kind: str) -> str:
    if kind != "eval":
        return NEVER_DONE[kind]
    return f"{NEVER_DONE[kind]}: data.eval is evaluated only {ctx.s.eval_schedule(during=False)}"


def total_steps(ctx: RuleContext) -> tuple[int, str] | None:
    """(optimizer steps the run takes at most, how that was counted), when cheaply known:
    `max_steps`, or with `lint --data` the rows of local .jsonl/.json/.csv files. An
    upper bound: packing and skipped rows only make fewer steps."""
    training = ctx.s.training
    if training["max_steps"] > 0:
        return int(training["max_steps"]), f"max_steps {training['max_steps']}"
    rows = train_rows(ctx) if ctx.read_data else None
    if rows is None:
        return None
    batch = int(training["per_device_train_batch_size"])
    accumulation = int(training["gradient_accumulation_steps"])
    processes = ctx.s.num_processes
    per_process = math.ceil(rows / processes)
    batches = per_process // batch if training["dataloader_drop_last"] else -(-per_process // batch)
    per_epoch = max(-(-batches // accumulation), 1)
    epochs = training["num_train_epochs"]
    how = f"{rows} training rows, batch {batch}"
    how += f" x {accumulation} accumulation" if accumulation > 1 else ""
    how += f" x {processes} processes" if processes > 1 else ""
    return math.ceil(epochs * per_epoch), f"{how}, {epochs:g} epoch(s)"


def train_rows(ctx: RuleContext) -> int | None:
    """Training rows of a recipe whose train sources are all local text files (after
    `rows:` selection and the data.eval fraction), else None."""
    from runner.data.files import count_rows, is_text_data

    total = 0
    for source in ctx.s.data["train"]:
        path = Path(str(source["source"]))
        count = count_rows(path) if is_text_data(path) else None
        if count is None:
            return None
        total += _selected(source.get("rows"), count)
    held_out = ctx.s.data.get("eval")
    if isinstance(held_out, dict) and held_out.get("fraction"):
        total -= max(1, round(total * float(held_out["fraction"])))
    return max(total, 0)


def _selected(rows: int | str | None, available: int) -> int:
    """How many rows a `rows:` selection keeps (as runner.data.rows.parse_rows)."""
    if rows is None:
        return available
    if isinstance(rows, int):
        return min(rows, available)
    start, _, stop = str(rows).partition(":")
    return len(range(available)[slice(int(start) if start else None, int(stop) if stop else None)])


def _steps_never_reached(ctx: RuleContext) -> Iterator[Finding]:
    kinds = [k for k in NEVER_DONE if ctx.s.strategy_of(k) == "steps"]
    if "eval" in kinds and not ctx.s.evaluates:
        kinds.remove("eval")
    if not kinds:
        return
    known = total_steps(ctx)
    if known is None:
        return
    total, how = known
    training = ctx.s.training
    for kind in kinds:
        key = f"{kind}_steps"
        steps = training[key]
        if kind == "eval" and not ctx.written("training", key):
            key = "logging_steps"  # TRL's eval_steps is then logging_steps
        if not ctx.written("training", key):
            continue  # TRL's defaults (save_steps 500) are not the user's choice to warn on
        if _is_number(steps) and steps >= 1 and steps > total:
            yield Finding(
                ("training", key),
                {
                    "key": key,
                    "steps": steps,
                    "total": total,
                    "how": how,
                    "never": _never_done(ctx, kind),
                },
            )


RULES = [
    Rule(
        "load-best-needs-matching-strategies",
        ERROR,
        "load_best_model_at_end needs eval_strategy and save_strategy to be the same and "
        "not 'no' (they are {eval!r} and {save!r})",
        "set eval_strategy and save_strategy both to steps (with save_steps a multiple of "
        "eval_steps) or both to epoch",
        _load_best_mismatch,
    ),
    Rule(
        "eval-strategy-without-eval-data",
        ERROR,
        "training.eval_strategy is {strategy!r} but the recipe has no evaluation data",
        "add `data.eval: {{fraction: 0.05}}` (or a list of sources), or set eval_strategy: 'no'",
        _eval_strategy_without_data,
    ),
    Rule(
        "eval-data-without-eval-strategy",
        WARNING,
        "data.eval is evaluated only {when}, never during training: training.eval_strategy "
        "is TRL's default 'no'",
        "to evaluate during training set training.eval_strategy: steps (with eval_steps) or "
        'epoch; to keep this, write eval_strategy: "no"',
        _eval_data_without_strategy,
    ),
    Rule(
        "steps-without-steps-strategy",
        WARNING,
        "training.{key} is ignored because {strategy_key} is {strategy!r}{when}",
        "set {strategy_key}: steps, or delete {key}",
        _steps_without_steps_strategy,
    ),
    Rule(
        "steps-never-reached",
        WARNING,
        "training.{key} is {steps:g} but the run takes at most {total} optimizer step(s) "
        "({how}), so it never {never}",
        "set {key} to at most {total}, or to a fraction of the run, e.g. 0.25 for every quarter",
        _steps_never_reached,
    ),
    Rule(
        "early-stopping-needs-eval",
        ERROR,
        "early_stopping needs evaluation: data.eval and a training.eval_strategy other than 'no'",
        "add `data.eval: {{fraction: 0.05}}` and training.eval_strategy: steps with eval_steps, "
        "or delete early_stopping",
        _early_stopping_needs_eval,
    ),
    Rule(
        "early-stopping-needs-load-best",
        ERROR,
        "early_stopping needs training.load_best_model_at_end: true",
        "set training.load_best_model_at_end: true (and metric_for_best_model: eval_loss), "
        "or delete early_stopping",
        _early_stopping_needs_load_best,
    ),
]
