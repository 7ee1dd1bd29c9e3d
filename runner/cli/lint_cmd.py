"""`recipe lint PATH...`: schema and rules over recipe files and folders.

Exit 0 when no file has errors (warnings allowed), 1 when any has, 2 on usage errors.
Text diagnostics go to stderr as `path:line:col: severity[RULE]: message (hint)`;
`--format json` writes one JSON document to stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from runner.cli.options import SET_OPTION, echo_diagnostics
from runner.recipe.diagnostics import Diagnostic

RECIPE_SUFFIXES = (".yaml", ".yml")


def expand_paths(arguments: Iterable[str]) -> list[str]:
    """Files as given, folders as their *.yaml/*.yml files (recursive, sorted, hidden
    folders such as .venv skipped).

    Anything else (a shipped recipe name, a missing file) is passed through so that
    linting it reports why it cannot be read.
    """
    out: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in RECIPE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise click.UsageError(f"no .yaml or .yml files under {argument}")
            out.extend(str(p) for p in found)
        else:
            out.append(argument)
    return out


@click.command()
@click.argument("paths", nargs=-1, required=True)
@SET_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one line per finding on stderr; json: one document on stdout.",
)
@click.option(
    "--data",
    "read_data",
    is_flag=True,
    help="Also read each local data file: check its rows against the format, and (when "
    "the tokenizer is on this machine) count what becomes of every row.",
)
def lint(paths: tuple[str, ...], overrides: tuple[str, ...], fmt: str, read_data: bool) -> None:
    """Check recipes (files or folders) against the schema and the rule table.

    Exit 0 when clean (warnings allowed), 1 when any recipe has an error, 2 on usage
    errors.
    """
    from runner.check import check_recipe

    files = expand_paths(paths)
    report = []
    any_errors = False
    for path in files:
        result = check_recipe(path, overrides, read_data=read_data)
        any_errors = any_errors or not result.ok
        report.append((path, result))
    if fmt == "json":
        document = {
            "files": [
                {
                    "path": path,
                    "diagnostics": [_json(d) for d in result.diagnostics],
                    "rows": result.rows,
                }
                for path, result in report
            ]
        }
        click.echo(json.dumps(document, indent=2))
    else:
        for path, result in report:
            echo_diagnostics(result.diagnostics)
            if result.rows is not None:  # the same line preview and run print
                from runner.data.truncation import rows_line

                click.echo(f"{path}: {rows_line(result.rows)}")
            if result.ok:
                extra = f" ({len(result.warnings)} warning(s))" if result.warnings else ""
                click.echo(f"{path}: ok{extra}")
        errors = sum(len(result.errors) for _, result in report)
        warnings = sum(len(result.warnings) for _, result in report)
        click.echo(
            f"{len(report)} recipe(s) checked: {errors} error(s), {warnings} warning(s)",
            err=any_errors,
        )
    sys.exit(1 if any_errors else 0)


def _json(diagnostic: Diagnostic) -> dict:
    return {
        "rule": diagnostic.rule,
        "severity": diagnostic.severity,
        "line": diagnostic.line,
        "column": diagnostic.column,
        "key": diagnostic.key,
        "message": diagnostic.message,
        "hint": diagnostic.hint,
    }
