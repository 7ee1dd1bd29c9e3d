"""`recipe explain KEY`: a recipe key's type, default, allowed values and meaning, from
the schema (whose beginner descriptions come from schemas/source/descriptions.yaml)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from runner.lint.rules.renamed_keys import KEY_FIXES
from runner.lint.spelling import closest
from runner.recipe.schema import load_schema, walk_keys

WIDTH = 88


def key_index() -> dict[str, dict[str, Any]]:
    """Every documented key of the schema by dotted name (list items without index)."""
    return dict(walk_keys(load_schema()))


def _type_words(node: dict[str, Any]) -> str:
    if "enum" in node:
        return "one of the allowed values"
    if "const" in node:
        return f"always {json.dumps(node['const'])}"
    types = node.get("type")
    if types is None and "anyOf" in node:
        types = [a.get("type", "value") for a in node["anyOf"] if isinstance(a, dict)]
    if types is None and "oneOf" in node:
        types = [a.get("type", "value") for a in node["oneOf"] if isinstance(a, dict)]
    if types is None:
        return "any value"
    if isinstance(types, str):
        types = [types]
    flat: list[str] = []
    for item in types:
        for name in [item] if isinstance(item, str) else item:
            if name not in flat:
                flat.append(name)
    return " or ".join(flat)


def render(key: str, node: dict[str, Any]) -> str:
    """The explanation of one key."""
    lines = [key + ("  (deprecated)" if node.get("deprecated") else "")]
    facts = [f"type: {_type_words(node)}"]
    if "default" in node:
        facts.append(f"default: {json.dumps(node['default'])}")
    lines.append("  " + "   ".join(facts))
    if "enum" in node:
        allowed = ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in node["enum"])
        lines += textwrap.wrap("allowed: " + allowed, WIDTH, initial_indent="  ",
                               subsequent_indent="    ")  # fmt: skip
    description = node.get("description", "")
    if description:
        lines += textwrap.wrap(description, WIDTH, initial_indent="  ", subsequent_indent="  ")
    children = list(node.get("properties", {}))
    if children:
        lines += textwrap.wrap(
            f"keys ({len(children)}): " + ", ".join(children),
            WIDTH,
            initial_indent="  ",
            subsequent_indent="    ",
        )
        lines.append(f"  (`recipe explain {key}.KEY` for one of them)")
    return "\n".join(lines)


def explain_key(query: str) -> tuple[str, bool]:
    """(text, found) for a dotted key, a bare key name, or a renamed/removed key."""
    parts = [p for p in query.strip().split(".") if p and not p.isdigit()]
    key = ".".join(parts)
    if not key:
        return (
            "give a key, e.g. `recipe explain training.learning_rate` or `recipe explain lora`",
            False,
        )
    index = key_index()
    if key in index:
        return render(key, index[key]), True
    matches = [name for name in index if name.rsplit(".", 1)[-1] == key]
    if matches:
        return "\n\n".join(render(name, index[name]) for name in matches), True
    fix = _key_fix(parts)
    if fix:
        return fix, False
    leaf_names = {name.rsplit(".", 1)[-1]: name for name in reversed(list(index))}
    guess = closest(key, list(index)) or (
        leaf_names[g] if (g := closest(parts[-1] if parts else key, list(leaf_names))) else None
    )
    hint = f"did you mean {guess}? " if guess else ""
    return (
        f"unknown key '{query}': {hint}(`recipe explain training` lists the training keys)",
        False,
    )


def _key_fix(parts: list[str]) -> str | None:
    candidates = []
    if len(parts) == 2:
        candidates.append((parts[0], parts[1]))
    elif len(parts) == 1:
        candidates += [(block, parts[0]) for block in ("", "training", "model", "lora")]
    for block, name in candidates:
        fix = KEY_FIXES.get((block, name))
        if fix:
            where = f"{block}.{name}" if block else name
            kind = "a deprecated alias" if fix.kind == "deprecated" else "not a recipe key"
            return f"{where} is {kind}: {fix.fix}"
    return None
