"""JSON Schema validation of a recipe, with each error turned into a friendly diagnostic.

jsonschema's own messages ("Additional properties are not allowed", a oneOf dump) are
rewritten into what a user can act on: the key, what is wrong in words, and a fix
(closest known key, allowed values, the key's description).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from runner.lint.spelling import closest
from runner.lint.unknown_keys import unknown_keys
from runner.lint.wording import (
    describe_type,
    did_you_mean,
    expected_words,
    infinite_word,
    place_of,
    shown,
)
from runner.recipe.diagnostics import Diagnostic
from runner.recipe.load import Recipe
from runner.recipe.schema import load_schema

INT64_MAX = 2**63 - 1
# keys whose absence has its own rule ID
REQUIRED_RULES = {"output_dir": "output-dir-missing"}
REQUIRED_HINTS = {
    "output_dir": "add `output_dir: outputs/<recipe name>` (relative to the folder you run from)",
    "schema_version": "add `schema_version: 1` as the first key",
    "method": "add `method: full`, `lora` or `qlora`",
    "data": "add `data: {train: [{source: my-data.jsonl, format: alpaca}]}`",
    "train": "add `train: [{source: my-data.jsonl, format: alpaca}]`",
}
# common shorthands for allowed values
ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}


@functools.cache
def validator() -> Any:
    """The Draft 2020-12 validator of the committed schema (built once per process)."""
    import jsonschema  # ~0.1 s; only paid by commands that validate

    return jsonschema.Draft202012Validator(load_schema())


@functools.cache
def fast_validator() -> Any:
    """jsonschema_rs's validator when it is installed (imports in ~20 ms where jsonschema
    takes ~130 ms); a valid recipe, the common case, then never imports jsonschema."""
    try:
        import jsonschema_rs
    except ImportError:
        return None
    return jsonschema_rs.Draft202012Validator(load_schema())


def schema_diagnostics(recipe: Recipe, data: dict[str, Any]) -> list[Diagnostic]:
    """Every schema error in `data`, as diagnostics positioned in `recipe`."""
    diagnostics = value_diagnostics(recipe, data)
    fast = fast_validator()
    if fast is not None and fast.is_valid(data):
        return diagnostics
    said = {d.key for d in diagnostics}  # "must be finite" already says what is wrong
    for error in validator().iter_errors(data):
        diagnostics.extend(d for d in _describe(recipe, error) if d.key not in said)
    return diagnostics


def value_diagnostics(recipe: Recipe, data: Any, path: tuple = ()) -> list[Diagnostic]:
    """A `bad-value` for every NaN or infinity (YAML `.nan`, `.inf`, `1e400`), every
    whole number beyond 64 bits and every text holding a NUL character: JSON Schema has
    no way to say "finite", NaN passes every minimum and maximum, torch, numpy and the
    fast validator hold integers in 64 bits, and no path or name may hold a NUL."""
    if isinstance(data, str) and "\x00" in data:
        return [
            recipe.diagnostic(
                "bad-value",
                path,
                f"{place_of(path)} holds a NUL character (a \\0 or \\x00 escape)",
                "delete the escape; no path, id or name can hold it",
            )
        ]
    if isinstance(data, int) and not isinstance(data, bool) and abs(data) > INT64_MAX:
        return [
            recipe.diagnostic(
                "bad-value",
                path,
                f"{place_of(path)} is a whole number of {len(str(abs(data)))} digits, beyond "
                "what a 64-bit integer holds",
                f"write a number between -{INT64_MAX} and {INT64_MAX}",
            )
        ]
    if isinstance(data, float) and not math.isfinite(data):
        return [
            recipe.diagnostic(
                "bad-value",
                path,
                f"{place_of(path)} must be a finite number, not {infinite_word(data)}",
                "write an ordinary number such as 2e-5; .nan, .inf and numbers beyond a "
                "float's range (like 1e400) cannot train",
            )
        ]
    out: list[Diagnostic] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if "\x00" in str(key):
                out.append(
                    recipe.diagnostic(
                        "bad-value",
                        (*path, key),
                        f"the key {shown(key)} holds a NUL character",
                        "delete the \\0 or \\x00 escape from the key",
                    )
                )
                continue
            out += value_diagnostics(recipe, value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out += value_diagnostics(recipe, value, (*path, index))
    return out


def _describe(recipe: Recipe, error: Any) -> list[Diagnostic]:
    """One jsonschema error as the diagnostics a user can act on."""
    path = tuple(error.absolute_path)
    if path and path[-1] == "rows" and error.validator in ("oneOf", "type", "minimum", "pattern"):
        return [
            recipe.diagnostic(
                "bad-value",
                path,
                f"{place_of(path)} must be a count of at least 1 or a slice 'start:stop', "
                f"not {shown(error.instance)}",
                "e.g. `rows: 1000` (the first 1000) or `rows: '100:600'`",
            )
        ]
    if error.validator == "enum" and "propertyNames" in error.relative_schema_path:
        return _bad_property_names(recipe, path, error)
    describe = DESCRIBERS.get(error.validator)
    if describe is None:
        return [_bound(recipe, path, place_of(path), error)]
    return describe(recipe, path, error)


def _unknown_keys_error(recipe: Recipe, path: tuple, error: Any) -> list[Diagnostic]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    return unknown_keys(recipe, path, error.instance, schema)


def _missing_key(recipe: Recipe, path: tuple, error: Any) -> list[Diagnostic]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    match = re.match(r"'(.+?)' is a required property", error.message)
    missing = match.group(1) if match else str(error.validator_value)
    description = schema.get("properties", {}).get(missing, {}).get("description", "")
    where = f"in {place_of(path)}" if path else "in the recipe"
    hint = REQUIRED_HINTS.get(missing) or (
        f"add `{missing}:`" + (f" - {description}" if description else "")
    )
    rule = REQUIRED_RULES.get(missing, "missing-key") if not path else "missing-key"
    return [recipe.diagnostic(rule, path, f"required key '{missing}' is missing {where}", hint)]


def _wrong_type(recipe: Recipe, path: tuple, error: Any) -> list[Diagnostic]:
    return [
        recipe.diagnostic(
            "wrong-type",
            path,
            f"{place_of(path)} must be {expected_words(error.validator_value)}, not "
            f"{describe_type(error.instance)}",
            _type_hint(error.validator_value, error.instance),
        )
    ]


def _not_allowed(recipe: Recipe, path: tuple, error: Any) -> list[Diagnostic]:
    allowed = ["null" if v is None else str(v) for v in error.validator_value]
    guess = None
    if isinstance(error.instance, str):
        guess = ALIASES.get(error.instance.lower())
        guess = guess if guess in allowed else closest(error.instance, allowed)
    hint = f"did you mean '{guess}'? " if guess else ""
    return [
        recipe.diagnostic(
            "bad-value",
            path,
            f"{place_of(path)} is {shown(error.instance)}, not one of the allowed values",
            hint + "allowed: " + ", ".join(allowed),
        )
    ]


def _not_const(recipe: Recipe, path: tuple, error: Any) -> list[Diagnostic]:
    key = place_of(path)
    return [
        recipe.diagnostic(
            "bad-value",
            path,
            f"{key} must be {error.validator_value!r}, not {shown(error.instance)}",
            f"write `{path[-1] if path else key}: {error.validator_value}`",
        )
    ]


def _property_names(recipe: Recipe, path: tuple, error: Any) -> list[Diagnostic]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    allowed = schema.get("propertyNames", {}).get("enum", [])
    bad = [k for k in error.instance if k not in allowed] if allowed else []
    return [
        recipe.diagnostic(
            "unknown-key",
            (*path, name),
            f"{shown(name)} is not a field of any data format",
            did_you_mean(name, allowed) + "fields: " + ", ".join(allowed),
        )
        for name in bad
    ] or [recipe.diagnostic("bad-value", path, f"{place_of(path)}: {error.message}", "")]


def _bad_property_names(recipe: Recipe, path: tuple, error: Any) -> list[Diagnostic]:
    allowed = [str(v) for v in error.validator_value]
    name = str(error.instance)
    return [
        recipe.diagnostic(
            "unknown-key",
            (*path, name),
            f"{shown(str(name))} in {place_of(path)} is not a field of any data format",
            did_you_mean(name, allowed)
            + "map a format field to your column: `columns: {instruction: my_question}`; "
            "fields: " + ", ".join(allowed),
        )
    ]


def _type_hint(expected: Any, value: Any) -> str:
    expected = [expected] if isinstance(expected, str) else list(expected)
    if "number" in expected and isinstance(value, str):
        return "write the number without quotes, e.g. 2e-5 or 0.0002"
    if "integer" in expected and isinstance(value, float):
        return "write a whole number, e.g. 4"
    if "boolean" in expected and isinstance(value, str):
        return "write true or false without quotes"
    if "string" in expected and isinstance(value, bool):
        return "quote it ('no', 'yes', 'off' ...) so YAML reads it as text"
    if "array" in expected:
        return "write a list, e.g. [q_proj, v_proj]"
    if "object" in expected:
        return "write a mapping, one `key: value` per indented line"
    if "string" in expected:
        return f"quote it to make it text: '{value}'"
    return f"write {expected_words(expected)}"


def _alternatives(recipe: Recipe, path: tuple, error: Any) -> list[Diagnostic]:
    key = place_of(path)
    if path == ("model",):
        if not isinstance(error.instance, dict):
            return []  # the `type: object` error already says what model must be
        instance = error.instance
        if "id" in instance and "config" in instance:
            message = "model has both id and config; give one of them"
            hint = "keep id to fine-tune a pretrained model, or config (+ tokenizer) to train from scratch"
        elif "config" in instance:
            message = "model.config needs model.tokenizer (a hub id, local folder or byte-level)"
            hint = "add `tokenizer: byte-level` or the tokenizer's hub id under model"
        else:
            message = "model needs id (a hub id or local model folder)"
            hint = "add `id: meta-llama/Llama-3.2-1B-Instruct` (or any model) under model"
        return [recipe.diagnostic("model-source", path, message, hint)]
    context = list(error.context or [])
    # The value has the shape of one alternative but a bad part (a negative index in a
    # list of indexes): describe that part.
    inside = [c for c in context if c.relative_path and c.validator != "type"]
    if inside:
        return _describe(recipe, inside[0])
    # A value of the wrong type for every alternative: say which types would do.
    if context and all(c.validator == "type" and not c.absolute_path for c in context):
        types = [c.validator_value for c in context]
        flat = [t for item in types for t in ([item] if isinstance(item, str) else item)]
        return [
            recipe.diagnostic(
                "wrong-type",
                path,
                f"{key} must be {expected_words(list(dict.fromkeys(flat)))}, not "
                f"{describe_type(error.instance)}",
                _type_hint(flat, error.instance),
            )
        ]
    if path and path[-1] == "eval" and path[:-1] == ("data",):
        return [
            recipe.diagnostic(
                "bad-value",
                path,
                "data.eval must be {fraction: 0.05} or a list of sources",
                "write `eval: {fraction: 0.05}` or `eval: [{source: my-eval.jsonl, format: alpaca}]`",
            )
        ]
    # Otherwise describe the alternative that came closest (the deepest error).
    if context:
        import jsonschema.exceptions

        best = jsonschema.exceptions.best_match(context)
        if best is not None:
            return _describe(recipe, best)
    return [recipe.diagnostic("bad-value", path, f"{key}: {error.message}", "")]


def _bound(recipe: Recipe, path: tuple, key: str, error: Any) -> Diagnostic:
    kind, limit, value = error.validator, error.validator_value, error.instance
    words = {
        "minimum": f"at least {limit}",
        "maximum": f"at most {limit}",
        "exclusiveMinimum": f"greater than {limit}",
        "exclusiveMaximum": f"less than {limit}",
    }
    description = (
        (error.schema or {}).get("description", "") if isinstance(error.schema, dict) else ""
    )
    if kind in words:
        message = f"{key} must be {words[kind]}, not {shown(value)}"
        description = _default_hint(error.schema) or description or f"use a value {words[kind]}"
    elif kind == "multipleOf" and limit == 1:
        message = f"{key} must be a whole number when it is 1 or more, not {shown(value)}"
        description = "below 1 it is a fraction of the total steps, e.g. 0.1 for every 10%"
    elif kind == "not" and isinstance(limit, dict) and "const" in limit:
        message = f"{key} must not be {limit['const']!r}"
    elif kind == "minLength":
        message = f"{key} must not be empty"
    elif kind == "minItems":
        message = f"{key} needs at least {limit} item(s)"
    elif kind == "pattern" and path == ("name",):
        message = f"name {shown(value)} may use only lowercase letters, digits, '.', '_' and '-'"
        suggestion = re.sub(r"[^a-z0-9._-]+", "-", str(value).lower()).strip("-._") or "my-recipe"
        description = f"e.g. `name: {suggestion}`"
    elif kind == "pattern":
        message = f"{key} {shown(value)} does not match the pattern {limit}"
    else:
        message = f"{key}: {error.message}"
    return recipe.diagnostic("bad-value", path, message, description)


def _default_hint(schema: Any) -> str:
    """`the default is 2e-05` when the key has a numeric default."""
    if not isinstance(schema, dict):
        return ""
    default = schema.get("default")
    if isinstance(default, bool) or not isinstance(default, int | float):
        return ""
    return f"the default is {default}"


# jsonschema validator keyword -> the function that words its error
DESCRIBERS = {
    "additionalProperties": _unknown_keys_error,
    "required": _missing_key,
    "type": _wrong_type,
    "enum": _not_allowed,
    "const": _not_const,
    "oneOf": _alternatives,
    "anyOf": _alternatives,
    "propertyNames": _property_names,
}
