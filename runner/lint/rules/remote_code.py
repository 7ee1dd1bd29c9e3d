"""Rules about code a recipe would make the runner execute: the model's own Python code
(`model.trust_remote_code`), and keys that name a Python module to import.

A recipe is copied from anywhere, so lint says at the line what code it asks for: the
model's code files and whether they can change under the recipe (a hub branch or tag
can; a commit cannot). Nothing is imported: the files are found as
runner.recipe.remote_code finds them, in a local folder or the Hugging Face cache.
"""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING
from runner.recipe.remote_code import FLAG, CodeSource, code_sources, is_commit, requested


def _trust_remote_code(ctx: RuleContext) -> Iterator[Finding]:
    model = ctx.s.model
    if requested(model):
        yield Finding(("model", "trust_remote_code"), {"code": code_sources(model).describe()})


def _unpinned(ctx: RuleContext) -> Iterator[Finding]:
    """A hub source whose code is whatever the repository holds at download time."""
    model = ctx.s.model
    if not requested(model):
        return
    for source in code_sources(model).sources:
        why = _why_unpinned(ctx, source)
        if why is None:
            continue
        key = ("model", "trust_remote_code")
        if source.reference == model.get("tokenizer"):
            key = ("model", "tokenizer")
        elif ctx.written("model", "revision") and not source.elsewhere:
            key = ("model", "revision")
        yield Finding(key, {"source": source.describe(), "why": why})


def _why_unpinned(ctx: RuleContext, source: CodeSource) -> str | None:
    """Why this source's code can change under the recipe, or None when it cannot."""
    if source.elsewhere:
        repos = sorted({entry.split("--")[0] for entry in source.elsewhere})
        return (
            f"its auto_map takes code from another repository ({', '.join(repos)}), "
            "at that repository's default branch"
        )
    if source.local:
        return None
    if source.reference != ctx.s.model.get("id"):
        if source.folder is not None and not source.files:
            return None  # a cached tokenizer with no code of its own: nothing runs
        return "model.tokenizer is a hub id, and the recipe has no revision to pin it"
    revision = source.revision
    if revision is None:
        return "model.revision is not set (the default branch)"
    if not is_commit(revision):
        return f"model.revision {revision!r} is a branch or tag, not a full commit hash"
    return None


MEGATRON_KEYS = ("megatron_config", "megatron_core")


def _names_python_code(ctx: RuleContext) -> Iterator[Finding]:
    for key in MEGATRON_KEYS:
        if ctx.written("lora", key):
            yield Finding(("lora", key), {"key": f"lora.{key}"})


RULES = [
    Rule(
        "trust-remote-code",
        WARNING,
        "model.trust_remote_code asks to run the model's own Python code: {code}",
        f"read that code first; recipe runs it only when the command line says {FLAG}, "
        f"e.g. `recipe run RECIPE {FLAG}`",
        _trust_remote_code,
    ),
    Rule(
        "trust-remote-code-unpinned",
        ERROR,
        "model.trust_remote_code on {source}: {why}; the code that runs is whatever the "
        "repository holds when it is downloaded",
        "set model.revision to the full 40-character commit hash of the code you read (the "
        "hub's file history lists it), or download the model and name the local folder",
        _unpinned,
    ),
    Rule(
        "names-python-code",
        ERROR,
        "{key} makes PEFT import the Python module lora.megatron_core names (Megatron-LM "
        "tensor parallelism, which recipe does not train with)",
        "remove lora.megatron_config and lora.megatron_core; a recipe never names code to import",
        _names_python_code,
    ),
]
