"""Read one data source of a recipe: its rows as written, and what identifies them.

A source is a local text file (.json array or lines, .jsonl, .csv), a local .parquet
file, a local dataset directory (saved with `Dataset.save_to_disk`, or a folder of data
files), or a hub dataset id read with `datasets.load_dataset` (`subset` is its
configuration name).

Local text files are read by the runner's own reader (runner.data.files), never by
`datasets`' JSON or CSV builders: those infer column types, so a quoted "1982-02-16"
came back as a timestamp, "007" as the number 7 and "true" as a boolean. Read here, a
JSON string stays the string it is and every CSV field is text, whatever it looks like;
`recipe lint --data`, `recipe preview`, `recipe run` and `recipe eval` all read a file
through `source_rows`, so they see the same rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.data.files import DataError, is_text_data, read_objects

if TYPE_CHECKING:
    from datasets import Dataset

SAVED_MARKERS = ("state.json", "dataset_dict.json")  # written by save_to_disk
BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


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


@dataclass
class SourceRows:
    """The rows of one source in file order, with what identifies them.

    `rows` is a list of objects (a local text file) or a `datasets.Dataset` (parquet,
    saved datasets, hub data); `lines[i]` is the 1-based line row i starts on in a local
    text file (None otherwise); `columns` are the names the rows have between them.
    """

    rows: Sequence[Any]
    columns: list[str]
    record: dict[str, Any]
    lines: Sequence[int] | None = None


def source_rows(source: dict[str, Any]) -> SourceRows:
    """Every row of a source as written (see the module docstring), and its fingerprint
    record for run.json: the source, format, split, row count, and the sha256 of a local
    file (datasets' fingerprint of other data)."""

    name = display_source(source)
    path = Path(str(source["source"]))
    record: dict[str, Any] = {
        "source": str(source["source"]),
        "format": source.get("format"),
        "split": source["split"],
    }
    if is_text_data(path):
        lines, rows, columns = read_objects(path, name)
        record.update(rows_available=len(rows), fingerprint=None)
        record["sha256"] = _sha256(path)
        return SourceRows(rows, columns, record, lines)
    dataset = load_source(source)
    record.update(rows_available=len(dataset), fingerprint=getattr(dataset, "_fingerprint", None))
    if path.is_file():
        record["sha256"] = _sha256(path)
    return SourceRows(dataset, list(dataset.column_names), record)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_source(source: dict[str, Any]) -> Dataset:
    """The rows of one source that is not a local text file (the chosen split), as a
    Dataset: parquet, a saved dataset, a folder of data files, or a hub dataset."""
    import datasets

    ref = str(source["source"])
    name = display_source(source)
    split = source["split"]
    path = Path(ref)
    try:
        if path.suffix.lower() in BUILDERS and not path.is_dir():
            if not path.is_file():
                raise DataError(
                    f"{name}: no such file (check the path; it is relative to the recipe file)"
                )
            builder = BUILDERS[path.suffix.lower()]
            return datasets.load_dataset(builder, data_files=str(path), split="train")
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
