"""Rule hardware-fit: the memory plan against the recipe's card (runner.plan)."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.plan.advice import HEADROOM
from runner.plan.estimate import GIB
from runner.plan.verdict import PlanError, make_plan
from runner.recipe.diagnostics import ERROR, WARNING


def _plan(ctx: RuleContext):
    """The recipe's plan, computed once for both rules (kept on the context)."""
    if not hasattr(ctx, "_hardware_plan"):
        ctx._hardware_plan = _make_plan(ctx)  # type: ignore[attr-defined]
    return ctx._hardware_plan  # type: ignore[attr-defined]


def _make_plan(ctx: RuleContext):
    card = ctx.card
    if card is None or card.memory_gib <= 0:
        return None
    try:
        return make_plan(ctx.data, ctx.recipe.directory, card)
    except (PlanError, TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError):
        return None  # unknown model or a value the schema already reports


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


def _does_not_fit(ctx: RuleContext) -> Iterator[Finding]:
    plan = _plan(ctx)
    if plan is not None and plan.verdict == "does not fit":
        yield Finding(_key(ctx), _values(plan))


def _tight(ctx: RuleContext) -> Iterator[Finding]:
    plan = _plan(ctx)
    if plan is not None and plan.verdict == "tight":
        yield Finding(_key(ctx), _values(plan))


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
