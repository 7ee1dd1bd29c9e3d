"""Local text data files (.jsonl, .json, .csv), read with the standard library.

One reader for `recipe lint --data`, `recipe preview`, `recipe run` and `recipe eval`,
so each reports the same problem at the same place: a file that is not UTF-8 (or is
UTF-16), is empty, has a line that is not JSON, or a row that is not an object is a
`DataFileError` naming the file and its 1-based line, before `datasets` (whose own
messages name neither) or any model is loaded. No `datasets` import, no network.
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import DataError

SURROGATE = re.compile("[\ud800-\udfff]")
LONE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # where a lone surrogate can come from
TEXT_SUFFIXES = (".jsonl", ".json", ".csv")
UTF16_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
SAVE_AS_UTF8 = "save the file as UTF-8; most editors offer it under Save As"


class DataFileError(DataError):
    """A local data file that cannot be read as its suffix says, at `line` (0: the whole
    file)."""

    def __init__(self, display: str, line: int, problem: str, hint: str) -> None:
        self.display, self.line, self.problem, self.hint = display, line, problem, hint
        super().__init__(f"{self.located} ({hint})")

    @property
    def located(self) -> str:
        """`file:line: problem` (without the hint)."""
        where = f"{self.display}:{self.line}" if self.line else self.display
        return f"{where}: {self.problem}"


@dataclass
class Scan:
    """What reading a whole file found: how many rows, the 1-based line each row starts
    on (`lines[i]` for row i), and the first rows themselves as (line, row)."""

    rows: int = 0
    lines: array[int] = field(default_factory=lambda: array("L"))
    first: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def is_text_data(path: Path) -> bool:
    """A local file this module reads (by suffix)."""
    return path.suffix.lower() in TEXT_SUFFIXES and path.is_file()


def iter_rows(path: Path, display: str | None = None) -> Iterator[tuple[int, Any]]:
    """(1-based line, row) for each row of a .jsonl/.json/.csv file, in order.

    A row is whatever the line (or array item) holds; whether it is an object with the
    right fields is the caller's check. Raises DataFileError at the first line that is
    not UTF-8 or not parseable, and for a file with no rows at all. JSON lines and CSV
    are read a line at a time, so a large file costs no more memory than its longest row.
    """
    display = display or str(path)
    suffix = path.suffix.lower()
    lines = _text_lines(path, display)
    if suffix == ".csv":
        rows = _csv_rows(lines, display)
    elif suffix == ".json" and _starts_with_array(path):
        rows = _json_array_rows("".join(line for _, line in lines), display)
    else:  # .jsonl, and JSON lines (or a single object) saved as .json
        rows = _json_lines_rows(lines, display)
    empty = True
    for line, row in rows:
        empty = False
        yield line, row
    if empty:
        raise DataFileError(
            display,
            0,
            "the file has no rows",
            "add rows: one JSON object per line for .jsonl, a header and rows for .csv",
        )


def scan_rows(path: Path, display: str | None = None, keep: int = 0) -> Scan:
    """Read every row of a file (see `iter_rows`), checking each is an object, and keep
    the first `keep` rows. The last few scans are remembered (by path, size and
    modification time), so lint's rules and row checks read a file once."""
    stat = path.stat()
    return _scan(str(path), display or str(path), keep, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _scan(path: str, display: str, keep: int, size: int, mtime_ns: int) -> Scan:
    scan = Scan()
    for line, row in iter_objects(Path(path), display):
        scan.rows += 1
        scan.lines.append(line)
        if len(scan.first) < keep:
            scan.first.append((line, row))
    return scan


def iter_objects(path: Path, display: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line, row) for each row of a file (see `iter_rows`), checking that each
    row is an object: DataFileError at the first that is not."""
    display = display or str(path)
    for line, row in iter_rows(path, display):
        if not isinstance(row, dict):
            raise DataFileError(
                display,
                line,
                f"the row is {_kind(row)}, not an object",
                'each row is one JSON object, e.g. {"instruction": "...", "output": "..."}',
            )
        yield line, row


def read_objects(
    path: Path, display: str | None = None
) -> tuple[array[int], list[dict[str, Any]], list[str]]:
    """Every row of a file as written: (the line each row starts on, the rows, the
    column names they have between them in first-seen order). Values are what the file
    holds: a JSON string stays a string however it looks (a date, "007", "true"), every
    CSV field is text."""
    lines: array[int] = array("L")
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for line, row in iter_objects(path, display):
        lines.append(line)
        rows.append(row)
        columns.update(dict.fromkeys(row))
    return lines, rows, list(columns)


def count_rows(path: Path) -> int | None:
    """Rows of a local text data file, or None when it cannot be read (lint reports why
    elsewhere)."""
    try:
        return scan_rows(path).rows
    except (DataError, OSError):
        return None


def _text_lines(path: Path, display: str) -> Iterator[tuple[int, str]]:
    """(1-based number, text) of each line, line ending kept; DataFileError at the first
    line that is not UTF-8 (UTF-16 and UTF-32 are named by their byte-order mark)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if number == 1:
                if raw.startswith(UTF16_BOMS):
                    raise DataFileError(
                        display, 1, "the file is UTF-16 or UTF-32 text, not UTF-8", SAVE_AS_UTF8
                    )
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFileError(
                    display,
                    number,
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02X} at column {exc.start + 1}; "
                    "the file is probably Latin-1 or Windows-1252)",
                    SAVE_AS_UTF8,
                ) from None
            if "\x00" in text:
                raise DataFileError(
                    display,
                    number,
                    "the text holds NUL bytes (UTF-16 without a byte-order mark, or binary)",
                    SAVE_AS_UTF8,
                )
            yield number, text


def _starts_with_array(path: Path) -> bool:
    """Whether a .json file's first non-blank character is `[` (one JSON array)."""
    with path.open("rb") as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip(b" \t\r\n").removeprefix(codecs.BOM_UTF8)
            if stripped:
                return stripped.startswith(b"[")
    return False


def _json_lines_rows(lines: Iterator[tuple[int, str]], display: str) -> Iterator[tuple[int, Any]]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if LONE_ESCAPE.search(line) and _has_surrogate(row):
                raise DataFileError(
                    display,
                    number,
                    "the line holds a \\uD800-\\uDFFF escape without its pair",
                    "a character beyond U+FFFF is written as a pair of escapes, or as itself",
                )
            yield number, row
        except json.JSONDecodeError as exc:
            raise DataFileError(
                display,
                number,
                f"the line is not JSON ({exc.msg} at column {exc.pos + 1})",
                "each line of a .jsonl file is one complete JSON object",
            ) from None
        except RecursionError:
            raise DataFileError(
                display, number, "the JSON is nested too deeply", "flatten the row"
            ) from None


def _json_array_rows(text: str, display: str) -> Iterator[tuple[int, Any]]:
    """Items of a top-level JSON array with the line each starts on."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    expect_item = True
    while True:
        position = _skip_space(text, position)
        if position >= len(text):
            raise _json_error(display, text, position, "the array is not closed with ]")
        if text[position] == "]":
            if _skip_space(text, position + 1) < len(text):
                raise _json_error(display, text, position + 1, "text after the array")
            return
        if not expect_item:
            if text[position] != ",":
                raise _json_error(display, text, position, "expected , or ] between items")
            position += 1
            expect_item = True
            continue
        try:
            item, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise _json_error(display, text, exc.pos, exc.msg) from None
        except RecursionError:
            raise _json_error(display, text, position, "nested too deeply") from None
        if _has_surrogate(item):
            raise _json_error(display, text, position, "an escape \\uD800-\\uDFFF without its pair")
        yield text.count("\n", 0, position) + 1, item
        position, expect_item = end, False


def _has_surrogate(value: Any) -> bool:
    """Whether a parsed JSON value holds a lone surrogate (from an unpaired escape),
    which no UTF-8 text can hold."""
    if isinstance(value, str):
        return SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _json_error(display: str, text: str, position: int, message: str) -> DataFileError:
    line = text.count("\n", 0, position) + 1
    return DataFileError(
        display,
        line,
        f"not valid JSON ({message})",
        "a .json file is one JSON array of objects, or one JSON object per line",
    )


def _csv_rows(lines: Iterator[tuple[int, str]], display: str) -> Iterator[tuple[int, Any]]:
    quotes = 0

    def counted() -> Iterator[str]:
        nonlocal quotes
        for _, line in lines:
            quotes += line.count('"')
            yield line

    reader = csv.reader(counted())
    try:
        header = next(reader, None)
        if header is None:
            return
        start = reader.line_num + 1
        last: tuple[int, list[str]] | None = None
        for fields in reader:
            if fields:
                if len(fields) > len(header):
                    raise DataFileError(
                        display,
                        start,
                        f"the row has {len(fields)} fields but the header has {len(header)}",
                        "quote fields that contain commas, or fix the header",
                    )
                if last is not None:
                    yield last[0], dict(zip(header, last[1], strict=False))
                last = (start, fields)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataFileError(
            display,
            reader.line_num,
            f"not valid CSV ({exc})",
            'close every quoted field; write a quote inside one as ""',
        ) from None
    if last is None:
        return
    # csv reads an unclosed quote to the end of the file as one field of many lines
    if quotes % 2 and any("\n" in value for value in last[1]):
        raise DataFileError(
            display,
            last[0],
            "a quoted field on this row is never closed",
            'close every quoted field; write a quote inside one as ""',
        )
    yield last[0], dict(zip(header, last[1], strict=False))


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text"
    if value is None:
        return "null"
    return f"the {type(value).__name__} {value!r}"[:60]
