"""Rules about the data: local files that exist, lengths that fit, packing that is safe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING
from runner.recipe.resolve import looks_local


def _sources(ctx: RuleContext) -> Iterator[tuple[tuple[str | int, ...], dict]]:
    data = ctx.block("data")
    for split in ("train", "eval"):
        items = data.get(split)
        if isinstance(items, list):
            for index, item in enumerate(items):
                if isinstance(item, dict):
                    yield ("data", split, index), item


def _data_file_missing(ctx: RuleContext) -> Iterator[Finding]:
    base = ctx.recipe.directory
    for key, item in _sources(ctx):
        source = item.get("source")
        if not isinstance(source, str) or not source or not looks_local(source, base):
            continue
        path = base / Path(source).expanduser()
        if not path.exists():
            yield Finding((*key, "source"), {"source": source, "folder": str(base)})


def _max_length_over_context(ctx: RuleContext) -> Iterator[Finding]:
    config = ctx.model_config or {}
    context = config.get("max_position_embeddings")
    max_length = ctx.setting("max_length")
    if not isinstance(context, int) or not isinstance(max_length, int):
        return
    if max_length > context:
        key = ("training", "max_length") if "max_length" in ctx.training else ("training",)
        if "training" not in ctx.data:
            key = ("model",)
        yield Finding(
            key,
            {
                "max_length": max_length,
                "context": context,
                "default": "" if "max_length" in ctx.training else " (TRL's default)",
            },
        )


def _packing_cross_contamination(ctx: RuleContext) -> Iterator[Finding]:
    # transformers 5 builds block-diagonal masks from position_ids for every attention
    # kernel, so TRL's padding-free packing ('bfd', 'bfd_split') keeps sequences apart.
    # 'wrapped' packing without padding_free hands the model an all-ones mask instead.
    if ctx.setting("packing") is not True:
        return
    if ctx.setting("packing_strategy") == "wrapped" and ctx.setting("padding_free") is not True:
        attn = ctx.model.get("attn_implementation", "sdpa")
        yield Finding(("training", "packing"), {"attn": attn})


RULES = [
    Rule(
        "data-file-missing",
        ERROR,
        "data file {source!r} does not exist (looked in {folder})",
        "local data paths are relative to the recipe file's folder; fix the path or use a "
        "hub dataset id",
        _data_file_missing,
    ),
    Rule(
        "max-length-over-context",
        ERROR,
        "training.max_length {max_length}{default} is longer than the model's context of "
        "{context} tokens",
        "set training.max_length to {context} or less",
        _max_length_over_context,
    ),
    Rule(
        "packing-cross-contamination",
        WARNING,
        "packing_strategy 'wrapped' without padding_free lets packed sequences attend to each "
        "other (attention mask is all ones, whatever attn_implementation {attn!r} does)",
        "use packing_strategy: bfd (padding-free: each sequence sees only itself), or set "
        "padding_free: true",
        _packing_cross_contamination,
    ),
]
