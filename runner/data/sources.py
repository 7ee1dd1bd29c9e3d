"""Read one data source of a recipe into a `datasets.Dataset`.

A source is a local file (.json array or lines, .jsonl, .csv, .parquet), a local dataset
directory (saved with `Dataset.save_to_disk`, or a folder of data files), or a hub
dataset id read with `datasets.load_dataset` (`subset` is its configuration name).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import UserError

if TYPE_CHECKING:
    from datasets import Dataset

SAVED_MARKERS = ("state.json", "dataset_dict.json")  # written by save_to_disk
BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(UserError):
    """A data problem a user can fix; the message says where, what, and how."""


def display_source(source: dict[str, Any], cwd: Path | None = None) -> str:
    """A source as the user will recognise it: relative to the working directory if local."""
    ref = str(source["source"])
    path = Path(ref)
    if path.is_absolute():
        try:
            return str(path.relative_to(cwd or Path.cwd()))
        except ValueError:
            return ref
    return ref


def load_source(source: dict[str, Any]) -> Dataset:
    """The rows of one source (the chosen split), as a Dataset."""
    import datasets

    ref = str(source["source"])
    name = display_source(source)
    split = source["split"]
    path = Path(ref)
    try:
        if path.suffix in BUILDERS and not path.is_dir():
            if not path.is_file():
                raise DataError(
                    f"{name}: no such file (check the path; it is relative to the recipe file)"
                )
            return datasets.load_dataset(BUILDERS[path.suffix], data_files=str(path), split="train")
        if path.is_dir() and any((path / f).is_file() for f in SAVED_MARKERS):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise DataError(
                        f"{name}: no split '{split}'; it has {', '.join(loaded)} (set `split:`)"
                    )
                return loaded[split]
            return loaded
        return datasets.load_dataset(ref, name=source.get("subset"), split=split)
    except DataError:
        raise
    except Exception as exc:  # datasets raises many kinds; none should become a traceback
        raise _load_error(name, path, exc) from None


def _load_error(name: str, path: Path, exc: Exception) -> DataError:
    """What went wrong loading a source, in words: a local file that is not what its
    suffix says, a path or id that is not found, or a hub dataset that cannot load."""
    if path.is_file():
        cause = exc.__cause__ or exc.__context__ or exc
        return DataError(
            f"{name}: cannot read it as a {path.suffix} file: {type(cause).__name__}: "
            f"{_first_line(cause)} (check that the contents match the suffix)"
        )
    if isinstance(exc, FileNotFoundError):
        return DataError(
            f"{name}: not found ({_first_line(exc)}); give a local .json/.jsonl/.csv/.parquet "
            "file or directory, or a hub dataset id (with network access)"
        )
    if isinstance(exc, ValueError):
        return DataError(
            f"{name}: cannot read it: {_first_line(exc)} (check `split:` and `subset:`)"
        )
    return DataError(
        f"{name}: cannot load: {type(exc).__name__}: {_first_line(exc)} "
        "(check the id, split and subset; offline, the dataset must be in the local cache)"
    )


def fingerprint(source: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    """What identifies a source's data in run.json: datasets' fingerprint, and the
    sha256 of a local file."""
    record: dict[str, Any] = {
        "source": str(source["source"]),
        "format": source.get("format"),
        "split": source["split"],
        "rows_available": len(dataset),
        "fingerprint": getattr(dataset, "_fingerprint", None),
    }
    path = Path(str(source["source"]))
    if path.is_file():
        record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return record


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
