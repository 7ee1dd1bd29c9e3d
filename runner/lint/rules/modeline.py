"""The `$schema` modeline: the first-line comment that gives editors completion and red
squiggles. A recipe copied by hand out of recipes/ keeps `../schemas/...`, which means
nothing from the copy's folder; editors then check nothing, silently."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import WARNING
from runner.recipe.schema import SCHEMA_PATH, modeline_schema


def _modeline_unresolved(ctx: RuleContext) -> Iterator[Finding]:
    found = modeline_schema(ctx.recipe.text, ctx.recipe.directory)
    if found is None or found[1] is None or found[1].is_file():
        return
    yield Finding((), {"target": found[0], "schema": SCHEMA_PATH.resolve().as_posix()})


RULES = [
    Rule(
        "schema-modeline",
        WARNING,
        "the `$schema` modeline names {target}, which does not exist from this recipe's "
        "folder, so editors check nothing",
        "point it at the schema: `# yaml-language-server: $schema={schema}`; "
        "`recipe new --from` writes a copy's modeline so",
        _modeline_unresolved,
    ),
]
