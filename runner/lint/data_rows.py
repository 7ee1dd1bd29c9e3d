"""`recipe lint --data`: open the first rows of each local data file and check them.

Reads .jsonl, .json and .csv files with the standard library (no `datasets` import, no
network), then checks each row with the same `runner.data.formats` code the run uses:
the mapped columns exist, required fields are non-empty text, messages are well formed.
Hub datasets and other file types are left to `recipe run`/`recipe preview`.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner.data.formats import FIELDS, missing_columns, normalize_row
from runner.lint.rules.base import RuleContext
from runner.lint.rules.data import data_sources
from runner.recipe.diagnostics import ERROR, WARNING, Diagnostic
from runner.recipe.resolve import looks_local

FIRST_ROWS = 20


class Unreadable(Exception):
    """The file is not what its suffix says; the message says where."""


def read_rows(path: Path, limit: int = FIRST_ROWS) -> list[dict[str, Any]]:
    """The first `limit` rows of a local .jsonl/.json/.csv file."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            return _json_lines(handle, limit)
    if path.suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return _json_lines(
                text.splitlines(), limit
            )  # JSON lines saved as .json: datasets reads those too
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        if not isinstance(data, list):
            raise Unreadable("expected a JSON array of rows")
        return data[:limit]
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(itertools.islice(csv.DictReader(handle), limit))
    return []


def _json_lines(lines: Iterable[str], limit: int) -> list[dict[str, Any]]:
    """The first `limit` rows of JSON lines (blank lines skipped)."""
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise Unreadable(f"line {number} is not JSON ({exc.msg})") from None
        if len(rows) == limit:
            break
    return rows


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
        if not path.is_file() or path.suffix not in (".jsonl", ".json", ".csv"):
            continue
        columns = source.get("columns")
        try:
            rows = read_rows(path, limit)
        except (Unreadable, OSError, UnicodeDecodeError) as exc:
            out.append(
                recipe.diagnostic(
                    "data-unreadable",
                    (*key, "source"),
                    f"{reference}: {exc}",
                    f"fix the file, or check that its contents match its {path.suffix} suffix",
                )
            )
            continue
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
        for number, row in enumerate(rows, 1):
            problem = "not a JSON object" if not isinstance(row, dict) else None
            if problem is None:
                _, problem = normalize_row(fmt, columns, row)
            if problem:
                out.append(
                    recipe.diagnostic(
                        "data-bad-row",
                        (*key, "source"),
                        f"{reference}: row {number}: {problem}",
                        "data.bad_rows is skip: the run drops such rows"
                        if skip_bad
                        else "fix the rows, or set `data.bad_rows: skip` to drop them",
                        WARNING if skip_bad else ERROR,
                    )
                )
    return out


def _first_field(fmt: str) -> str:
    return FIELDS[fmt][0][0]
