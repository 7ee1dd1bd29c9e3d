"""The learning-rate sanity rule: far outside the usual range for the method."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import WARNING

# method -> (low, high, usual range in words)
USUAL_RANGES = {
    "full": (1e-7, 1e-4, "1e-6 to 5e-5"),
    "lora": (1e-6, 1e-2, "5e-5 to 5e-4"),
    "qlora": (1e-6, 1e-2, "5e-5 to 5e-4"),
}


def _learning_rate_unusual(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.from_config:
        return  # a model built from model.config trains from scratch, not fine-tuning
    rate = ctx.s.training["learning_rate"]
    low, high, usual = USUAL_RANGES[ctx.s.method]
    if rate > high or rate < low:
        yield Finding(
            ("training", "learning_rate"),
            {
                "rate": rate,
                "method": ctx.s.method,
                "usual": usual,
                "direction": "high" if rate > high else "low",
            },
        )


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
