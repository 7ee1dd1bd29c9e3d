"""Read a recipe file into plain data while keeping the position of every key and item.

YAML 1.2 (`2e-5` is a float), duplicate keys rejected, and a YAML syntax error becomes a
diagnostic with its line and column instead of a traceback.

A recipe is small, hand-written data, so anything else in a file is refused at its line
before the document is built (`yaml_limit_problems`): tags other than YAML's core ones,
nesting deeper than MAX_DEPTH, more than MAX_ALIASES aliases or aliases that would grow
the plain data past MAX_NODES (a "billion laughs" alias bomb), numbers of absurd length,
and files over MAX_RECIPE_BYTES. The loader therefore never expands without bound.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
    ScalarEvent,
)

from runner.recipe.diagnostics import ERROR, Diagnostic, KeyPath, RecipeError, dotted

# Limits on what a recipe file may make the loader do. The shipped recipes are a few KB,
# at most 6 levels deep, with no aliases; these leave room for any real recipe (a large
# model.config, a long system prompt, a few anchors for repeated blocks) while keeping a
# hostile file to milliseconds and kilobytes.
MAX_RECIPE_BYTES = 1024 * 1024
"""Larger than any recipe; a bigger file is not a recipe (or is an attack)."""
MAX_DEPTH = 32
"""Nested mappings/lists; deeper nesting would exhaust Python's recursion limit in the
YAML composer, the schema validator and deepcopy."""
MAX_ALIASES = 100
"""`*alias` references in one document."""
MAX_NODES = 100_000
"""Values in the plain data once every alias is expanded: a 2 KB file of nested aliases
can otherwise ask for billions."""
MAX_NUMBER_DIGITS = 1000
"""Digits in a plain number; Python refuses to convert integers over 4300 digits, and
anything past ~310 digits is beyond a float anyway."""
YAML_TAG_PREFIX = "tag:yaml.org,2002:"
CORE_TAGS = frozenset(
    YAML_TAG_PREFIX + name for name in ("str", "int", "float", "bool", "null", "map", "seq")
)
"""The YAML 1.2 core schema's tags; any other (`!foo`, `!!python/object`, `!!set`) has no
meaning in a recipe."""
SURROGATE = re.compile("[\ud800-\udfff]")  # from "\ud83d" escapes; no text can hold them
NUMBER = re.compile(r"[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|[0-9_.]+([eE][-+]?[0-9]+)?)")


def round_trip_yaml() -> YAML:
    """The YAML reader/writer used everywhere: YAML 1.2, comments and layout kept."""
    yaml = YAML(typ="rt")
    yaml.version = None  # YAML 1.2 core schema; no `%YAML` directive written back
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    return yaml


# Words YAML 1.1 readers (many editors and tools) take for booleans: always quoted.
YAML11_BOOLEANS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false"})


def _represent_text(representer: Any, text: str) -> Any:
    style = "'" if text.lower() in YAML11_BOOLEANS else None
    return representer.represent_scalar("tag:yaml.org,2002:str", text, style=style)


def dump_yaml(data: Any) -> str:
    """Plain data as YAML text, the one way the runner writes YAML: `recipe show`, the
    saved recipe.resolved.yaml and `recipe run --dry-run` print the same text for the
    same recipe (null written as `null`, key order kept)."""
    yaml = round_trip_yaml()
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    yaml.representer.add_representer(str, _represent_text)
    yaml.width = 4096  # a long value (a path in site-packages) stays on its key's line
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


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


def to_plain(node: Any) -> Any:
    """ruamel's commented containers and scalar subclasses -> plain Python values.

    A date (`2024-01-01`) stays text: YAML 1.2's core schema has no timestamps.
    """
    if isinstance(node, datetime.date):
        return str(node)
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def yaml_limit_problems(text: str, display: str) -> list[Diagnostic]:
    """What in `text` goes past the loader's limits (see the module docstring), read from
    YAML's event stream: nothing is built, so a hostile file costs one linear pass.

    Raises ruamel's YAMLError for text that is not YAML (the caller words it)."""
    problems: list[Diagnostic] = []

    def problem(rule: str, event: Any, message: str, hint: str) -> None:
        mark = event.start_mark
        problems.append(
            Diagnostic(rule, ERROR, message, hint, display, mark.line + 1, mark.column + 1)
        )

    sizes: dict[str, int] = {}  # anchor -> values it expands to (once closed)
    open_anchors: list[str | None] = []
    counts: list[int] = [0]  # expanded values inside each open collection
    aliases = 0
    for event in round_trip_yaml().parse(io.StringIO(text)):
        if isinstance(event, NodeEvent) and not isinstance(event, AliasEvent):
            tag = event.tag
            if tag is not None and str(tag) not in CORE_TAGS:
                problem(
                    "yaml-tag",
                    event,
                    f"the YAML tag {_written_tag(str(tag))} has no meaning in a recipe",
                    "delete the tag and write the plain value; only YAML's core tags such "
                    "as !!str are allowed",
                )
        if isinstance(event, ScalarEvent):
            counts[-1] += 1
            if event.anchor:
                sizes[event.anchor] = 1
            value = event.value
            if SURROGATE.search(value):
                problem(
                    "yaml-syntax",
                    event,
                    "a \\uD800-\\uDFFF escape is half of a UTF-16 pair, not a character",
                    "write the character itself, or its \\U0001F600-style escape",
                )
            if event.style is None and len(value) > MAX_NUMBER_DIGITS and NUMBER.fullmatch(value):
                problem(
                    "yaml-limit",
                    event,
                    f"a number with {len(value)} digits",
                    "write an ordinary number; past ~310 digits it is beyond a float",
                )
        elif isinstance(event, AliasEvent):
            aliases += 1
            if event.anchor not in sizes and event.anchor in open_anchors:
                problem(
                    "yaml-alias",
                    event,
                    f"the alias *{event.anchor} is inside its own anchor (a recursive value)",
                    "a recipe is a tree: copy the values instead of referring back",
                )
                break
            counts[-1] += sizes.get(event.anchor, 1)
            if aliases > MAX_ALIASES:
                problem(
                    "yaml-alias",
                    event,
                    f"more than {MAX_ALIASES} aliases in one recipe",
                    "write the values out; a recipe needs few anchors, if any",
                )
                break
        elif isinstance(event, CollectionStartEvent):
            counts[-1] += 1
            counts.append(0)
            open_anchors.append(event.anchor)
            if len(counts) - 1 > MAX_DEPTH:
                problem(
                    "yaml-limit",
                    event,
                    f"nested more than {MAX_DEPTH} levels deep",
                    "a recipe is a few levels deep; flatten this value",
                )
                break
        elif isinstance(event, CollectionEndEvent):
            inner = counts.pop()
            anchor = open_anchors.pop()
            counts[-1] += inner
            if anchor:
                sizes[anchor] = inner + 1
        if sum(counts) > MAX_NODES:
            problem(
                "yaml-alias",
                event,
                f"aliases here expand the recipe to more than {MAX_NODES:,} values",
                "write the values out instead of nesting aliases",
            )
            break
    return problems


def _written_tag(tag: str) -> str:
    """`tag:yaml.org,2002:set` as written: `!!set`."""
    return "!!" + tag.removeprefix(YAML_TAG_PREFIX) if tag.startswith(YAML_TAG_PREFIX) else tag


def parse_yaml(text: str, display: str) -> Any:
    """Parse YAML text into a round-trip document, or raise RecipeError with a position.

    The text is first checked against the loader's limits (`yaml_limit_problems`)."""
    try:
        problems = yaml_limit_problems(text, display)
        if problems:
            raise RecipeError(problems)
        return round_trip_yaml().load(io.StringIO(text))
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        raise RecipeError(
            [
                Diagnostic(
                    rule="yaml-duplicate-key",
                    severity=ERROR,
                    message=_first_line(exc.problem or "duplicate key"),
                    hint="each key may appear once per block; delete or merge the repeated one",
                    file=display,
                    line=mark.line + 1 if mark else 0,
                    column=mark.column + 1 if mark else 0,
                )
            ]
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise RecipeError(
            [
                Diagnostic(
                    rule="yaml-syntax",
                    severity=ERROR,
                    message=f"invalid YAML: {problem}",
                    hint="check indentation (spaces only) and quoting near this position",
                    file=display,
                    line=mark.line + 1 if mark else 0,
                    column=mark.column + 1 if mark else 0,
                )
            ]
        ) from None
    except YAMLError as exc:
        raise RecipeError(
            [
                Diagnostic(
                    rule="yaml-syntax",
                    severity=ERROR,
                    message=f"invalid YAML: {_first_line(str(exc))}",
                    hint="check the file is YAML",
                    file=display,
                )
            ]
        ) from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read and parse a recipe file and apply `--set key=value` overrides.

    Raises RecipeError (never a bare exception) for a missing file, invalid YAML, a
    document that is not a mapping, or a malformed override. Schema and rules are checked
    later, by `runner.lint`.
    """
    from runner.recipe.overrides import apply_overrides

    path = Path(path)
    display = str(path)
    try:
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(
                [
                    Diagnostic(
                        rule="yaml-limit",
                        severity=ERROR,
                        message=f"{display} is {size:,} bytes; a recipe is at most "
                        f"{MAX_RECIPE_BYTES:,}",
                        hint="check the path; a recipe is a short YAML file, and data goes in "
                        "the files it names",
                        file=display,
                    )
                ]
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(
            [
                Diagnostic(
                    rule="file-not-found",
                    severity=ERROR,
                    message=f"no such recipe file: {display}",
                    hint="give a path to a .yaml file or a shipped recipe name (`recipe list`)",
                    file=display,
                )
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(
            [
                Diagnostic(
                    rule="file-unreadable",
                    severity=ERROR,
                    message=f"cannot read {display}: {exc}",
                    hint="check the path and that the file is UTF-8 text",
                    file=display,
                )
            ]
        ) from None
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
    data = to_plain(doc)
    data, set_keys = apply_overrides(data, list(overrides), display)
    return Recipe(path=path, display=display, text=text, doc=doc, data=data, overrides=set_keys)
