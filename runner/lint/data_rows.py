"""`recipe lint --data`: read each local data file and check its first rows.

Each local .jsonl, .json and .csv file is read through once with the run's own reader
(runner.data.files: UTF-8, parseable, not empty, every row an object; no `datasets`
import, no network), then its first rows are checked with the same `runner.data.formats`
code the run uses: the mapped columns exist, required fields are non-empty text,
messages are well formed. Problems name the file and its 1-based line. Hub datasets and
other file types are left to `recipe run`/`recipe preview`.
"""

from __future__ import annotations

from pathlib import Path

from runner.data.files import DataFileError, is_text_data, scan_rows
from runner.data.formats import FIELDS, missing_columns, normalize_row
from runner.lint.rules.base import RuleContext
from runner.lint.rules.data import data_sources
from runner.recipe.diagnostics import ERROR, WARNING, Diagnostic
from runner.recipe.resolve import looks_local

FIRST_ROWS = 20


def check_rows(ctx: RuleContext, limit: int = FIRST_ROWS) -> list[Diagnostic]:
    """Diagnostics for the first rows of every local data file of a schema-valid recipe."""
    recipe = ctx.recipe
    out: list[Diagnostic] = []
    skip_bad = ctx.s.data["bad_rows"] == "skip"
    for key, source in data_sources(ctx.block("data")):
        reference, fmt = source["source"], source["format"]
        if not looks_local(reference, recipe.directory):
            continue
        path = recipe.directory / Path(reference).expanduser()
        if not is_text_data(path):
            continue
        columns = source.get("columns")
        try:
            first = scan_rows(path, reference, keep=limit).first
        except DataFileError as exc:
            out.append(
                recipe.diagnostic("data-unreadable", (*key, "source"), exc.located, exc.hint)
            )
            continue
        except OSError as exc:
            out.append(
                recipe.diagnostic(
                    "data-unreadable",
                    (*key, "source"),
                    f"{reference}: cannot be read ({exc.strerror or exc})",
                    "check the file's permissions",
                )
            )
            continue
        rows = [row for _, row in first]
        available = sorted({name for row in rows if isinstance(row, dict) for name in row})
        missing = missing_columns(fmt, columns, available)
        if rows and missing:
            out.append(
                recipe.diagnostic(
                    "data-columns-missing",
                    (*key, "columns") if columns else (*key, "format"),
                    f"{reference} has no column {', '.join(repr(m) for m in missing)} that "
                    f"format {fmt} needs (its columns: {', '.join(available) or 'none'})",
                    "map the format's fields to your columns, e.g. "
                    f"`columns: {{{_first_field(fmt)}: {available[0] if available else 'my_column'}}}`"
                    ", or pick the format that matches the file",
                )
            )
            continue
        for line, row in first:
            _, problem = normalize_row(fmt, columns, row)
            if problem:
                out.append(
                    recipe.diagnostic(
                        "data-bad-row",
                        (*key, "source"),
                        f"{reference}:{line}: {problem}",
                        "data.bad_rows is skip: the run drops such rows"
                        if skip_bad
                        else "fix the rows, or set `data.bad_rows: skip` to drop them",
                        WARNING if skip_bad else ERROR,
                    )
                )
    return out


def _first_field(fmt: str) -> str:
    return FIELDS[fmt][0][0]
