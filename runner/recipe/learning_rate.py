"""The usual learning rates of fine-tuning, by method: the one table that lint's
`learning-rate-unusual` warning and a diverged run's likely causes (runner.run.guard)
both read, so the two never disagree about a recipe."""

from __future__ import annotations

from dataclasses import dataclass

from runner.recipe.settings import Settings

# method -> (low, high, usual range in words)
USUAL_RANGES = {
    "full": (1e-7, 1e-4, "1e-6 to 5e-5"),
    "lora": (1e-6, 1e-2, "5e-5 to 5e-4"),
    "qlora": (1e-6, 1e-2, "5e-5 to 5e-4"),
}


@dataclass(frozen=True)
class UnusualRate:
    """A learning rate far outside the usual range of its method."""

    rate: float
    method: str
    usual: str  # the usual range, in words
    direction: str  # high | low


def unusual_learning_rate(settings: Settings) -> UnusualRate | None:
    """The recipe's learning rate when it is far outside the usual range of its method,
    else None. Also None for a model built from `model.config`: it trains from scratch,
    not fine-tuning, and the fine-tuning ranges say nothing about it."""
    if settings.from_config:
        return None
    rate = settings.training["learning_rate"]
    low, high, usual = USUAL_RANGES[settings.method]
    if low <= rate <= high:
        return None
    return UnusualRate(rate, settings.method, usual, "high" if rate > high else "low")
