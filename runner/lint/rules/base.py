"""What a lint rule is and what its check function receives.

A rule is one `Rule` entry: an ID, a severity, a one-line message, a fix hint and a
check function. The check gets a `RuleContext` and yields `Finding`s; the engine turns
each finding into a Diagnostic at the finding's key (file:line:col from the recipe).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.recipe.diagnostics import KeyPath
from runner.recipe.hardware import Card
from runner.recipe.load import Recipe
from runner.recipe.models import model_config
from runner.recipe.settings import Settings

if TYPE_CHECKING:
    from runner.plan.verdict import Plan, PlanError


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
    """Everything a check may look at.

    - `settings`: the effective settings (runner.recipe.settings) - every value as the
      run will use it, defaults included. This is what checks decide on.
    - `recipe`: the loaded Recipe (positions; `.directory` is the recipe's folder).
    - `data`: the migrated data as written (overrides applied), for document rules and
      for `written(...)`: whether the user wrote a key, so a finding points at it or,
      for a default, at its block.
    - `card`: the card checked against (the recipe's hardware, or `recipe plan --gpu`).
    - `model_config`: config.json fields of the model (runner.recipe.models), or None.
    - `plan`: the memory plan against `card` (runner.plan), or None: the one the check
      makes once (`planner`, from runner.check), which `recipe plan` and the run
      record read too.
    - `read_data`: `lint --data`: a rule may read local data files (to count rows).
    """

    recipe: Recipe
    data: dict[str, Any]
    settings: Settings | None = None
    card_override: Card | None = None
    read_data: bool = False
    planner: Callable[[], Plan | PlanError] | None = None

    @property
    def s(self) -> Settings:
        """The effective settings (settings rules run only on schema-valid recipes)."""
        assert self.settings is not None, "a settings rule ran on a schema-invalid recipe"
        return self.settings

    def block(self, name: str) -> dict[str, Any]:
        """A top-level block as written ({} when absent or not a mapping)."""
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    def written(self, *key: str | int) -> bool:
        """Whether the recipe as written (with --set values) has this key."""
        node: Any = self.data
        for part in key:
            if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            ):
                node = node[part]
            else:
                return False
        return True

    def nearest(self, *key: str | int) -> KeyPath:
        """`key` if the recipe writes it, else its nearest written parent block."""
        for depth in range(len(key), 0, -1):
            if self.written(*key[:depth]):
                return key[:depth]
        return key[:1]

    @property
    def card(self) -> Card | None:
        return self.card_override if self.card_override is not None else self.s.card

    @functools.cached_property
    def model_config(self) -> dict[str, Any] | None:
        try:
            return model_config(self.s.model)
        except (OSError, ValueError, TypeError):
            return None

    @functools.cached_property
    def plan_or_error(self) -> Plan | PlanError:
        """The recipe's memory plan against `card` (the check's own, when it gave one),
        or why it cannot be made."""
        if self.planner is not None:
            return self.planner()
        from runner.plan.verdict import plan_or_error

        return plan_or_error(self.s, self.card)

    @property
    def plan(self) -> Plan | None:
        """The plan, or None when the architecture is unknown."""
        plan = self.plan_or_error
        return None if isinstance(plan, Exception) else plan


Check = Callable[[RuleContext], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """One row of the rule table."""

    id: str
    severity: str
    message: str
    hint: str
    check: Check
