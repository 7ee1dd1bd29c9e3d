"""Rows that do not fit: one policy for rows longer than max_length, and every row counted.

A row is overlong when its tokens (prompt + answer + end-of-turn, tokenized as SFTTrainer
tokenizes them: runner.data.tokens) are more than `training.max_length`. Left to TRL it
would be cut on the right and train without its end-of-turn token, or vanish when its
prompt alone fills max_length. `data.overlong_rows` decides instead, before TRL sees the
rows:

- `drop` (default): the row is left out, so no row trains without its end; the count,
  the reason and the longest row are reported;
- `truncate`: the prompt is shortened, never the answer: a conversation loses its oldest
  turns (the system turn stays), then the user's text is cut at its end; a row whose
  answer alone does not fit is dropped. Text rows have no prompt: they are cut at their
  end, and so lose their end-of-text token;
- `error`: stop before any model loads, naming the rows.

With `max_length: null` the model's context is the limit, and a longer row is an error
whatever the policy (`max-length-over-context`, as for a max_length past the context).
With packing_strategy `bfd_split` a long row is split over packed rows, every token kept:
nothing is overlong.

`fit_split` returns the tokenized rows SFTTrainer trains on, each within the limit and
with a trained token, so TRL cuts and drops nothing; `RowCounts` says what became of
every row. `recipe lint --data`, `recipe preview` and `recipe run` all count through it
(runner.data.rows.fit_data).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.data.sources import DataError
from runner.recipe.models import model_config

if TYPE_CHECKING:
    from runner.recipe.settings import Settings

POLICIES = ("drop", "truncate", "error")
LISTED = 5
Tokens = tuple[list[int], list[int]]  # (input ids, trained mask)


@dataclass(frozen=True)
class Limit:
    """The most tokens a row may have (None: no limit), and where the limit comes from."""

    tokens: int | None
    max_length: int | None  # None: the model's context is the limit
    context: int | None

    @property
    def words(self) -> str:
        if self.max_length is not None:
            return f"training.max_length {self.max_length}"
        return f"the model's context of {self.context} tokens"


def model_context(settings: Settings) -> int | None:
    """The model's context length (max_position_embeddings), when known without loading."""
    try:
        config = model_config(settings.model) or {}
    except (OSError, ValueError, TypeError):
        return None
    context = config.get("max_position_embeddings")
    return context if isinstance(context, int) and context > 0 else None


def row_limit(settings: Settings) -> Limit:
    """The limit a recipe's rows must fit (see the module docstring)."""
    training, max_length = settings.training, settings.max_length
    context = model_context(settings)
    if training["packing"] and training["packing_strategy"] == "bfd_split":
        return Limit(None, max_length, context)  # split, never cut
    if max_length is not None:
        return Limit(int(max_length), int(max_length), context)
    return Limit(context, None, context)


class RowsError(DataError):
    """Rows that cannot be trained as the recipe says; reported like the lint rule `rule`
    (`error[rule]: message (hint)`)."""

    def __init__(self, rule: str, message: str, hint: str) -> None:
        self.rule, self.message, self.hint = rule, message, hint
        super().__init__(f"{message} ({hint})")

    def report(self) -> list[str]:
        return [f"error[{self.rule}]: {self.message} ({self.hint})"]


@dataclass(frozen=True)
class Seen:
    """One row as read: where it comes from, its tokens, and its prompt's tokens."""

    origin: str
    tokens: int
    prompt: int


@dataclass
class SplitFit:
    """The rows of one split that train (tokenized, within the limit), and the others."""

    rows: list[dict[str, list[int]]] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # positions in the split of kept rows
    dropped: dict[str, list[Seen]] = field(default_factory=dict)  # reason -> rows
    cut: list[Seen] = field(default_factory=list)
    over: list[Seen] = field(default_factory=list)  # longer than the limit, as read
    longest: Seen | None = None

    @property
    def dropped_count(self) -> int:
        return sum(len(rows) for rows in self.dropped.values())


def fit_split(
    examples: list[dict[str, Any]],
    origins: list[str],
    tokens_of: Callable[[dict[str, Any]], Tokens],
    limit: Limit,
    policy: str,
    mask_column: str | None,
) -> SplitFit:
    """Tokenize each canonical example (`tokens_of`: rendered through the template and
    tokenized as SFTTrainer would) and apply the policy to those over the limit. Kept
    rows are `{"input_ids", mask_column}` (no mask column for text: every token trains)."""
    from tqdm.auto import tqdm

    fit = SplitFit()
    rows = tqdm(examples, desc="Tokenizing", disable=len(examples) < 2000)
    for index, example in enumerate(rows):
        ids, mask = tokens_of(example)
        seen = Seen(origins[index], len(ids), mask.index(1) if 1 in mask else len(ids))
        if fit.longest is None or seen.tokens > fit.longest.tokens:
            fit.longest = seen
        if limit.tokens is not None and len(ids) > limit.tokens:
            fit.over.append(seen)
            if limit.max_length is None or policy != "truncate":
                fit.dropped.setdefault(f"longer than {limit.words}", []).append(seen)
                continue
            shorter = shortened(example, ids, mask, tokens_of, limit.tokens)
            if shorter is None:
                reason = f"answer alone longer than {limit.words} allows"
                fit.dropped.setdefault(reason, []).append(seen)
                continue
            ids, mask = shorter
            fit.cut.append(seen)
        if not any(mask):  # TRL drops rows without a trained token; say so first
            fit.dropped.setdefault("no trained token", []).append(seen)
            continue
        fit.rows.append(
            {"input_ids": ids, mask_column: mask} if mask_column else {"input_ids": ids}
        )
        fit.kept.append(index)
    return fit


# --- truncate: shorten the prompt, never the answer ------------------------------------


def shortened(
    example: dict[str, Any],
    ids: list[int],
    mask: list[int],
    tokens_of: Callable[[dict[str, Any]], Tokens],
    limit: int,
) -> Tokens | None:
    """The tokens of the example with its prompt shortened to fit `limit`, or None when
    its answer alone does not fit. Text rows are cut at their end."""

    def fits(candidate: dict[str, Any]) -> Tokens | None:
        tokens = tokens_of(candidate)
        return tokens if len(tokens[0]) <= limit else None

    if "text" in example:
        return ids[:limit], mask[:limit]
    if "messages" in example:
        return _shorter_conversation(example["messages"], fits)
    for name in ("input", "instruction"):  # the context goes first, then the instruction
        found = _longest_prefix(example, name, fits)
        if found is not None:
            return found
        example = {**example, name: ""}
    return None


def _shorter_conversation(
    turns: list[dict[str, str]], fits: Callable[[dict[str, Any]], Tokens | None]
) -> Tokens | None:
    """Drop the oldest turns (the system turn stays; what is left starts with a user
    turn and keeps the last assistant turn), then cut that user turn's text."""
    system = turns[:1] if turns[0]["role"] == "system" else []
    rest = turns[len(system) :]
    last_answer = max(i for i, turn in enumerate(rest) if turn["role"] == "assistant")
    users = [i for i, turn in enumerate(rest[:last_answer]) if turn["role"] == "user"]
    if not users:
        return None
    for start in (i for i in users if i > 0):
        found = fits({"messages": system + rest[start:]})
        if found is not None:
            return found
    kept = system + rest[users[-1] :]
    user = len(system)

    def with_text(text: str) -> dict[str, Any]:
        return {"messages": [*kept[:user], {**kept[user], "content": text}, *kept[user + 1 :]]}

    return _search(kept[user]["content"], with_text, fits)


def _longest_prefix(
    example: dict[str, Any], name: str, fits: Callable[[dict[str, Any]], Tokens | None]
) -> Tokens | None:
    """The tokens of the example with field `name` cut to its longest prefix that fits."""
    if not example[name]:
        return None
    return _search(example[name], lambda text: {**example, name: text}, fits)


def _search(
    text: str,
    make: Callable[[str], dict[str, Any]],
    fits: Callable[[dict[str, Any]], Tokens | None],
) -> Tokens | None:
    """Binary search for the longest prefix of `text` whose example fits (a few
    tokenizations per overlong row, never one per character)."""
    whole = fits(make(text))
    if whole is not None:
        return whole
    best = fits(make(""))
    if best is None:
        return None
    low, high = 0, len(text)  # make(text[:low]) fits; make(text) does not
    while high - low > 1:
        middle = (low + high) // 2
        found = fits(make(text[:middle]))
        if found is not None:
            low, best = middle, found
        else:
            high = middle
    return best


# --- what became of every row ----------------------------------------------------------


@dataclass
class RowCounts:
    """What became of every row: read = train + eval + dropped + bad, and cut rows are
    among those trained or evaluated."""

    read: int
    bad: int
    train: int
    eval: int
    dropped: dict[str, int]
    cut: int
    policy: str
    longest: Seen | None = None

    @classmethod
    def of(
        cls, read: int, bad: int, train: SplitFit, evaluation: SplitFit | None, policy: str
    ) -> RowCounts:
        splits = [s for s in (train, evaluation) if s is not None]
        dropped: dict[str, int] = {}
        for split in splits:
            for reason, rows in split.dropped.items():
                dropped[reason] = dropped.get(reason, 0) + len(rows)
        seen = [s.longest for s in splits if s.longest is not None]
        return cls(
            read=read,
            bad=bad,
            train=len(train.rows),
            eval=len(evaluation.rows) if evaluation is not None else 0,
            dropped=dropped,
            cut=sum(len(s.cut) for s in splits),
            policy=policy,
            longest=max(seen, key=lambda s: s.tokens) if seen else None,
        )

    def line(self) -> str:
        """`rows: 64 read, 48 trained, 0 eval; 16 dropped (longer than ...)`."""
        return rows_line(self.record())

    def record(self) -> dict[str, Any]:
        """The counts as run.json and the prepared data's record keep them."""
        longest = self.longest
        return {
            "read": self.read,
            "train": self.train,
            "eval": self.eval,
            "dropped": sum(self.dropped.values()),
            "dropped_reasons": dict(self.dropped),
            "cut": self.cut,
            "bad": self.bad,
            "skipped": self.bad,  # the name run.json used before (bad rows skipped)
            "overlong_rows": self.policy,
            "longest": {"row": longest.origin, "tokens": longest.tokens} if longest else None,
        }


def rows_line(rows: dict[str, Any]) -> str:
    """What became of every row, in one line (from `RowCounts.record()`, as run.json and
    the prepared data keep it): the same line in lint --data, preview and run."""
    text = f"rows: {rows['read']} read, {rows['train']} trained, {rows['eval']} eval"
    for reason, count in rows["dropped_reasons"].items():
        text += f"; {count} dropped ({reason}; data.overlong_rows: {rows['overlong_rows']})"
    if rows["cut"]:
        text += f"; {rows['cut']} cut to fit (prompt shortened; data.overlong_rows: truncate)"
    if rows["bad"]:
        text += f"; {rows['bad']} bad rows skipped (data.bad_rows: skip)"
    longest = rows.get("longest")
    if longest:
        text += f"; longest {longest['tokens']} tokens ({longest['row']})"
    return text


# --- rows the run cannot train as the recipe says --------------------------------------


def require_fit(
    splits: dict[str, SplitFit], limit: Limit, policy: str, bad_rows_left: int = 0
) -> None:
    """Raise RowsError when a row runs past the model's context (max_length null), when
    `data.overlong_rows: error` meets an overlong row, or when a split has rows but none
    left to train."""
    for split, fit in splits.items():
        if fit.over and limit.max_length is None:
            raise _past_context(split, fit, limit)
    for split, fit in splits.items():
        if fit.over and policy == "error":
            raise _overlong_error(split, fit, limit)
    for split, fit in splits.items():
        if not fit.rows and fit.dropped_count:
            raise _nothing_left(split, fit, limit)


def _listed(rows: list[Seen]) -> str:
    """The longest rows first, rows of one length in file order."""
    ordered = sorted(rows, key=lambda s: (-s.tokens, *_in_order(s.origin)))
    text = ", ".join(f"{s.origin} ({s.tokens} tokens)" for s in ordered[:LISTED])
    return text + (f" and {len(rows) - LISTED} more" if len(rows) > LISTED else "")


def _in_order(origin: str) -> tuple[str, int]:
    """`file:12` (or `source:row 12`) as (file, 12), so that rows sort in file order."""
    name, _, where = origin.rpartition(":")
    digits = "".join(ch for ch in where if ch.isdigit())
    return name, int(digits) if digits else 0


def _past_context(split: str, fit: SplitFit, limit: Limit) -> RowsError:
    longest = max(fit.over, key=lambda s: s.tokens)
    others = f" ({len(fit.over)} rows are)" if len(fit.over) > 1 else ""
    return RowsError(
        "max-length-over-context",
        f"training.max_length is null, but the longest {split} row, {longest.origin}, is "
        f"{longest.tokens} tokens: longer than the model's context of {limit.context} "
        f"tokens{others}",
        f"set training.max_length to {limit.context} or less (longer rows then follow "
        "data.overlong_rows), or shorten the rows",
    )


def _overlong_error(split: str, fit: SplitFit, limit: Limit) -> RowsError:
    return RowsError(
        "overlong-rows",
        f"{len(fit.over)} {split} row(s) are longer than {limit.words}: {_listed(fit.over)}",
        f"raise training.max_length to {max(s.tokens for s in fit.over)}, shorten the rows, "
        "or set data.overlong_rows: drop (leave them out) or truncate (shorten their prompts)",
    )


def _nothing_left(split: str, fit: SplitFit, limit: Limit) -> RowsError:
    seen = [s for rows in fit.dropped.values() for s in rows]
    prompts = [s.prompt for s in seen]
    shortest, longest = min(s.tokens for s in seen), max(s.tokens for s in seen)
    return RowsError(
        "overlong-rows",
        f"every {split} row ({len(seen)}) is dropped ({'; '.join(fit.dropped)}), so nothing "
        f"would be trained: the rows are {_span(shortest, longest)} tokens, their prompts "
        f"alone {_span(min(prompts), max(prompts))} (median {statistics.median(prompts):g})",
        f"raise training.max_length to {longest} (the longest row; at least {shortest} for "
        "any row to fit), or shorten the prompts",
    )


def _span(low: int, high: int) -> str:
    return f"{low}" if low == high else f"{low} to {high}"
