"""The check pipeline every command runs before it does anything with a recipe:

    load (positions kept) -> migrate -> --set overrides -> JSON Schema + document rules
      -> resolve (every default filled once) -> effective settings -> settings rules
      -> (with read_data) the first rows of each local data file

Pure and fast: no torch, transformers, trl or datasets import. Nothing here raises for a
bad recipe: every problem becomes a Diagnostic in the returned `Checked`; a command
that needs a usable recipe calls `Checked.require()`, which raises the RecipeError the
command line prints.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.lint.engine import run_rules, sort_diagnostics
from runner.lint.rules import RuleContext, document_rules, settings_rules
from runner.lint.schema_check import schema_diagnostics
from runner.recipe.catalog import find_recipe
from runner.recipe.diagnostics import WARNING, Diagnostic, RecipeError, has_errors
from runner.recipe.hardware import Card
from runner.recipe.load import Recipe, load_recipe
from runner.recipe.migrate import migrate
from runner.recipe.resolve import resolve_recipe
from runner.recipe.settings import Settings

if TYPE_CHECKING:
    from runner.plan.verdict import Plan, PlanError


@dataclass
class Checked:
    """What checking one recipe found.

    `recipe` is None when the file could not be loaded; `data` is the migrated data as
    written; `settings` (with `.resolved`) exists once the recipe is schema-valid, even
    when rules found errors; `plan_or_error` is the memory plan against the card checked,
    made once, on first use (by the hardware rules, `recipe plan` or the run record);
    `rows` is what becomes of every data row (runner.data.truncation.RowCounts.record),
    when `read_data` could count them.
    """

    recipe: Recipe | None
    data: dict[str, Any] | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    context: RuleContext | None = None
    rows: dict[str, Any] | None = None
    planner: Callable[[], Plan | PlanError] | None = None

    @property
    def settings(self) -> Settings | None:
        return self.context.settings if self.context is not None else None

    @property
    def plan_or_error(self) -> Plan | PlanError | None:
        """The memory plan, why it cannot be made, or None without settings."""
        return self.planner() if self.planner is not None else None

    def require_plan(self) -> Plan:
        """The memory plan of a schema-valid recipe; RecipeError when its architecture
        is unknown (pointing at model.id)."""
        assert self.recipe is not None
        plan = self.plan_or_error
        assert plan is not None, "require_plan on a recipe with no settings"
        if isinstance(plan, Exception):
            raise RecipeError(
                [self.recipe.diagnostic("plan-model", plan.keypath, str(plan), plan.hint)]
            )
        return plan

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

    @property
    def resolved(self) -> dict[str, Any] | None:
        return self.settings.resolved if self.settings is not None else None

    def require(self, subject: str = "") -> Settings:
        """The effective settings; RecipeError (with every diagnostic) on any error."""
        if not self.ok or self.settings is None:
            raise RecipeError(self.diagnostics, subject)
        return self.settings


def check_recipe(
    path: str | Path,
    overrides: Iterable[str] = (),
    *,
    cwd: Path | None = None,
    read_data: bool = False,
    card: Card | None = None,
    trust_remote_code: bool = False,
) -> Checked:
    """Check a recipe file (or shipped recipe name) with `--set` overrides applied.

    `cwd` is where output_dir is resolved from (default: the current directory);
    `read_data` also checks the first rows of each local data file and counts what
    becomes of every row (`lint --data`; runner.lint.data_rows);
    `card` checks against another card than the recipe's hardware (`recipe plan --gpu`);
    `trust_remote_code`: the command line's --trust-remote-code, which lets the model's
    own code run when the recipe asks for it (the command checks first with
    runner.recipe.remote_code.require_permission).
    """
    try:
        recipe_path = path if Path(path).is_file() else _shown(find_recipe(str(path)))
        recipe = load_recipe(recipe_path, overrides)
    except RecipeError as exc:
        return Checked(None, None, sort_diagnostics(exc.diagnostics))
    data, problems = migrate(recipe)
    if problems:
        return Checked(recipe, data, sort_diagnostics(problems))
    document = RuleContext(recipe, data)
    diagnostics = schema_diagnostics(recipe, data) + run_rules(document, document_rules())
    if has_errors(diagnostics):
        return Checked(recipe, data, sort_diagnostics(diagnostics))
    settings = Settings(resolve_recipe(data, recipe.directory, cwd), trust_remote_code)
    planner = _planner(settings, card if card is not None else settings.card)
    ctx = RuleContext(recipe, data, settings, card, read_data=read_data, planner=planner)
    diagnostics += run_rules(ctx, settings_rules())
    rows = None
    if read_data and not has_errors(diagnostics):
        from runner.lint.data_rows import check_rows, count_rows

        diagnostics += check_rows(ctx)
        if not has_errors(diagnostics):
            found, rows = count_rows(ctx)  # imports the tokenizer's libraries: --data only
            diagnostics += found
    return Checked(recipe, data, sort_diagnostics(diagnostics), ctx, rows, planner)


def _planner(settings: Settings, card: Card | None) -> Callable[[], Plan | PlanError]:
    """The recipe's memory plan against `card`, made on first call and kept: the one
    plan the hardware rules judge, `recipe plan` prints and a run records."""

    @functools.cache
    def plan() -> Plan | PlanError:
        from runner.plan.verdict import plan_or_error  # the estimator only when asked

        return plan_or_error(settings, card)

    return plan


def _shown(path: Path) -> Path:
    """A shipped recipe's path relative to the current directory when it is inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path
