"""Rules about evaluation, checkpoint saving and early stopping fitting together."""

from __future__ import annotations

from collections.abc import Iterator
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
        if eval_steps is None:
            eval_steps = training["logging_steps"]
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
    if ctx.s.has_eval_data and ctx.s.strategy_of("eval") == "no":
        yield Finding(("data", "eval"))


def _steps_without_steps_strategy(ctx: RuleContext) -> Iterator[Finding]:
    for kind in ("eval", "save", "logging"):
        steps_key = f"{kind}_steps"
        strategy = ctx.s.strategy_of(kind)
        if ctx.written("training", steps_key) and strategy != "steps":
            yield Finding(
                ("training", steps_key),
                {"key": steps_key, "strategy_key": f"{kind}_strategy", "strategy": strategy},
            )


def _early_stopping_needs_eval(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.early_stopping is not None and not ctx.s.evaluates:
        yield Finding(("early_stopping",))


def _early_stopping_needs_load_best(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.early_stopping is not None and ctx.s.training["load_best_model_at_end"] is not True:
        yield Finding(("early_stopping",))


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
        "data.eval is given but training.eval_strategy is 'no', so it is never used",
        "set training.eval_strategy: steps (with eval_steps) or epoch, or delete data.eval",
        _eval_data_without_strategy,
    ),
    Rule(
        "steps-without-steps-strategy",
        WARNING,
        "training.{key} is ignored because {strategy_key} is {strategy!r}",
        "set {strategy_key}: steps, or delete {key}",
        _steps_without_steps_strategy,
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
