"""Read a recipe file into plain data while keeping the position of every key and item.

The YAML itself (YAML 1.2, duplicate keys refused, syntax errors at their line, the
limits on hostile input) is runner.recipe.yaml_dialect's; `--set` overrides are
runner.recipe.overrides'. This module reads the file, builds the `Recipe` and answers
where each key is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from runner.recipe.diagnostics import ERROR, Diagnostic, KeyPath, RecipeError, dotted
from runner.recipe.overrides import apply_overrides
from runner.recipe.yaml_dialect import MAX_RECIPE_BYTES, parse_yaml, to_plain

# runner.expand.launch still imports dump_yaml from here; its home is yaml_dialect.
from runner.recipe.yaml_dialect import dump_yaml  # noqa: F401  isort: skip


@dataclass
class Recipe:
    """A recipe as written: its text, its round-trip document and its plain data.

    `data` is plain dicts/lists/scalars (overrides already applied); `doc` keeps comments
    and positions for diagnostics and for `recipe new`. `overrides` maps the dotted key of
    every `--set` value to the argument that set it.
    """

    path: Path
    display: str
    text: str
    doc: Any
    data: dict[str, Any]
    overrides: dict[KeyPath, str] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.path.resolve().parent

    @property
    def content_hash(self) -> str:
        """sha256 of the file as written (before overrides)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def locate(self, key: Iterable[str | int]) -> tuple[str, int, int]:
        """(file, line, column) for a key path; the nearest existing parent if absent.

        Values set with `--set` point at the override argument instead of the file.
        """
        key = tuple(key)
        for depth in range(len(key), -1, -1):
            prefix = key[:depth]
            if prefix in self.overrides:
                return f"--set {self.overrides[prefix]}", 0, 0
        line, column = position_of(self.doc, key)
        return self.display, line, column

    def diagnostic(
        self,
        rule: str,
        key: Iterable[str | int],
        message: str,
        hint: str = "",
        severity: str = ERROR,
    ) -> Diagnostic:
        """A diagnostic about `key` in this recipe, with its position filled in."""
        key = tuple(key)
        file, line, column = self.locate(key)
        return Diagnostic(
            rule=rule,
            severity=severity,
            message=message,
            hint=hint,
            file=file,
            line=line,
            column=column,
            key=dotted(key),
        )


def position_of(doc: Any, key: KeyPath) -> tuple[int, int]:
    """1-based (line, column) of the deepest part of `key` present in `doc`."""
    line, column = (1, 1) if doc is not None else (0, 0)
    node = doc
    for part in key:
        if isinstance(node, CommentedMap) and part in node:
            ln, col = node.lc.key(part)
            line, column = ln + 1, col + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            ln, col = node.lc.item(part)
            line, column = ln + 1, col + 1
            node = node[part]
        else:
            break
    return line, column


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read and parse a recipe file and apply `--set key=value` overrides.

    Raises RecipeError (never a bare exception) for a missing file, invalid YAML, a
    document that is not a mapping, or a malformed override. Schema and rules are checked
    later, by `runner.lint`.
    """
    path = Path(path)
    display = str(path)
    text = read_recipe_text(path, display)
    doc = parse_yaml(text, display)
    if not isinstance(doc, CommentedMap):
        raise RecipeError(
            [
                Diagnostic(
                    rule="recipe-not-mapping",
                    severity=ERROR,
                    message="a recipe must be a YAML mapping of keys to values",
                    hint="start from a shipped recipe: `recipe new mine.yaml --from demo-uppercase`",
                    file=display,
                    line=1,
                    column=1,
                )
            ]
        )
    data, set_keys = apply_overrides(to_plain(doc), list(overrides), display)
    return Recipe(path=path, display=display, text=text, doc=doc, data=data, overrides=set_keys)


def read_recipe_text(path: Path, display: str) -> str:
    """The file's text; RecipeError when it is missing, unreadable, not UTF-8 or larger
    than any recipe (MAX_RECIPE_BYTES)."""

    def refused(rule: str, message: str, hint: str) -> RecipeError:
        return RecipeError([Diagnostic(rule, ERROR, message, hint, display)])

    try:
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_RECIPE_BYTES:
            raise refused(
                "yaml-limit",
                f"{display} is {size:,} bytes; a recipe is at most {MAX_RECIPE_BYTES:,}",
                "check the path; a recipe is a short YAML file, and data goes in the files "
                "it names",
            )
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise refused(
            "file-not-found",
            f"no such recipe file: {display}",
            "give a path to a .yaml file or a shipped recipe name (`recipe list`)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise refused(
            "file-unreadable",
            f"cannot read {display}: {exc}",
            "check the path and that the file is UTF-8 text",
        ) from None
