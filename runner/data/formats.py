"""Row formats: read one row of a source into the runner's canonical shape, or say why not.

Canonical shapes (plain dicts, so they go into a `datasets.Dataset` as they are):
- instruction: {"instruction": str, "input": str, "response": str}
  (alpaca, dolly, and prompt_completion, whose prompt is an instruction with no input);
- messages: {"messages": [{"role": str, "content": str}, ...]}
  (messages, and sharegpt: `conversations` of {"from", "value"} turns, whose speakers
  `human`/`gpt` are read as user/assistant);
- text: {"text": str}.

`guess_format` says which format rows look like, so a recipe that declares the wrong
one gets a fix that works when followed (`format_hint`).
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
    "sharegpt": (("conversations", "messages", True),),
    "text": (("text", "text", True),),
}
SHAPE = {
    "alpaca": "instruction",
    "dolly": "instruction",
    "prompt_completion": "instruction",
    "messages": "messages",
    "sharegpt": "messages",
    "text": "text",
}
ROLES = ("system", "user", "assistant", "tool")
# The fields of one turn (speaker, text), which `columns` may rename too.
TURN_FIELDS = {"messages": ("role", "content"), "sharegpt": ("from", "value")}
# ShareGPT speakers -> roles (the original ShareGPT names, and the roles themselves).
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "tool": "tool",
}
DESCRIBED = {
    "alpaca": "alpaca (instruction, input, output)",
    "dolly": "dolly (instruction, context, response)",
    "prompt_completion": "prompt_completion (prompt, completion)",
    "messages": "messages (a list of role/content turns)",
    "sharegpt": "sharegpt (conversations of from/value turns)",
    "text": "text (one text field)",
}


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
        if fmt in TURN_FIELDS:
            messages, problem = _check_turns(fmt, columns, value, label)
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


def _check_turns(
    fmt: str, columns: dict[str, str] | None, value: Any, label: str
) -> tuple[list[dict[str, str]], str | None]:
    """The turns of a messages or sharegpt row as {role, content}, or why not."""
    speaker, text = (column_for(fmt, f, columns) for f in TURN_FIELDS[fmt])
    hint = (
        f'each row needs a list of {{"{speaker}": ..., "{text}": ...}} turns with at least '
        "one assistant turn"
    )
    if not isinstance(value, list) or not value:
        return [], f"{label} is {type(value).__name__}, not a non-empty list of turns ({hint})"
    turns = []
    for index, turn in enumerate(value):
        if not isinstance(turn, dict):
            return [], f"turn {index + 1} is {type(turn).__name__}, not a mapping ({hint})"
        if speaker not in turn:
            return [], _turn_fields_missing(fmt, index, turn, speaker)
        role = _role(fmt, turn.get(speaker))
        if role is None:
            return [], _unknown_role(fmt, index, turn.get(speaker))
        content = turn.get(text)
        if not isinstance(content, str):
            return (
                [],
                f"turn {index + 1} ({role}) has {type(content).__name__} {text}, expected text",
            )
        turns.append({"role": role, "content": content})
    assistant = [t for t in turns if t["role"] == "assistant"]
    if not assistant:
        return [], f"no assistant turn, so nothing would be trained ({hint})"
    if any(not t["content"].strip() for t in assistant):
        return [], "an assistant turn is empty (fill it in, or set `data.bad_rows: skip`)"
    return turns, None


def _role(fmt: str, speaker: Any) -> str | None:
    if fmt == "sharegpt":
        return SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
    return speaker if speaker in ROLES else None


def _unknown_role(fmt: str, index: int, speaker: Any) -> str:
    if fmt == "sharegpt":
        known = ", ".join(SHAREGPT_ROLES)
        return f"turn {index + 1} is from {speaker!r}; expected one of {known}"
    return f"turn {index + 1} has role {speaker!r}; expected one of {', '.join(ROLES)}"


def _turn_fields_missing(fmt: str, index: int, turn: dict[str, Any], speaker: str) -> str:
    """A turn without its speaker field: say which fields it has, and which format
    turns with those fields belong to."""
    keys = ", ".join(map(str, turn)) or "none"
    problem = f"turn {index + 1} has no {speaker!r} (its fields: {keys})"
    for other, (other_speaker, other_text) in TURN_FIELDS.items():
        if other != fmt and other_speaker in turn and other_text in turn:
            return f"{problem}; {other_speaker}/{other_text} turns are format {other}"
    return problem


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- which format rows look like ---------------------------------------------------

# (format, fields every row has) for the flat formats, most specific first.
FLAT_SIGNS = (
    ("alpaca", ("instruction", "output")),
    ("dolly", ("instruction", "response")),
    ("prompt_completion", ("prompt", "completion")),
    ("text", ("text",)),
)


def guess_format(rows: list[Any]) -> tuple[str, dict[str, str]] | None:
    """(format, columns) the rows look like, or None when they look like no format.

    A column holding lists of turns is messages (role/content turns) or sharegpt
    (from/value turns), under whatever name it has; otherwise the format whose fields
    every row has. `columns` maps a format field only where the rows' name differs.
    """
    objects = [row for row in rows if isinstance(row, dict)]
    if not objects:
        return None
    for column in objects[0]:
        turn = _first_turn([row.get(column) for row in objects])
        if turn is None:
            continue
        for fmt, (speaker, text) in TURN_FIELDS.items():
            if speaker in turn and text in turn:
                field = FIELDS[fmt][0][0]
                return fmt, ({} if column == field else {field: column})
    for fmt, fields in FLAT_SIGNS:
        if all(all(field in row for field in fields) for row in objects):
            return fmt, {}
    return None


def _first_turn(values: list[Any]) -> dict[str, Any] | None:
    for value in values:
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return value[0]
    return None


def yaml_columns(columns: dict[str, str]) -> str:
    """`{field: column, ...}` as a recipe writes it."""
    return "{" + ", ".join(f"{field}: {column}" for field, column in columns.items()) + "}"


def format_hint(fmt: str, columns: dict[str, str] | None, rows: list[Any]) -> str | None:
    """The change that makes a source read its rows, when the rows look like another
    format (or the same one under other column names): a sentence naming the format
    the rows look like and the exact recipe lines to write. None when the rows look like
    no known format, or like the declared one as declared."""
    guessed = guess_format(rows)
    if guessed is None:
        return None
    other, other_columns = guessed
    if other == fmt and (columns or {}) == other_columns:
        return None
    looks = f"the rows look like {DESCRIBED[other]}"
    if other == fmt:
        return f"{looks} under other names: set `columns: {yaml_columns(other_columns)}`"
    fix = f"set `format: {other}`"
    if other_columns:
        fix += f" with `columns: {yaml_columns(other_columns)}`"
    elif columns:
        fix += " and delete `columns`"
    return f"{looks}: {fix}"
