"""`recipe lint --data`: read each local data file, check its first rows, and count what
becomes of every row.

Each local .jsonl, .json and .csv file is read through once with the run's own reader
(runner.data.files: UTF-8, parseable, not empty, every row an object; no `datasets`
import, no network), then its first rows are checked with the same `runner.data.formats`
code the run uses: the mapped columns exist, required fields are non-empty text,
messages are well formed. When the rows do not fit the declared format, the hint says
which format they look like (runner.data.formats.format_hint). Problems name the file and
its 1-based line. Hub datasets and other file types are left to `recipe run`/`recipe
preview`.

`count_rows` then reads every row through the path `recipe preview` and `recipe run`
take (runner.data.rows.fit_data: rendered, tokenized, fitted to max_length), when
every source is a local text file and the tokenizer's files are on this machine; it
reports the same counts they do, and the same errors: `max-length-over-context` for a
row past the model's context, `overlong-rows` for rows dropped or refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.data.files import DataFileError, is_text_data, scan_rows
from runner.data.formats import FIELDS, format_hint, missing_columns, normalize_row
from runner.lint.rules.base import RuleContext
from runner.lint.rules.data import written_sources
from runner.recipe.diagnostics import ERROR, WARNING, Diagnostic, KeyPath
from runner.recipe.resolve import looks_local

FIRST_ROWS = 20


def check_rows(ctx: RuleContext, limit: int = FIRST_ROWS) -> list[Diagnostic]:
    """Diagnostics for the first rows of every local data file of a schema-valid recipe."""
    recipe = ctx.recipe
    out: list[Diagnostic] = []
    skip_bad = ctx.s.data["bad_rows"] == "skip"
    for key, source in written_sources(ctx.block("data")):
        reference = source["source"]
        if not looks_local(reference, recipe.directory):
            continue
        path = recipe.directory / Path(reference).expanduser()
        if not is_text_data(path):
            continue
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
        out += _check_first(ctx, key, source, first, skip_bad)
    return out


def _check_first(
    ctx: RuleContext,
    key: KeyPath,
    source: dict[str, Any],
    first: list[tuple[int, Any]],
    skip_bad: bool,
) -> list[Diagnostic]:
    """The first rows of one file against its format: missing columns, or bad rows (and
    when the rows look like another format, the change that reads them)."""
    recipe, reference, fmt = ctx.recipe, source["source"], source["format"]
    columns = source.get("columns")
    rows = [row for _, row in first]
    available = sorted({name for row in rows if isinstance(row, dict) for name in row})
    missing = missing_columns(fmt, columns, available)
    looks = format_hint(fmt, columns, rows)
    where = (*key, "columns") if columns else (*key, "format")
    if rows and missing:
        return [
            recipe.diagnostic(
                "data-columns-missing",
                where,
                f"{reference} has no column {', '.join(repr(m) for m in missing)} that "
                f"format {fmt} needs (its columns: {', '.join(available) or 'none'})",
                looks
                or "map the format's fields to your columns, e.g. `columns: "
                f"{{{FIELDS[fmt][0][0]}: <your column>}}`, or pick the format that matches",
            )
        ]
    out = []
    for line, row in first:
        _, problem = normalize_row(fmt, columns, row)
        if problem:
            hint = "fix the rows, or set `data.bad_rows: skip` to drop them"
            if skip_bad:
                hint = "data.bad_rows is skip: the run drops such rows"
            out.append(
                recipe.diagnostic(
                    "data-bad-row",
                    where if looks else (*key, "source"),
                    f"{reference}:{line}: {problem}",
                    looks or hint,
                    WARNING if skip_bad and not looks else ERROR,
                )
            )
    return out


def count_rows(ctx: RuleContext) -> tuple[list[Diagnostic], dict[str, Any] | None]:
    """Read every row as `recipe run` prepares it (see the module docstring): the
    diagnostics, and the counts (RowCounts.record) - or ([], None) when the rows cannot
    be read here without a download (a hub dataset, a tokenizer not on this machine, or
    tokenizer code not allowed to run)."""
    from runner.data.cache import tokenizer_identity
    from runner.data.files import is_text_data

    settings = ctx.s
    local = all(is_text_data(Path(str(s["source"]))) for s in settings.sources)
    code = settings.model["trust_remote_code"] is True
    if not local or code or tokenizer_identity(settings.model) is None:
        return [], None
    from runner.logs import quiet_libraries

    quiet_libraries(cpu=True)  # before the tokenizer's libraries are imported
    from runner.data.rows import BadRowsError, fit_data
    from runner.data.truncation import RowsError
    from runner.errors import UserError
    from runner.expand.tokenizer import load_tokenizer

    limit_key = ctx.nearest("training", "max_length") if ctx.written("training") else ("data",)
    try:
        data = fit_data(settings, load_tokenizer(settings))
    except RowsError as exc:
        return [ctx.recipe.diagnostic(exc.rule, limit_key, exc.message, exc.hint)], None
    except BadRowsError as exc:  # past the first rows checked above
        bad = [ctx.recipe.diagnostic("data-bad-row", ("data",), row.format(),
                                     "fix the rows, or set `data.bad_rows: skip` to drop them")
               for row in exc.bad_rows[:10]]  # fmt: skip
        return bad, None
    except UserError as exc:
        return [ctx.recipe.diagnostic("data-unreadable", ("data",), str(exc))], None
    assert data.counts is not None
    rows = data.counts.record()
    if not rows["dropped"]:
        return [], rows
    return [
        ctx.recipe.diagnostic(
            "overlong-rows",
            limit_key,
            f"{rows['dropped']} of {rows['read']} rows are dropped and never train: "
            + "; ".join(f"{n} {reason}" for reason, n in rows["dropped_reasons"].items()),
            f"raise training.max_length (the longest row is {rows['longest']['tokens']} "
            "tokens), or set data.overlong_rows: truncate to keep them with a shorter prompt",
            WARNING,
        )
    ], rows
