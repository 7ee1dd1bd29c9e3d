"""What a lint rule is and what its check function receives.

A rule is one `Rule` entry: an ID, a severity, a one-line message, a fix hint and a
check function. The check gets a `RuleContext` and yields `Finding`s; the engine turns
each finding into a Diagnostic at the finding's key (file:line:col from the recipe).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runner.recipe.hardware import Card, card_for
from runner.recipe.load import Recipe
from runner.recipe.models import model_config
from runner.recipe.resolve import load_schema

KeyPath = tuple[str | int, ...]

# SFTConfig fields whose effective default is computed in __post_init__ (trl 1.16 /
# transformers 5.23): bf16 turns on unless fp16 is set; activation_checkpointing takes
# the deprecated gradient_checkpointing, which SFTConfig defaults to True.
POST_INIT_DEFAULTS = ("bf16", "activation_checkpointing")


@functools.cache
def sft_defaults() -> dict[str, Any]:
    """SFTConfig's field defaults, as the generated schema records them."""
    schema = load_schema()
    properties = schema["$defs"]["sft_config"].get("properties", {})
    return {key: prop["default"] for key, prop in properties.items() if "default" in prop}


@dataclass(frozen=True)
class Finding:
    """One place a rule fires: the key it points at and values for its message/hint.

    `values` fill `{placeholders}` in the rule's message and hint. `message`/`hint`, when
    given, replace the rule's own text for this finding.
    """

    key: KeyPath
    values: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    hint: str | None = None


@dataclass
class RuleContext:
    """Everything a check may look at. Blocks are always dicts (empty when absent or not
    a mapping), so checks need no type guards for them; values inside may still have the
    wrong type when the schema already reported an error.

    - `recipe`: the loaded Recipe (its `.locate`/`.diagnostic` give positions; its
      `.directory` is the folder relative paths are taken from).
    - `data`: the migrated plain data (overrides applied).
    - `model_config`: config.json fields of the model (runner.recipe.models), or None.
    - `card`: the target card (runner.recipe.hardware), or None when `hardware` names none.
    - `setting(key)`: a training value as SFTConfig will see it, TRL defaults included
      (from the generated schema, plus the __post_init__ ones in POST_INIT_DEFAULTS).
    """

    recipe: Recipe
    data: dict[str, Any]

    def block(self, name: str) -> dict[str, Any]:
        """A top-level block as a dict ({} when absent or not a mapping)."""
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def method(self) -> Any:
        return self.data.get("method")

    @property
    def training(self) -> dict[str, Any]:
        return self.block("training")

    @property
    def model(self) -> dict[str, Any]:
        return self.block("model")

    @property
    def launch(self) -> dict[str, Any]:
        return self.block("launch")

    @functools.cached_property
    def model_config(self) -> dict[str, Any] | None:
        try:
            return model_config(self.model, self.recipe.directory)
        except (OSError, ValueError, TypeError):
            return None

    @functools.cached_property
    def card(self) -> Card | None:
        try:
            return card_for(self.block("hardware"))
        except (TypeError, ValueError):
            return None

    def setting(self, key: str) -> Any:
        """The value of `training.<key>` SFTConfig will use: the recipe's, else TRL's default."""
        training = self.training
        if key in training:
            return training[key]
        if key == "bf16":
            return not training.get("fp16", False)
        if key == "activation_checkpointing":
            return training.get("gradient_checkpointing", True)
        return sft_defaults().get(key)

    def has_eval_data(self) -> bool:
        """Whether data.eval is given (a fraction or a list of sources)."""
        return bool(self.block("data").get("eval"))

    def strategy(self, kind: str) -> str:
        """eval/save/logging strategy as a plain lower-case string."""
        return str(self.setting(f"{kind}_strategy")).lower()


Check = Callable[[RuleContext], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """One row of the rule table."""

    id: str
    severity: str
    message: str
    hint: str
    check: Check
