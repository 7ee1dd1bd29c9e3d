"""Rows that `max_length` leaves with nothing to train, found before any model loads.

TRL truncates each tokenized row to `max_length` and drops the rows left with no trained
token (a prompt that alone fills `max_length`). When that is every row, SFTTrainer stops
on an empty dataset (`num_samples=0`) after the model has loaded; `recipe run` and
`recipe preview` stop here instead, with the count and the fix. Tokenizes with the same
code as `recipe preview` (runner.data.tokens), row by row, and stops at the first row
that keeps a trained token, so a healthy dataset costs a row or two.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from runner.data.sources import DataError

if TYPE_CHECKING:
    from runner.data.prepare import TrainingData
    from runner.recipe.settings import Settings


class NothingToTrainError(DataError):
    """Every row of a split loses its whole completion to `max_length`."""


def require_trained_tokens(data: TrainingData, tokenizer: Any, settings: Settings) -> None:
    """Raise NothingToTrainError when `max_length` cuts away the trained tokens of every
    training row (or every eval row). Packing splits rows into chunks instead of cutting
    them, and `max_length: null` cuts nothing, so neither is checked."""
    from runner.data.tokens import trained_tokens

    def masks(rows: Any) -> Iterator[list[int]]:
        for row in rows:
            yield trained_tokens(tokenizer, row, data.end_of_turn)[1]

    splits = {"training": data.train, "eval": data.eval}
    require_trained_masks(
        {split: masks(rows) for split, rows in splits.items() if rows is not None}, settings
    )


def require_trained_masks(splits: dict[str, Iterable[list[int]]], settings: Settings) -> None:
    """The same check over the trained-token masks of each split (1 = trained), read
    until the first row that keeps a trained token."""
    training = settings.training
    max_length = training["max_length"]
    if max_length is None or training["packing"]:
        return
    keep_end = training["truncation_mode"] == "keep_end"
    for split, masks in splits.items():
        prompts: list[int] = []
        for mask in masks:
            kept = mask[-max_length:] if keep_end else mask[:max_length]
            if any(kept):
                break
            prompts.append(mask.index(1) if 1 in mask else len(mask))
        else:
            if prompts:
                raise NothingToTrainError(_message(split, prompts, max_length))


def _message(split: str, prompts: list[int], max_length: int) -> str:
    shortest, longest = min(prompts), max(prompts)
    sizes = f"{shortest}" if shortest == longest else f"{shortest} to {longest}"
    return (
        f"every {split} row ({len(prompts)}) loses its whole answer to training.max_length "
        f"{max_length}: the prompts alone are {sizes} tokens (median "
        f"{statistics.median(prompts):g}), so nothing would be trained. Raise "
        f"training.max_length above {shortest} (better: above the longest prompt plus its "
        "answer), or shorten the prompts"
    )
