"""Lint one recipe: load, migrate, JSON Schema, then the rule table.

Nothing here raises for a bad recipe: every problem becomes a Diagnostic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.lint.rules import RuleContext, all_rules
from runner.lint.schema_check import schema_diagnostics
from runner.recipe.catalog import find_recipe
from runner.recipe.diagnostics import WARNING, Diagnostic, RecipeError, has_errors
from runner.recipe.load import Recipe, load_recipe
from runner.recipe.migrate import migrate
from runner.recipe.resolve import resolve_recipe


@dataclass
class LintResult:
    """What `recipe lint` found in one recipe.

    `recipe` is None when the file could not be loaded; `data` is the migrated plain
    data; `resolved` is the resolved recipe, or None when there are errors.
    """

    recipe: Recipe | None
    data: dict[str, Any] | None
    diagnostics: list[Diagnostic]
    resolved: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not has_errors(self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity != WARNING]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == WARNING]


def check_recipe(
    path: str | Path,
    overrides: Iterable[str] = (),
    cwd: Path | None = None,
    read_data: bool = False,
) -> LintResult:
    """Lint a recipe file (or shipped recipe name) with `--set` overrides applied.

    `cwd` is where output_dir is resolved from (default: the current directory).
    `read_data` also checks the first rows of each local data file (`lint --data`).
    """
    try:
        recipe_path = path if Path(path).is_file() else _shown(find_recipe(str(path)))
        recipe = load_recipe(recipe_path, overrides)
    except RecipeError as exc:
        return LintResult(None, None, sort_diagnostics(exc.diagnostics))
    data, problems = migrate(recipe)
    if problems:
        return LintResult(recipe, data, sort_diagnostics(problems))
    diagnostics = check_data(recipe, data)
    if read_data and not has_errors(diagnostics):
        from runner.lint.data_rows import check_rows

        diagnostics += check_rows(recipe, data)
    diagnostics = sort_diagnostics(diagnostics)
    resolved = None
    if not has_errors(diagnostics):
        resolved = resolve_recipe(data, recipe.directory, cwd)
    return LintResult(recipe, data, diagnostics, resolved)


def _shown(path: Path) -> Path:
    """A shipped recipe's path relative to the current directory when it is inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def check_data(recipe: Recipe, data: dict[str, Any]) -> list[Diagnostic]:
    """Schema errors and rule findings for migrated recipe data (unsorted)."""
    schema = schema_diagnostics(recipe, data)
    return schema + rule_diagnostics(recipe, data, report_crashes=not has_errors(schema))


def rule_diagnostics(
    recipe: Recipe, data: dict[str, Any], report_crashes: bool = True
) -> list[Diagnostic]:
    """Run the rule table over `data`; a crashing check never becomes a traceback.

    A crash is reported as a `rule-crashed` warning when `report_crashes` (the recipe
    is schema-valid, so the rule has a bug); on schema-invalid data the schema errors
    already say what is wrong, and the crash is dropped.
    """
    ctx = RuleContext(recipe, data)
    out: list[Diagnostic] = []
    for rule in all_rules():
        try:
            findings = list(rule.check(ctx))
        except Exception as exc:  # a rule bug must not hide the other findings
            if not report_crashes:
                continue
            out.append(
                Diagnostic(
                    rule="rule-crashed",
                    severity=WARNING,
                    message=f"lint rule {rule.id} could not check this recipe "
                    f"({type(exc).__name__}: {exc})",
                    hint="fix the other diagnostics first; if this stays, please report it",
                    file=recipe.display,
                )
            )
            continue
        for finding in findings:
            message = _fill(finding.message or rule.message, finding.values)
            hint = _fill(finding.hint or rule.hint, finding.values)
            out.append(recipe.diagnostic(rule.id, finding.key, message, hint, rule.severity))
    return out


def _fill(template: str, values: dict[str, Any]) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return template


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """By line and column (overrides, with no line, first); duplicates dropped."""
    unique = list(dict.fromkeys(diagnostics))
    return sorted(unique, key=lambda d: (d.line, d.column, d.rule))
