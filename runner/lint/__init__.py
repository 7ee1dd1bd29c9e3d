"""`recipe lint`: the JSON Schema plus a table of cross-field rules, without heavy imports.

`check_recipe(path, overrides)` -> LintResult is the entry point every command uses
before doing anything with a recipe. Importing this package never imports torch,
transformers, trl, datasets, peft or accelerate.
"""

from runner.lint.check import LintResult, check_data, check_recipe, sort_diagnostics

__all__ = ["LintResult", "check_data", "check_recipe", "sort_diagnostics"]
