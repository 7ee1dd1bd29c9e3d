"""Row formats: read one row of a source into the runner's canonical shape, or say why not.

Canonical shapes (plain dicts, so they go into a `datasets.Dataset` as they are):
- instruction: {"instruction": str, "input": str, "response": str}
  (alpaca, dolly, and prompt_completion, whose prompt is an instruction with no input);
- messages: {"messages": [{"role": str, "content": str}, ...]};
- text: {"text": str}.
"""

from __future__ import annotations

from typing import Any

# format -> its fields in canonical order: (field, canonical key, required)
FIELDS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "alpaca": (
        ("instruction", "instruction", True),
        ("input", "input", False),
        ("output", "response", True),
    ),
    "dolly": (
        ("instruction", "instruction", True),
        ("context", "input", False),
        ("response", "response", True),
    ),
    "prompt_completion": (("prompt", "instruction", True), ("completion", "response", True)),
    "messages": (("messages", "messages", True),),
    "text": (("text", "text", True),),
}
SHAPE = {
    "alpaca": "instruction",
    "dolly": "instruction",
    "prompt_completion": "instruction",
    "messages": "messages",
    "text": "text",
}
ROLES = ("system", "user", "assistant", "tool")


def column_for(fmt: str, field: str, columns: dict[str, str] | None) -> str:
    """The dataset column a format field is read from (`columns:` maps it)."""
    return (columns or {}).get(field, field)


def missing_columns(fmt: str, columns: dict[str, str] | None, available: list[str]) -> list[str]:
    """Required columns of a format that a source does not have at all."""
    return [
        column_for(fmt, field, columns)
        for field, _, required in FIELDS[fmt]
        if required and column_for(fmt, field, columns) not in available
    ]


def normalize_row(
    fmt: str, columns: dict[str, str] | None, row: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """(canonical example, None) for a good row, (None, problem) for a bad one.

    The problem is a sentence saying what is wrong and how to fix it, without the source
    and row number (the caller adds them).
    """
    example: dict[str, Any] = {}
    for field, key, required in FIELDS[fmt]:
        column = column_for(fmt, field, columns)
        label = f"'{field}'" if column == field else f"'{field}' (column '{column}')"
        value = row.get(column)
        if value is None:
            if required:
                return None, (
                    f"{label} is missing (give every row a '{column}' value, or map the "
                    f"field to another column with `columns: {{{field}: ...}}`)"
                )
            value = ""
        if fmt == "messages":
            messages, problem = _check_messages(value, label)
            if problem:
                return None, problem
            example[key] = messages
            continue
        if not isinstance(value, str):
            return None, (
                f"{label} is {type(value).__name__} {_short(value)}, expected text "
                f"(quote it as a string in the data)"
            )
        if required and not value.strip():
            what = "response" if key == "response" else field
            return (
                None,
                f"empty {what} (fill it in, or set `data.bad_rows: skip` to drop such rows)",
            )
        example[key] = value
    if SHAPE[fmt] == "instruction":
        example.setdefault("input", "")
    return example, None


def _check_messages(value: Any, label: str) -> tuple[list[dict[str, str]], str | None]:
    hint = 'each row needs a list of {"role": ..., "content": ...} turns with at least one assistant turn'
    if not isinstance(value, list) or not value:
        return [], f"{label} is {type(value).__name__}, not a non-empty list of turns ({hint})"
    turns = []
    for index, turn in enumerate(value):
        if not isinstance(turn, dict):
            return [], f"turn {index + 1} is {type(turn).__name__}, not a mapping ({hint})"
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            return [], f"turn {index + 1} has role {role!r}; expected one of {', '.join(ROLES)}"
        if not isinstance(content, str):
            return (
                [],
                f"turn {index + 1} ({role}) has {type(content).__name__} content, expected text",
            )
        turns.append({"role": role, "content": content})
    assistant = [t for t in turns if t["role"] == "assistant"]
    if not assistant:
        return [], f"no assistant turn, so nothing would be trained ({hint})"
    if any(not t["content"].strip() for t in assistant):
        return [], "an assistant turn is empty (fill it in, or set `data.bad_rows: skip`)"
    return turns, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
