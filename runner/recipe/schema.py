"""The committed JSON Schema of recipe v1, and the one walker over it.

`load_schema` reads schemas/recipe-v1.schema.json once per process. `deref` follows a
local `$ref` (siblings such as `description` win over the target's), and `properties`
/ `walk_keys` give a node's keys with every `$ref` followed. Validation, defaults,
`recipe explain` and "did you mean" all read the schema through these functions.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner import SCHEMAS_DIR

SCHEMA_PATH = SCHEMAS_DIR / "recipe-v1.schema.json"
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)", re.MULTILINE)
"""The first-line comment that points editors at the schema."""


def modeline_schema(text: str, folder: Path) -> tuple[str, Path | None] | None:
    """(the `$schema` target as written, the file it names from `folder`) of a recipe's
    modeline; the path is None for a URL; None without a modeline."""
    match = MODELINE.search(text)
    if match is None:
        return None
    target = match.group(1)
    if "://" in target:
        return target, None
    return target, folder / Path(target).expanduser()


@functools.cache
def load_schema() -> dict[str, Any]:
    """The committed JSON Schema of recipe v1."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def deref(node: dict[str, Any], root: dict[str, Any] | None = None) -> dict[str, Any]:
    """`node` with its local `$ref` followed; keywords beside the `$ref` win."""
    ref = node.get("$ref")
    if not (isinstance(ref, str) and ref.startswith("#/")):
        return node
    target: Any = root if root is not None else load_schema()
    for part in ref[2:].split("/"):
        target = target[part]
    merged = dict(target)
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def properties(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The keys of an object schema, each with its `$ref` followed."""
    return {name: deref(child) for name, child in deref(node).get("properties", {}).items()}


def block_schema(name: str) -> dict[str, Any]:
    """The schema of a top-level block (`training`, `model`, ...)."""
    return deref(load_schema()["properties"][name])


def walk_keys(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted key, schema) for every documented key under `node`, through list items
    and `oneOf` alternatives (list items appear without an index)."""
    for name, child in properties(node).items():
        key = f"{prefix}{name}"
        yield key, child
        for inner in _nested(child):
            yield from walk_keys(inner, key + ".")


@functools.cache
def key_homes() -> dict[str, tuple[str, ...]]:
    """Every documented key name -> the dotted keys it is, anywhere in a recipe
    (`optim` -> `training.optim`; `patience` -> early_stopping's and divergence's)."""
    homes: dict[str, list[str]] = {}
    for key, _ in walk_keys(load_schema()):
        homes.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    return {name: tuple(keys) for name, keys in homes.items()}


def _nested(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    if isinstance(node.get("items"), dict):
        yield deref(node["items"])
    for alternative in node.get("oneOf", []):
        if isinstance(alternative, dict):
            yield deref(alternative)
            if isinstance(alternative.get("items"), dict):
                yield deref(alternative["items"])


def fill_defaults(value: Any, node: dict[str, Any]) -> Any:
    """A copy of `value` with the schema's `default`s filled in where keys are absent
    (recursively, through nested objects and list items)."""
    node = _alternative_for(value, deref(node))
    if isinstance(value, dict) and "properties" in node:
        out = dict(value)
        for key, prop in properties(node).items():
            if key not in out and "default" in prop:
                out[key] = json.loads(json.dumps(prop["default"]))  # a fresh copy
            elif key in out:
                out[key] = fill_defaults(out[key], prop)
        return out
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [fill_defaults(item, node["items"]) for item in value]
    return value


def _alternative_for(value: Any, node: dict[str, Any]) -> dict[str, Any]:
    """The `oneOf` alternative whose type fits `value` (a mapping or a list), else `node`."""
    kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None
    for alternative in node.get("oneOf", []):
        if isinstance(alternative, dict) and deref(alternative).get("type") == kind:
            return deref(alternative)
    return node


def defaults_of(node: dict[str, Any]) -> dict[str, Any]:
    """The `default` of every key of an object schema that has one."""
    return {key: prop["default"] for key, prop in properties(node).items() if "default" in prop}
