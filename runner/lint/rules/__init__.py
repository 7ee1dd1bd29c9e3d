"""The rule table of `recipe lint`: cross-field checks the JSON Schema cannot express.

Adding a rule
-------------
A rule is one `Rule(id, severity, message, hint, check)` (runner.lint.rules.base):

- `id`: kebab-case, stable (users grep for it; tests assert it), e.g. `qlora-needs-4bit`.
- `severity`: `runner.recipe.diagnostics.ERROR` (lint exits 1) or `WARNING`.
- `message`: one line saying what is wrong; `hint`: how to fix it. Both are
  `str.format` templates filled from each finding's `values` (write `{{`/`}}` for
  literal braces).
- `check(ctx: RuleContext) -> Iterable[Finding]`: yields one `Finding(key, values)` per
  place the rule fires; `key` is the key path the diagnostic points at (its line and
  column come from the recipe), e.g. `("training", "bf16")`. A finding may carry its
  own `message`/`hint` to replace the rule's text.

What a check receives (`RuleContext`):

- `ctx.recipe`: the loaded `runner.recipe.load.Recipe` (positions, `.directory`).
- `ctx.data`: the migrated plain data (overrides applied), possibly schema-invalid.
- `ctx.block(name)`, `ctx.training`, `ctx.model`, `ctx.launch`: blocks as dicts, `{}`
  when absent or not a mapping; `ctx.method`.
- `ctx.setting(key)`: a training value as SFTConfig will see it, TRL's defaults included
  (bf16 on unless fp16, activation checkpointing on, max_length 1024...).
- `ctx.model_config`: the model's config.json fields (`runner.recipe.models.model_config`),
  or None when unknown; `ctx.card`: the target `runner.recipe.hardware.Card`, or None.

Rules run on every recipe that loads, even when the schema found errors, so a check
must tolerate wrong types inside blocks (compare with `is True`, check `isinstance`). A
check that raises anyway is skipped (never a traceback); on a schema-valid recipe it is
reported as an internal `rule-crashed` warning (tests/test_lint_robustness.py feeds every
rule wrong types).

Put a rule in the module of its theme, or a new module with a `RULES` list, and add
that module to MODULES below.
"""

from __future__ import annotations

import importlib

from runner.lint.rules.base import Finding, Rule, RuleContext

MODULES: list[str] = [
    "runner.lint.rules.renamed_keys",
    "runner.lint.rules.method",
    "runner.lint.rules.precision",
    "runner.lint.rules.evaluation",
    "runner.lint.rules.data",
    "runner.lint.rules.launch",
    "runner.lint.rules.learning_rate",
    "runner.lint.rules.hardware_fit",
]


def all_rules() -> list[Rule]:
    """Every rule of every module in MODULES, in table order."""
    rules: list[Rule] = []
    for name in MODULES:
        rules.extend(importlib.import_module(name).RULES)
    return rules


__all__ = ["MODULES", "Finding", "Rule", "RuleContext", "all_rules"]
