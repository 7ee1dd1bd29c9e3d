"""The prepared data, stored once before launch and read by every training process.

runner.data.rows builds the rows; this module keeps them. `stored_data` (called by
`recipe run`) finds the recipe's data in the cache (runner.data.cache) or builds it
there (`build_into`: rows read and checked, rendered through the template, tokenized the
way SFTTrainer tokenizes, fitted to max_length by `data.overlong_rows` with
runner.data.rows.fit_data) and saves it as Arrow files with the count of what became of
every row. `write_pointer` writes `<home>/prepared.json` (home: the folder
`runner.train` is started on), saying where they are; `training_data` is the one
function a training process reads them through (`read_stored`), so SFTTrainer sees
tokenized rows that fit and only builds labels.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.data import cache
from runner.data.rows import Examples, TrainingData, fit_data
from runner.expand.loss import loss_setup
from runner.recipe.settings import Settings
from runner.strict_json import strict_json

POINTER = "prepared.json"


@dataclass(frozen=True)
class Prepared:
    """Prepared data: where it is and what it holds (`record`)."""

    path: Path
    record: dict[str, Any]
    hit: bool
    seconds: float = 0.0  # spent finding or building it in this run

    @property
    def rows(self) -> dict[str, int]:
        return self.record["rows"]

    @property
    def first_bad_row(self) -> str | None:
        return self.record.get("first_bad_row")

    def pointer(self, seconds: float) -> dict[str, Any]:
        """What run.json and `<home>/prepared.json` say about it."""
        return {
            "path": str(self.path),
            "key": self.record.get("key"),
            "cache": "hit" if self.hit else ("miss" if self.record.get("key") else "off"),
            "prepare_seconds": round(seconds, 2),
            "built_in_seconds": self.record.get("seconds"),
        }


def template_text(settings: Settings) -> str:
    """The template's own text (a chat template is part of the tokenizer's files)."""
    template = settings.template
    if template.text_file is not None:
        return template.text_file.read_text(encoding="utf-8")
    if template.path is not None and template.path.is_file():
        return template.path.read_text(encoding="utf-8")
    return template.value


def for_recipe(record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A cached record as this recipe's: the key is the content, so the entry may have
    been built from the same rows at other paths; its sources are renamed to this
    recipe's (train sources, then eval sources, in order)."""
    renamed = [
        {**fingerprint, "source": str(source["source"])}
        for fingerprint, source in zip(record.get("sources", []), settings.sources, strict=False)
    ]
    return {**record, "sources": renamed}


def stored_data(settings: Settings, *, use_cache: bool, into: Path) -> Prepared:
    """The recipe's prepared data, stored: found in the cache, or built (into the cache,
    or into `into` with the cache off or when no key can be made)."""
    started = time.perf_counter()
    key = cache.data_key(settings, template_text(settings)) if use_cache else None
    if key is not None:
        entry = cache.lookup(key)
        hit = entry is not None
        if entry is None:
            entry = cache.store(key, lambda folder: build_into(settings, folder, key))
        record = for_recipe(entry.record(), settings)
        return Prepared(entry.path, record, hit, time.perf_counter() - started)
    into.mkdir(parents=True, exist_ok=True)
    record = build_into(settings, into, None)
    (into / cache.PREPARED).write_text(strict_json(record, indent=2) + "\n", encoding="utf-8")
    return Prepared(into, record, False, time.perf_counter() - started)


def build_into(settings: Settings, folder: Path, key: str | None) -> dict[str, Any]:
    """Read, check, render, tokenize and fit the data into `folder`; its record."""
    from runner.expand.tokenizer import load_tokenizer

    started = time.perf_counter()
    tokenizer = load_tokenizer(settings)
    data = fit_data(settings, tokenizer)
    data.train.save_to_disk(str(folder / "train"))
    if data.eval is not None:
        data.eval.save_to_disk(str(folder / "eval"))
    examples = data.examples
    assert data.counts is not None  # fit_data counts every row
    return {
        "key": key,
        "recipe": settings.name,
        "rows": data.counts.record(),
        "shape": examples.shape,
        "skipped_rows": examples.skipped,
        "sources": examples.fingerprints,
        "end_of_turn": data.loss.end_of_turn,
        "assistant_only": data.loss.assistant_only,
        "first_bad_row": examples.bad_rows[0].format() if examples.bad_rows else None,
        "eval_examples": examples.eval,  # canonical rows, for held-out exact match
        "seconds": round(time.perf_counter() - started, 2),
    }


def write_pointer(home: Path, prepared: Prepared) -> dict[str, Any]:
    """Tell the training processes started on `home` where the prepared data is."""
    pointer = prepared.pointer(prepared.seconds)
    (home / POINTER).write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")
    return pointer


def read_stored(home: Path, settings: Settings) -> tuple[Any, Any, dict[str, Any]] | None:
    """(train, eval or None, record) of the data prepared for the run started on `home`,
    or None when none was (the process then prepares it itself)."""
    pointer = home / POINTER
    if not pointer.is_file():
        return None
    from datasets import load_from_disk

    folder = Path(json.loads(pointer.read_text(encoding="utf-8"))["path"])
    record = for_recipe(json.loads((folder / cache.PREPARED).read_text(encoding="utf-8")), settings)
    train = load_from_disk(str(folder / "train"))
    evaluation = load_from_disk(str(folder / "eval")) if (folder / "eval").is_dir() else None
    return train, evaluation, record


def training_data(settings: Settings, tokenizer: Any, home: Path | None = None) -> TrainingData:
    """The data SFTTrainer trains on: what `recipe run` prepared for the processes started
    on `home` (stored by `stored_data`: tokenized, read from disk), else read, checked,
    rendered and fitted here (`fit_data`)."""
    prepared = read_stored(home, settings) if home is not None else None
    if prepared is None:
        return fit_data(settings, tokenizer)
    train, evaluation, record = prepared
    examples = Examples(
        train=[],
        eval=record["eval_examples"],
        shape=record["shape"],
        skipped=record["skipped_rows"],
        fingerprints=record["sources"],
    )
    # decided again from the same settings and tokenizer, as when the rows were prepared
    return TrainingData(
        examples, train, evaluation, loss_setup(settings, tokenizer, record["shape"])
    )
