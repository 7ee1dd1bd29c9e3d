"""The rule engine: run a table of rules over a recipe and turn findings into diagnostics.

A crashing check never becomes a traceback: on a schema-valid recipe it is reported as
an internal `rule-crashed` warning (the rule has a bug), and the other rules still run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.lint.rules import Rule, RuleContext
from runner.recipe.diagnostics import WARNING, Diagnostic


def run_rules(
    ctx: RuleContext, rules: Iterable[Rule], report_crashes: bool = True
) -> list[Diagnostic]:
    """Diagnostics of every rule in `rules` for the recipe in `ctx` (unsorted)."""
    out: list[Diagnostic] = []
    for rule in rules:
        try:
            findings = list(rule.check(ctx))
        except Exception as exc:  # a rule bug must not hide the other findings
            if report_crashes:
                out.append(_crashed(ctx, rule, exc))
            continue
        for finding in findings:
            message = _fill(finding.message or rule.message, finding.values)
            hint = _fill(finding.hint or rule.hint, finding.values)
            out.append(ctx.recipe.diagnostic(rule.id, finding.key, message, hint, rule.severity))
    return out


def _crashed(ctx: RuleContext, rule: Rule, exc: Exception) -> Diagnostic:
    return Diagnostic(
        rule="rule-crashed",
        severity=WARNING,
        message=f"lint rule {rule.id} could not check this recipe ({type(exc).__name__}: {exc})",
        hint="fix the other diagnostics first; if this stays, please report it",
        file=ctx.recipe.display,
    )


def _fill(template: str, values: dict[str, Any]) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return template


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """By line and column (overrides, with no line, first); duplicates dropped."""
    unique = list(dict.fromkeys(diagnostics))
    return sorted(unique, key=lambda d: (d.line, d.column, d.rule))
