"""How lint says a value, a type and a place in words: shared by the schema's messages
(runner.lint.schema_check) and the unknown-key ones (runner.lint.unknown_keys).
"""

from __future__ import annotations

import math
from typing import Any

from runner.lint.spelling import closest
from runner.recipe.diagnostics import dotted

TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping (key: value lines)",
    "array": "a list",
    "null": "null",
}


def shown(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: a value pasted by mistake (a whole file)
    is not repeated in full."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def infinite_word(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "infinity" if value > 0 else "minus infinity"


def describe_type(value: Any) -> str:
    """A value in words, for "must be X, not Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {shown(value)}"
    if isinstance(value, str):
        return f"the text {shown(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def expected_words(types: Any) -> str:
    if isinstance(types, str):
        types = [types]
    if len(types) > 1:
        types = [t for t in types if t != "null"]  # "or null" only confuses
    words = [TYPE_WORDS.get(t, t) for t in types]
    return " or ".join(words)


def place_of(path: tuple) -> str:
    return dotted(path) if path else "the recipe"


def did_you_mean(word: str, candidates: list[str]) -> str:
    guess = closest(word, candidates)
    return f"did you mean '{guess}'? " if guess else ""
