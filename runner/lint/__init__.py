"""`recipe lint`'s rule engine and rule tables, without heavy imports.

The check pipeline that runs them (load, migrate, schema, resolve, rules) is
`runner.check.check_recipe`. Importing this package never imports torch,
transformers, trl, datasets, peft or accelerate.
"""

from runner.lint.engine import run_rules, sort_diagnostics

__all__ = ["run_rules", "sort_diagnostics"]
