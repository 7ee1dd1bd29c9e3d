"""Diagnostics: what is wrong, where, and how to fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"


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


class RecipeError(Exception):
    """Raised when a recipe cannot be used; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity == ERROR for d in diagnostics)
