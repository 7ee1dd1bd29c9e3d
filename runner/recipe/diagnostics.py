"""Diagnostics: what is wrong, where, and how to fix it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from runner.errors import UserError

ERROR = "error"
WARNING = "warning"

# A key inside a recipe: ("training", "learning_rate"), ("data", "train", 0, "source").
KeyPath = tuple[str | int, ...]


def dotted(key: Iterable[str | int]) -> str:
    """A key path as the user writes it: data.train.0.source."""
    return ".".join(str(part) for part in key)


@dataclass(frozen=True)
class Diagnostic:
    """One finding about a recipe, pointing at a file, line and column (1-based).

    `file` is the recipe's path as the user gave it, or `--set key=value` when the
    offending value came from a command-line override. `line`/`column` are 0 when no
    position is known (a missing file, say).
    """

    rule: str
    severity: str
    message: str
    hint: str = ""
    file: str = ""
    line: int = 0
    column: int = 0
    key: str = ""

    def format(self) -> str:
        """`path:line:col: severity[RULE]: message (hint)`, the form editors parse."""
        where = self.file or "<recipe>"
        if self.line:
            where = f"{where}:{self.line}:{self.column}"
        text = f"{where}: {self.severity}[{self.rule}]: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("file")
        return data


class RecipeError(UserError):
    """A recipe that cannot be used; carries every diagnostic found (errors and warnings)."""

    def __init__(self, diagnostics: list[Diagnostic], subject: str = ""):
        self.diagnostics = list(diagnostics)
        self.subject = subject
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    def report(self) -> list[str]:
        lines = [d.format() for d in self.diagnostics]
        errors = sum(d.severity == ERROR for d in self.diagnostics)
        if self.subject and errors:
            lines.append(f"{self.subject}: {errors} error(s); fix them and try again")
        return lines


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity == ERROR for d in diagnostics)
