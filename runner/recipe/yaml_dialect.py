"""The YAML the runner reads and writes, and the limits it holds hostile input to.

YAML 1.2 (`2e-5` is a float, `2024-01-01` is text), duplicate keys rejected, comments and
layout kept for `recipe new`. A YAML syntax error becomes a diagnostic with its line and
column instead of a traceback; a flow collection (`[a, b` or `{a: 1`) or a quoted text
left open is reported where it opened, not where the parser gave up.

A recipe is small, hand-written data, so anything else in a file is refused at its line
before the document is built (`yaml_limit_problems`): tags other than YAML's core ones,
nesting deeper than MAX_DEPTH, more than MAX_ALIASES aliases or aliases that would grow
the plain data past MAX_NODES (a "billion laughs" alias bomb), numbers of absurd length,
and files over MAX_RECIPE_BYTES. The loader therefore never expands without bound.
"""

from __future__ import annotations

import datetime
import io
import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    NodeEvent,
    ScalarEvent,
)

from runner.recipe.diagnostics import ERROR, Diagnostic, RecipeError

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


@dataclass
class _LimitWalk:
    """One pass over YAML's event stream, counting what the plain data would hold."""

    display: str
    problems: list[Diagnostic] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # anchor -> values (once closed)
    open_anchors: list[str | None] = field(default_factory=list)
    counts: list[int] = field(default_factory=lambda: [0])  # values in each open collection
    aliases: int = 0

    def problem(self, rule: str, event: Event, message: str, hint: str) -> None:
        mark = event.start_mark
        self.problems.append(
            Diagnostic(rule, ERROR, message, hint, self.display, mark.line + 1, mark.column + 1)
        )

    def visit(self, event: Event) -> bool:
        """Count `event`; False once a limit is past and the walk must stop."""
        if isinstance(event, NodeEvent) and not isinstance(event, AliasEvent):
            self.tag(event)
        if isinstance(event, ScalarEvent):
            self.scalar(event)
        elif (isinstance(event, AliasEvent) and not self.alias(event)) or (
            isinstance(event, CollectionStartEvent) and not self.start(event)
        ):
            return False
        elif isinstance(event, CollectionEndEvent):
            inner, anchor = self.counts.pop(), self.open_anchors.pop()
            self.counts[-1] += inner
            if anchor:
                self.sizes[anchor] = inner + 1
        if sum(self.counts) > MAX_NODES:
            self.problem(
                "yaml-alias",
                event,
                f"aliases here expand the recipe to more than {MAX_NODES:,} values",
                "write the values out instead of nesting aliases",
            )
            return False
        return True

    def tag(self, event: NodeEvent) -> None:
        if event.tag is not None and str(event.tag) not in CORE_TAGS:
            self.problem(
                "yaml-tag",
                event,
                f"the YAML tag {_written_tag(str(event.tag))} has no meaning in a recipe",
                "delete the tag and write the plain value; only YAML's core tags such "
                "as !!str are allowed",
            )

    def scalar(self, event: ScalarEvent) -> None:
        self.counts[-1] += 1
        if event.anchor:
            self.sizes[event.anchor] = 1
        value = event.value
        if SURROGATE.search(value):
            self.problem(
                "yaml-syntax",
                event,
                "a \\uD800-\\uDFFF escape is half of a UTF-16 pair, not a character",
                "write the character itself, or its \\U0001F600-style escape",
            )
        if event.style is None and len(value) > MAX_NUMBER_DIGITS and NUMBER.fullmatch(value):
            self.problem(
                "yaml-limit",
                event,
                f"a number with {len(value)} digits",
                "write an ordinary number; past ~310 digits it is beyond a float",
            )

    def alias(self, event: AliasEvent) -> bool:
        self.aliases += 1
        if event.anchor not in self.sizes and event.anchor in self.open_anchors:
            self.problem(
                "yaml-alias",
                event,
                f"the alias *{event.anchor} is inside its own anchor (a recursive value)",
                "a recipe is a tree: copy the values instead of referring back",
            )
            return False
        self.counts[-1] += self.sizes.get(event.anchor, 1)
        if self.aliases > MAX_ALIASES:
            self.problem(
                "yaml-alias",
                event,
                f"more than {MAX_ALIASES} aliases in one recipe",
                "write the values out; a recipe needs few anchors, if any",
            )
            return False
        return True

    def start(self, event: CollectionStartEvent) -> bool:
        self.counts[-1] += 1
        self.counts.append(0)
        self.open_anchors.append(event.anchor)
        if len(self.counts) - 1 > MAX_DEPTH:
            self.problem(
                "yaml-limit",
                event,
                f"nested more than {MAX_DEPTH} levels deep",
                "a recipe is a few levels deep; flatten this value",
            )
            return False
        return True


def yaml_limit_problems(text: str, display: str) -> list[Diagnostic]:
    """What in `text` goes past the loader's limits (see the module docstring), read from
    YAML's event stream: nothing is built, so a hostile file costs one linear pass.

    Raises ruamel's YAMLError for text that is not YAML (the caller words it)."""
    walk = _LimitWalk(display)
    for event in round_trip_yaml().parse(io.StringIO(text)):
        if not walk.visit(event):
            break
    return walk.problems


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
        diagnostic = Diagnostic(
            rule="yaml-duplicate-key",
            severity=ERROR,
            message=_first_line(exc.problem or "duplicate key"),
            hint="each key may appear once per block; delete or merge the repeated one",
            file=display,
            line=mark.line + 1 if mark else 0,
            column=mark.column + 1 if mark else 0,
        )
    except MarkedYAMLError as exc:
        diagnostic = syntax_diagnostic(exc, display)
    except YAMLError as exc:
        diagnostic = Diagnostic(
            rule="yaml-syntax",
            severity=ERROR,
            message=f"invalid YAML: {_first_line(str(exc))}",
            hint="check the file is YAML",
            file=display,
        )
    raise RecipeError([diagnostic]) from None


# What the parser was reading when it failed (its error's `context`) -> what was left
# open there, and how it closes. The parser notices only where it gives up, often lines
# later, on a line that is fine.
LEFT_OPEN = {
    "while parsing a flow sequence": (
        "the list opened with '['",
        "close it with ']'; inside it, each item but the last ends with a comma",
    ),
    "while parsing a flow mapping": (
        "the mapping opened with '{'",
        "close it with '}'; inside it, each key: value but the last ends with a comma",
    ),
    "while scanning a quoted scalar": (
        "the quoted text",
        "close it with the quote it opened with",
    ),
}


def syntax_diagnostic(exc: MarkedYAMLError, display: str) -> Diagnostic:
    """A YAML syntax error at its line: where a flow collection or a quoted text opened
    when that is what was never closed, else where the parser failed."""
    opened, failed = exc.context_mark, exc.problem_mark
    problem = exc.problem or exc.context or "invalid YAML"
    left_open = LEFT_OPEN.get(exc.context or "")
    if left_open and opened is not None and failed is not None and failed.line > opened.line:
        what, fix = left_open
        return Diagnostic(
            rule="yaml-syntax",
            severity=ERROR,
            message=f"invalid YAML: {what} here is still open at line {failed.line + 1}, "
            f"where the parser stopped ({problem})",
            hint=fix,
            file=display,
            line=opened.line + 1,
            column=opened.column + 1,
        )
    mark = failed or opened
    return Diagnostic(
        rule="yaml-syntax",
        severity=ERROR,
        message=f"invalid YAML: {problem}",
        hint="check indentation (spaces only) and quoting near this position",
        file=display,
        line=mark.line + 1 if mark else 0,
        column=mark.column + 1 if mark else 0,
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
