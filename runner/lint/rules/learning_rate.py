"""The learning-rate sanity rule: far outside the usual range for the method
(runner.recipe.learning_rate holds the ranges)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import WARNING
from runner.recipe.learning_rate import unusual_learning_rate


def _learning_rate_unusual(ctx: RuleContext) -> Iterator[Finding]:
    unusual = unusual_learning_rate(ctx.s)
    if unusual is not None:
        yield Finding(("training", "learning_rate"), dataclasses.asdict(unusual))


RULES = [
    Rule(
        "learning-rate-unusual",
        WARNING,
        "learning_rate {rate:g} is very {direction} for {method} fine-tuning (usual: {usual})",
        "too high makes the loss jump or the model forget what it knew; too low barely moves "
        "the weights - start from {usual}",
        _learning_rate_unusual,
    ),
]
