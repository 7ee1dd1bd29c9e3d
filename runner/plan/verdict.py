"""A recipe's plan: the estimate against a card, the verdict, and what would fit."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from runner.errors import UserError
from runner.plan.advice import HEADROOM, Change, fitting_changes
from runner.plan.architecture import Architecture, ArchitectureError, architecture_from_config
from runner.plan.estimate import GIB, Estimate, estimate_memory
from runner.plan.setup import RowLengthUnknown, Setup, setup_from_settings
from runner.plan.throughput import EpochTime, epoch_time
from runner.recipe.hardware import Card
from runner.recipe.models import model_config
from runner.recipe.settings import Settings


class PlanError(UserError):
    """The recipe cannot be planned (unknown architecture); `keypath` says where."""

    def __init__(self, message: str, hint: str, keypath: tuple[str, ...] = ("model",)) -> None:
        super().__init__(message)
        self.hint = hint
        self.keypath = keypath


@dataclass(frozen=True)
class Plan:
    arch: Architecture
    setup: Setup
    estimate: Estimate
    card: Card | None
    changes: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def capacity(self) -> int | None:
        if self.card is None or self.card.memory_gib <= 0:
            return None
        return int(self.card.memory_gib * GIB)

    @property
    def headroom(self) -> float | None:
        """Share of the card left free at the estimated peak (negative: does not fit)."""
        if self.capacity is None:
            return None
        return 1 - self.estimate.total / self.capacity

    @property
    def verdict(self) -> str:
        """fits | tight (under 10% headroom) | does not fit | no card."""
        if self.headroom is None:
            return "no card"
        if self.headroom < 0:
            return "does not fit"
        return "tight" if self.headroom < HEADROOM else "fits"


def architecture_for(settings: Settings) -> Architecture:
    """The recipe's architecture from model.config, a local dir, the HF cache or the table."""
    model = settings.model
    config = model_config(model)
    if config is None:
        raise PlanError(
            f"no architecture known for model {model.get('id')!r}",
            "download the model once (the Hugging Face cache is read), point model.id at a "
            "local directory with a config.json, or give model.config",
            ("model", "id"),
        )
    try:
        return architecture_from_config(config)
    except ArchitectureError as exc:
        raise PlanError(str(exc), "add the missing fields to the model config") from exc


def make_plan(settings: Settings, card: Card | None = None) -> Plan:
    """Estimate the recipe against `card` (None: no card to compare with); advise when
    it is tight or does not fit."""
    arch = architecture_for(settings)
    try:
        setup = setup_from_settings(settings, context=arch.context)
    except RowLengthUnknown as exc:
        hint = "set training.max_length to the longest row you train on"
        raise PlanError(str(exc), hint, ("training", "max_length")) from exc
    plan = Plan(arch, setup, estimate_memory(arch, setup), card)
    if plan.capacity is None or plan.verdict == "fits":
        return plan
    return dataclasses.replace(plan, changes=tuple(fitting_changes(arch, setup, plan.capacity)))


def plan_or_error(settings: Settings, card: Card | None = None) -> Plan | PlanError:
    """`make_plan`, or the PlanError that says why the recipe cannot be planned."""
    try:
        return make_plan(settings, card)
    except PlanError as exc:
        return exc


def plan_epoch(plan: Plan, tokens: int) -> EpochTime | None:
    """Time per epoch of `tokens` training tokens on the plan's card (None without one)."""
    if plan.card is None or plan.card.bf16_tflops <= 0:
        return None
    return epoch_time(plan.arch, plan.setup, tokens, plan.card.bf16_tflops)
