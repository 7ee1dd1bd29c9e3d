"""Rule hardware-fit: the memory plan against the recipe's card (runner.plan)."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.plan.advice import HEADROOM
from runner.plan.estimate import GIB
from runner.recipe.diagnostics import ERROR, WARNING


def _values(plan) -> dict[str, object]:
    best = plan.changes[0] if plan.changes else None
    return {
        "estimate": f"{plan.estimate.total / GIB:.1f}",
        "capacity": f"{plan.capacity / GIB:.1f}",
        "card": plan.card.name if plan.card.name != "custom" else plan.card.label,
        "headroom": f"{plan.headroom:.0%}",
        "suggestion": f"e.g. {best.description} ({best.estimate.total / GIB:.1f} GiB)"
        if best
        else "see `recipe plan`",
    }


def _key(ctx: RuleContext) -> tuple[str, ...]:
    hardware = ctx.block("hardware")
    for key in ("memory_gib", "gpu"):
        if key in hardware:
            return ("hardware", key)
    return ("hardware",)


def _verdict(ctx: RuleContext, verdict: str) -> Iterator[Finding]:
    card = ctx.card
    if card is None or card.memory_gib <= 0:
        return  # no GPU to fit: no plan needed
    plan = ctx.plan
    if plan is not None and plan.verdict == verdict:
        yield Finding(_key(ctx), _values(plan))


def _does_not_fit(ctx: RuleContext) -> Iterator[Finding]:
    return _verdict(ctx, "does not fit")


def _tight(ctx: RuleContext) -> Iterator[Finding]:
    return _verdict(ctx, "tight")


RULES = [
    Rule(
        "hardware-fit",
        ERROR,
        "estimated peak memory {estimate} GiB exceeds the {capacity} GiB of {card}",
        "run `recipe plan` for the terms and the changes that fit; {suggestion}",
        _does_not_fit,
    ),
    Rule(
        "hardware-fit-headroom",
        WARNING,
        f"estimated peak memory {{estimate}} GiB leaves only {{headroom}} of {{capacity}} GiB "
        f"on {{card}} (under {HEADROOM:.0%}): an unusually long batch may run out of memory",
        "run `recipe plan` for the changes that give more room; {suggestion}",
        _tight,
    ),
]
