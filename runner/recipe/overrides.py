"""`--set dotted.key=value` overrides, applied to a copy of the recipe's data.

Values are read as YAML 1.2 (`2e-5` is a float, `true` a bool, `[q_proj, v_proj]` a
list); a numeric part of the key indexes a list (`data.train.0.source=...`).
"""

from __future__ import annotations

import copy
import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from runner.recipe.diagnostics import ERROR, Diagnostic, KeyPath, RecipeError
from runner.recipe.yaml_dialect import SURROGATE, to_plain, yaml_limit_problems


def parse_override(argument: str) -> tuple[KeyPath, Any]:
    """`training.learning_rate=2e-5` -> (("training", "learning_rate"), 2e-05)."""
    key, sep, raw = argument.partition("=")
    key = key.strip()
    if not sep or not key or any(part == "" for part in key.split(".")):
        raise ValueError("expected KEY=VALUE with a dotted key, e.g. training.learning_rate=2e-5")
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
    if raw.strip() == "":
        return tuple(parts), ""
    try:
        problems = yaml_limit_problems(raw, "--set")
        limits = [p for p in problems if p.rule != "yaml-tag"]
        if limits:
            raise ValueError(f"{limits[0].message} ({limits[0].hint})")
        if problems:  # a tag (`!foo 1`, `!!set {a}`): the text as written
            return tuple(parts), raw
        value = to_plain(YAML(typ="safe", pure=True).load(io.StringIO(raw)))
    except YAMLError:
        value = raw  # not valid YAML: take it as the literal string
    return tuple(parts), value


def set_path(data: dict[str, Any], key: KeyPath, value: Any) -> None:
    """Set `value` at `key` inside `data`, creating mappings on the way."""
    node: Any = data
    for depth, part in enumerate(key[:-1]):
        nxt = key[depth + 1]
        if isinstance(node, dict):
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int):
            if part >= len(node):
                raise KeyError(f"index {part} is past the end of a list of {len(node)}")
            node = node[part]
        else:
            raise KeyError(f"'{part}' cannot be set inside a {type(node).__name__}")
    last = key[-1]
    if isinstance(node, dict):
        node[str(last)] = value
    elif isinstance(node, list) and isinstance(last, int):
        if last < len(node):
            node[last] = value
        elif last == len(node):
            node.append(value)
        else:
            raise KeyError(f"index {last} is past the end of a list of {len(node)}")
    else:
        raise KeyError(f"'{last}' cannot be set inside a {type(node).__name__}")


def apply_overrides(
    data: dict[str, Any], arguments: list[str], display: str
) -> tuple[dict[str, Any], dict[KeyPath, str]]:
    """Apply each `KEY=VALUE` to a deep copy of `data`; report every bad one at once."""
    if not arguments:
        return data, {}
    result = copy.deepcopy(data)
    set_keys: dict[KeyPath, str] = {}
    problems: list[Diagnostic] = []
    for argument in arguments:
        try:
            if SURROGATE.search(argument):
                # bytes the terminal's encoding could not decode (Python keeps them as
                # surrogates in argv); no recipe value can hold them
                argument = argument.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise ValueError("the argument is not UTF-8 text (shown with \ufffd)")
            key, value = parse_override(argument)
            set_path(result, key, value)
        except (ValueError, KeyError) as exc:
            reason = exc.args[0] if exc.args else str(exc)
            problems.append(
                Diagnostic(
                    rule="bad-override",
                    severity=ERROR,
                    message=f"cannot apply --set {argument}: {reason}",
                    hint="write --set dotted.key=value, with list items by index (data.train.0.source=...)",
                    file=f"--set {argument}",
                )
            )
            continue
        set_keys[key] = argument
    if problems:
        raise RecipeError(problems)
    return result, set_keys
