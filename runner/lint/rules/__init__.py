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

What a check receives (`RuleContext`, runner.lint.rules.base):

- `ctx.s`: the effective settings (runner.recipe.settings.Settings): every value as the
  run will use it, defaults included (`ctx.s.max_length`, `ctx.s.training["optim"]`,
  `ctx.s.lora_config["r"]`, `ctx.s.method`, `ctx.s.template`, `ctx.s.strategy`, ...).
  Checks decide on these, each key through its one property.
- `ctx.written(*key)`: whether the user wrote a key, and `ctx.nearest(*key)`: the key,
  or its nearest written parent, for where a finding points.
- `ctx.data`: the migrated data as written; `ctx.recipe`: positions and `.directory`.
- `ctx.model_config`: the model's config.json fields, or None; `ctx.card`: the target
  card, or None; `ctx.plan`: the memory plan against it (made once).

Two tables run at two stages. DOCUMENT_MODULES check the document as written and run
beside the JSON Schema, even when it finds errors (keys renamed by transformers 5 are
unknown to the schema; their rule says where they went). MODULES check the effective
settings and run only on a schema-valid recipe, so they need no type guards. A check
that raises anyway is reported as an internal `rule-crashed` warning, never a
traceback.

Put a rule in the module of its theme, or a new module with a `RULES` list, and add
that module to MODULES below.
"""

from __future__ import annotations

import importlib

from runner.lint.rules.base import Finding, Rule, RuleContext

DOCUMENT_MODULES: list[str] = ["runner.lint.rules.renamed_keys", "runner.lint.rules.modeline"]
MODULES: list[str] = [
    "runner.lint.rules.model_source",
    "runner.lint.rules.method",
    "runner.lint.rules.precision",
    "runner.lint.rules.evaluation",
    "runner.lint.rules.data",
    "runner.lint.rules.template",
    "runner.lint.rules.launch",
    "runner.lint.rules.extras",
    "runner.lint.rules.throughput",
    "runner.lint.rules.learning_rate",
    "runner.lint.rules.hardware_fit",
    "runner.lint.rules.remote_code",
]


def rules_of(modules: list[str]) -> list[Rule]:
    """The rules of the given modules, in table order."""
    rules: list[Rule] = []
    for name in modules:
        rules.extend(importlib.import_module(name).RULES)
    return rules


def document_rules() -> list[Rule]:
    return rules_of(DOCUMENT_MODULES)


def settings_rules() -> list[Rule]:
    return rules_of(MODULES)


def all_rules() -> list[Rule]:
    """Every rule of both tables."""
    return document_rules() + settings_rules()


__all__ = [
    "DOCUMENT_MODULES",
    "MODULES",
    "Finding",
    "Rule",
    "RuleContext",
    "all_rules",
    "document_rules",
    "settings_rules",
]
