"""A recipe's data, from sources to the rows SFTTrainer trains on: this module builds
the rows; runner.data.store keeps them for the training processes.

`load_examples` (no tokenizer, no model) reads every source, selects and shuffles rows
with the recipe's seed, checks each row and applies `data.bad_rows`, mixes the sources
and splits off the eval rows. `fit_data` renders and tokenizes them as SFTTrainer would
and applies `data.overlong_rows` (runner.data.truncation), counting every row: the one
path `recipe lint --data`, `recipe preview` and `recipe run` read data through.
`to_trl_rows` (runner.data.trl_rows) renders the examples into TRL's rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.data.formats import FIELDS, format_hint, missing_columns, normalize_row
from runner.data.sources import DataError, display_source, source_rows
from runner.data.templates import PromptFormat
from runner.data.trl_rows import to_trl_rows, trl_row
from runner.expand.loss import LossSetup, loss_setup, recipe_shape
from runner.recipe.settings import Settings

if TYPE_CHECKING:
    from datasets import Dataset

    from runner.data.truncation import RowCounts, SplitFit

MAX_LISTED = 10


@dataclass
class BadRow:
    source: str
    row: int  # 1-based position in the source
    problem: str
    line: int | None = None  # 1-based line of a local .jsonl/.json/.csv file

    def format(self) -> str:
        where = f"{self.line}" if self.line is not None else f"row {self.row}"
        return f"{self.source}:{where}: {self.problem}"


@dataclass
class Examples:
    """Checked canonical examples of a recipe, ready to be rendered; `*_origins[i]` says
    where row i comes from (`file:line`, or `source:row N`); `read` counts every row
    selected from the sources, bad ones included."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    shape: str  # "instruction", "messages", "text" or "mixed" (instruction + messages)
    bad_rows: list[BadRow] = field(default_factory=list)
    skipped: int = 0
    fingerprints: list[dict[str, Any]] = field(default_factory=list)
    train_origins: list[str] = field(default_factory=list)
    eval_origins: list[str] = field(default_factory=list)
    read: int = 0


class BadRowsError(DataError):
    """Bad rows under `bad_rows: error`; the message lists the first ones and the count."""

    def __init__(self, bad_rows: list[BadRow]):
        self.bad_rows = bad_rows
        lines = ["bad data rows, nothing was trained:"]
        lines += [bad.format() for bad in bad_rows[:MAX_LISTED]]
        if len(bad_rows) > MAX_LISTED:
            lines.append(f"... and {len(bad_rows) - MAX_LISTED} more bad rows")
        lines.append(
            f"{len(bad_rows)} bad row(s); fix them, or set `data.bad_rows: skip` to drop them"
        )
        super().__init__("\n".join(lines))


def parse_rows(rows: int | str | None, available: int) -> range:
    """The positions a `rows:` selection keeps: a count (the first N) or "start:stop"."""
    if rows is None:
        return range(available)
    if isinstance(rows, int):
        return range(min(rows, available))
    start, _, stop = str(rows).partition(":")
    return range(available)[slice(int(start) if start else None, int(stop) if stop else None)]


@dataclass
class SourceExamples:
    """One source's canonical examples in selection order, where each comes from, its
    bad rows, and its fingerprint record for run.json."""

    examples: list[dict[str, Any]]
    origins: list[str]
    bad: list[BadRow]
    record: dict[str, Any]


def read_source(source: dict[str, Any], seed: int, shuffle: bool) -> SourceExamples:
    """Canonical examples and bad rows of one source, in selection order.

    Rows are read as written (runner.data.sources.source_rows: a local text file through
    the runner's own reader, so a file that is not UTF-8, not parseable or empty stops
    here with its line, and bad rows are reported by line)."""
    from tqdm.auto import tqdm

    name = display_source(source)
    read = source_rows(source)
    fmt = source["format"]
    columns = source.get("columns")
    missing = missing_columns(fmt, columns, read.columns)
    if missing:
        first = list(_selected(read.rows, list(range(min(len(read.rows), 20)))))
        hint = format_hint(fmt, columns, first) or (
            f"map them with `columns: {{{FIELDS[fmt][0][0]}: your_column, ...}}` or choose "
            "another format"
        )
        raise DataError(
            f"{name}: no column {', '.join(repr(c) for c in missing)} for format {fmt}; "
            f"its columns are {', '.join(read.columns)} ({hint})"
        )
    order = list(range(len(read.rows)))
    if shuffle:
        random.Random(seed).shuffle(order)
    chosen = [order[i] for i in parse_rows(source.get("rows"), len(order))]
    rows = _selected(read.rows, chosen)
    examples, origins, bad = [], [], []
    progress = tqdm(
        zip(chosen, rows, strict=True),
        total=len(chosen),
        desc=f"Checking {name}",
        disable=len(chosen) < 2000,
    )
    for index, row in progress:
        example, problem = normalize_row(fmt, columns, row)
        line = read.lines[index] if read.lines is not None else None
        if problem:
            bad.append(BadRow(name, index + 1, problem, line))
        else:
            examples.append(example)
            origins.append(f"{name}:{line}" if line is not None else f"{name}:row {index + 1}")
    return SourceExamples(examples, origins, bad, {**read.record, "rows_used": len(examples)})


def _selected(rows: Any, chosen: list[int]) -> Any:
    """The chosen rows, in order (a Dataset selects without copying its rows)."""
    if chosen == list(range(len(rows))):
        return rows
    if isinstance(rows, list):
        return [rows[i] for i in chosen]
    return rows.select(chosen)


def load_examples(settings: Settings) -> Examples:
    """Read, check, mix and split a recipe's data (no tokenizer, no model).

    Raises BadRowsError under `bad_rows: error` when any row is bad, and DataError for
    a source that cannot be read or lacks a column.
    """
    data = settings.data
    seed = settings.seed
    shuffle = bool(data["shuffle"])
    train: list[tuple[dict[str, Any], str]] = []
    eval_rows: list[tuple[dict[str, Any], str]] = []
    bad, prints = [], []
    for role, sources in (("train", data["train"]), ("eval", settings.eval_sources)):
        for source in sources:
            read = read_source(source, seed, shuffle and role == "train")
            (train if role == "train" else eval_rows).extend(
                zip(read.examples, read.origins, strict=True)
            )
            bad += read.bad
            prints.append({"role": role, **read.record})
    if bad and data["bad_rows"] == "error":
        raise BadRowsError(bad)
    read_count = len(train) + len(eval_rows) + len(bad)
    if shuffle and len(data["train"]) > 1:
        random.Random(seed).shuffle(train)
    if isinstance(data.get("eval"), dict):
        held = max(1, round(len(train) * float(data["eval"]["fraction"])))
        if held >= len(train):
            raise DataError(
                f"data.eval.fraction {data['eval']['fraction']} of {len(train)} rows leaves "
                "nothing to train on (lower the fraction or add rows)"
            )
        train, eval_rows = train[:-held], train[-held:]
    if not train:
        raise DataError(
            "no training rows left after selection and bad-row skipping (check `rows:` and the data)"
        )
    return Examples(
        train=[example for example, _ in train],
        eval=[example for example, _ in eval_rows],
        shape=recipe_shape(settings),
        bad_rows=bad,
        skipped=len(bad),
        fingerprints=prints,
        train_origins=[origin for _, origin in train],
        eval_origins=[origin for _, origin in eval_rows],
        read=read_count,
    )


@dataclass
class TrainingData:
    """A recipe's checked examples rendered for SFTTrainer, with its loss setup.

    `train`/`eval` are TRL rows (`rendered_data`) or tokenized rows that each fit
    max_length (`fit_data`, or stored by `recipe run`: runner.data.store); `loss` says
    which tokens are trained (runner.expand.loss); `counts` says what became of every row
    (runner.data.truncation.RowCounts), when they were fitted."""

    examples: Examples
    train: Dataset
    eval: Dataset | None
    loss: LossSetup
    counts: RowCounts | None = None

    @property
    def end_of_turn(self) -> str:
        return self.loss.end_of_turn

    @property
    def tokenized(self) -> bool:
        """Tokenized (fitted, or prepared by `recipe run`): the masks are in the rows."""
        return "input_ids" in self.train.column_names


def rendered_data(settings: Settings, tokenizer: Any) -> TrainingData:
    """The recipe's rows rendered into TRL's dataset types, not tokenized (as SFTTrainer
    would take them; the tests compare our tokenization with its own)."""
    examples = load_examples(settings)
    loss = loss_setup(settings, tokenizer, examples.shape)
    fmt = PromptFormat.of(settings)
    return TrainingData(
        examples=examples,
        train=to_trl_rows(examples.train, fmt, loss),
        eval=to_trl_rows(examples.eval, fmt, loss) if examples.eval else None,
        loss=loss,
    )


def fit_data(settings: Settings, tokenizer: Any) -> TrainingData:
    """Read, check, render and tokenize the recipe's rows as SFTTrainer would, apply
    `data.overlong_rows` to those longer than the limit (runner.data.truncation), and
    count what became of every row. Raises RowsError (before any model loads) when a
    row runs past the model's context, when the policy is `error`, or when nothing is
    left to train."""
    from datasets import Dataset

    from runner.data.truncation import RowCounts, require_fit, row_limit

    examples = load_examples(settings)
    if settings.has_eval_data and not examples.eval:
        raise DataError(
            "data.eval is given but none of its rows is left (every one was a bad row "
            "skipped by data.bad_rows: skip); fix the rows, or delete data.eval"
        )
    loss = loss_setup(settings, tokenizer, examples.shape)
    fmt = PromptFormat.of(settings)
    splits = {"training": fitted(settings, tokenizer, examples.train, examples.train_origins,
                                 fmt, loss)}  # fmt: skip
    if examples.eval:
        splits["eval"] = fitted(settings, tokenizer, examples.eval, examples.eval_origins,
                                fmt, loss)  # fmt: skip
    require_fit(splits, row_limit(settings), settings.overlong_rows)
    train, evaluation = splits["training"], splits.get("eval")
    counts = RowCounts.of(
        examples.read, examples.skipped, train, evaluation, settings.overlong_rows
    )
    if evaluation is not None:  # exact match answers the rows the eval loss is measured on
        examples.eval = [examples.eval[i] for i in evaluation.kept]
    return TrainingData(
        examples=examples,
        train=Dataset.from_list(train.rows),
        eval=Dataset.from_list(evaluation.rows) if evaluation is not None else None,
        loss=loss,
        counts=counts,
    )


def fitted(
    settings: Settings,
    tokenizer: Any,
    examples: list[dict[str, Any]],
    origins: list[str],
    fmt: PromptFormat,
    loss: LossSetup,
) -> SplitFit:
    """Canonical examples rendered through `fmt`, tokenized as SFTTrainer would with the
    mask of `loss`, and fitted to the recipe's limit by `data.overlong_rows`
    (runner.data.truncation)."""
    from runner.data.tokens import trained_tokens
    from runner.data.truncation import fit_split, row_limit

    def tokens_of(example: dict[str, Any]) -> tuple[list[int], list[int]]:
        row = trl_row(example, fmt, loss.end_of_turn, loss.assistant_only)
        return trained_tokens(tokenizer, row, loss.end_of_turn)

    limit = row_limit(settings)
    return fit_split(examples, origins, tokens_of, limit, settings.overlong_rows, loss.mask_column)
