"""A recipe's data, from sources to the rows SFTTrainer trains on.

`load_examples` (no tokenizer, no model) reads every source, selects and shuffles rows
with the recipe's seed, checks each row and applies `data.bad_rows`, mixes the sources
and splits off the eval rows. `to_trl_rows` renders canonical examples through the
recipe's template into TRL's dataset types:
- text templates (alpaca, plain): {"prompt": text, "completion": response + end-of-turn}
  (prompt-completion, so only the completion is trained);
- the chat template: {"prompt": [turns], "completion": [assistant turn]} (conversational
  prompt-completion), or {"messages": [...]} when any source is multi-turn (then only
  assistant turns are trained, through a training template with generation markers);
- text data: {"text": ...} (every token trained).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.data.formats import SHAPE, missing_columns, normalize_row
from runner.data.prepared import load_prepared
from runner.data.sources import DataError, display_source, source_rows
from runner.data.templates import (
    PromptFormat,
    chat_messages,
    render_text_prompt,
    with_system_prompt,
)
from runner.recipe.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from datasets import Dataset

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
    """Checked canonical examples of a recipe, ready to be rendered."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    shape: str  # "instruction", "messages", "text" or "mixed" (instruction + messages)
    bad_rows: list[BadRow] = field(default_factory=list)
    skipped: int = 0
    fingerprints: list[dict[str, Any]] = field(default_factory=list)


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


def read_source(
    source: dict[str, Any], seed: int, shuffle: bool
) -> tuple[list[dict[str, Any]], list[BadRow], dict[str, Any]]:
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
        raise DataError(
            f"{name}: no column {', '.join(repr(c) for c in missing)} for format {fmt}; "
            f"its columns are {', '.join(read.columns)} "
            f"(map them with `columns: {{field: your_column}}` or choose another format)"
        )
    order = list(range(len(read.rows)))
    if shuffle:
        random.Random(seed).shuffle(order)
    chosen = [order[i] for i in parse_rows(source.get("rows"), len(order))]
    rows = _selected(read.rows, chosen)
    examples, bad = [], []
    progress = tqdm(
        zip(chosen, rows, strict=True),
        total=len(chosen),
        desc=f"Checking {name}",
        disable=len(chosen) < 2000,
    )
    for index, row in progress:
        example, problem = normalize_row(fmt, columns, row)
        if problem:
            line = read.lines[index] if read.lines is not None else None
            bad.append(BadRow(name, index + 1, problem, line))
        else:
            examples.append(example)
    return examples, bad, {**read.record, "rows_used": len(examples)}


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
    train, bad, prints = [], [], []
    for source in data["train"]:
        examples, source_bad, record = read_source(source, seed, shuffle)
        train += examples
        bad += source_bad
        prints.append({"role": "train", **record})
    eval_rows: list[dict[str, Any]] = []
    if isinstance(data.get("eval"), list):
        for source in data["eval"]:
            examples, source_bad, record = read_source(source, seed, shuffle=False)
            eval_rows += examples
            bad += source_bad
            prints.append({"role": "eval", **record})
    if bad and data["bad_rows"] == "error":
        raise BadRowsError(bad)
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
    shapes = {
        SHAPE[s["format"]]
        for s in data["train"] + (data["eval"] if isinstance(data.get("eval"), list) else [])
    }
    return Examples(
        train=train,
        eval=eval_rows,
        shape=_shape(shapes),
        bad_rows=bad,
        skipped=len(bad),
        fingerprints=prints,
    )


def _shape(shapes: set[str]) -> str:
    if len(shapes) == 1:
        return next(iter(shapes))
    if "text" in shapes:
        raise DataError(
            "format text cannot be mixed with other formats in one recipe "
            "(text trains every token; put it in its own recipe or convert it)"
        )
    return "mixed"


def trl_row(
    example: dict[str, Any], fmt: PromptFormat, end_of_turn: str, as_messages: bool
) -> dict[str, Any]:
    """One canonical example as a TRL training row (see the module docstring)."""
    system = fmt.system_prompt
    if "text" in example:
        return {"text": example["text"]}
    if "messages" in example:
        return {"messages": with_system_prompt(example["messages"], system)}
    if fmt.template.is_text:
        prompt = render_text_prompt(fmt.template, example["instruction"], example["input"])
        return {"prompt": prompt, "completion": example["response"] + end_of_turn}
    prompt = chat_messages(example["instruction"], example["input"], system)
    answer = [{"role": "assistant", "content": example["response"]}]
    if as_messages:
        return {"messages": prompt + answer}
    return {"prompt": prompt, "completion": answer}


def to_trl_rows(
    examples: list[dict[str, Any]], shape: str, fmt: PromptFormat, end_of_turn: str
) -> Dataset:
    """Render canonical examples into a Dataset of TRL rows."""
    from datasets import Dataset

    as_messages = shape in ("messages", "mixed")
    rows = [trl_row(e, fmt, end_of_turn, as_messages) for e in examples]
    return Dataset.from_list(rows)


def uses_assistant_only_loss(shape: str) -> bool:
    """Multi-turn conversations train assistant turns only."""
    return shape in ("messages", "mixed")


@dataclass
class TrainingData:
    """A recipe's checked examples rendered for SFTTrainer, with what the loss needs."""

    examples: Examples
    train: Dataset
    eval: Dataset | None
    end_of_turn: str
    assistant_only: bool  # multi-turn: assistant turns only (else completion only)

    @property
    def completion_only(self) -> bool:
        """Instruction rows train their completion only."""
        return self.examples.shape == "instruction"

    @property
    def tokenized(self) -> bool:
        """Prepared by `recipe run` (runner.data.prepared): the masks are in the rows."""
        return "input_ids" in self.train.column_names

    @property
    def assistant_only_loss(self) -> bool:
        """Whether SFTTrainer must find the assistant turns itself (tokenized rows carry
        their assistant mask, and TRL refuses the flag for them)."""
        return self.assistant_only and not self.tokenized


def training_data(settings: Settings, tokenizer: Any, home: Path | None = None) -> TrainingData:
    """The data SFTTrainer trains on: what `recipe run` prepared for the processes started
    on `home` (runner.data.prepared: tokenized, read from disk), else read, checked and
    rendered through the recipe's template here.

    Multi-turn data switches the tokenizer to a chat template with generation markers
    (rendering identically), so only assistant turns are trained.
    """
    from runner.data.templates import use_training_chat_template
    from runner.data.truncation import require_trained_tokens
    from runner.expand.tokenizer import end_of_turn_token

    prepared = load_prepared(home, settings) if home is not None else None
    if prepared is not None:
        train, evaluation, record = prepared
        if record["assistant_only"]:
            use_training_chat_template(tokenizer)
        examples = Examples(
            train=[],
            eval=record["eval_examples"],
            shape=record["shape"],
            skipped=record["skipped_rows"],
            fingerprints=record["sources"],
        )
        return TrainingData(
            examples, train, evaluation, record["end_of_turn"], record["assistant_only"]
        )
    examples = load_examples(settings)
    end_of_turn = end_of_turn_token(tokenizer, settings.template)
    assistant_only = uses_assistant_only_loss(examples.shape)
    if assistant_only:
        use_training_chat_template(tokenizer)
    fmt = PromptFormat.of(settings)
    data = TrainingData(
        examples=examples,
        train=to_trl_rows(examples.train, examples.shape, fmt, end_of_turn),
        eval=to_trl_rows(examples.eval, examples.shape, fmt, end_of_turn)
        if examples.eval
        else None,
        end_of_turn=end_of_turn,
        assistant_only=assistant_only,
    )
    require_trained_tokens(data, tokenizer, settings)  # before any model loads
    return data
