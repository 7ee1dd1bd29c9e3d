"""A recipe's plan: the estimate against a card, the verdict, and what would fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.plan.advice import HEADROOM, Change, fitting_changes
from runner.plan.architecture import Architecture, ArchitectureError, architecture_from_config
from runner.plan.estimate import GIB, Estimate, estimate_memory
from runner.plan.setup import Setup, setup_from_recipe
from runner.plan.throughput import EpochTime, epoch_time
from runner.recipe.hardware import Card
from runner.recipe.models import model_config


class PlanError(ValueError):
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
    epoch: EpochTime | None = None

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


def architecture_for(recipe: dict[str, Any], recipe_dir: Path | None) -> Architecture:
    """The recipe's architecture from model.config, a local dir, the HF cache or the table."""
    model = recipe.get("model") or {}
    config = model_config(model, recipe_dir)
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


def make_plan(
    recipe: dict[str, Any],
    recipe_dir: Path | None = None,
    card: Card | None = None,
    tokens: int | None = None,
) -> Plan:
    """Estimate `recipe` (resolved or raw data) against `card`; advise when tight."""
    arch = architecture_for(recipe, recipe_dir)
    setup = setup_from_recipe(recipe)
    estimate = estimate_memory(arch, setup)
    plan = Plan(arch, setup, estimate, card)
    changes: tuple[Change, ...] = ()
    if plan.capacity is not None and plan.verdict != "fits":
        changes = tuple(fitting_changes(arch, setup, plan.capacity))
    epoch = None
    if tokens and card is not None and card.bf16_tflops > 0:
        epoch = epoch_time(arch, setup, tokens, card.bf16_tflops)
    return Plan(arch, setup, estimate, card, changes, epoch)
