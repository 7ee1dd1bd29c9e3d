"""Side-by-side display of two completions (`recipe infer --compare`)."""

from __future__ import annotations

import textwrap
from itertools import zip_longest

GAP = " | "


def wrap(text: str, width: int) -> list[str]:
    """Lines of `text` no wider than `width`, keeping its own line breaks."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        lines += textwrap.wrap(paragraph, width, replace_whitespace=False) or [""]
    return lines


def side_by_side(left_title: str, left: str, right_title: str, right: str, width: int = 100) -> str:
    """Two texts in columns under their titles, each column (width - 3) / 2 wide."""
    column = max(10, (width - len(GAP)) // 2)
    rows = [f"{left_title:<{column}}{GAP}{right_title}", f"{'-' * column}{GAP}{'-' * column}"]
    for a, b in zip_longest(wrap(left, column), wrap(right, column), fillvalue=""):
        rows.append(f"{a:<{column}}{GAP}{b}".rstrip())
    return "\n".join(rows)
