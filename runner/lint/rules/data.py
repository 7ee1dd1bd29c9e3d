"""Rules about the data: local files that exist, lengths that fit, packing that is safe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING, KeyPath
from runner.recipe.resolve import looks_local


def data_sources(data: dict[str, Any]) -> Iterator[tuple[KeyPath, dict[str, Any]]]:
    """(key path, source) of every train and eval source of a data block."""
    for split in ("train", "eval"):
        items = data.get(split)
        if isinstance(items, list):
            for index, item in enumerate(items):
                if isinstance(item, dict):
                    yield ("data", split, index), item


def _data_file_missing(ctx: RuleContext) -> Iterator[Finding]:
    base = ctx.recipe.directory
    for key, item in data_sources(ctx.block("data")):
        source = item["source"]
        if looks_local(source, base) and not (base / Path(source).expanduser()).exists():
            yield Finding((*key, "source"), {"source": source, "folder": str(base)})


def _max_length_over_context(ctx: RuleContext) -> Iterator[Finding]:
    context = (ctx.model_config or {}).get("max_position_embeddings")
    max_length = ctx.s.max_length
    if not isinstance(context, int) or max_length is None or max_length <= context:
        return
    written = ctx.written("training", "max_length")
    yield Finding(
        ctx.nearest("training", "max_length") if ctx.written("training") else ("model",),
        {
            "max_length": max_length,
            "context": context,
            "default": "" if written else " (TRL's default)",
        },
    )


def _packing_cross_contamination(ctx: RuleContext) -> Iterator[Finding]:
    # transformers 5 builds block-diagonal masks from position_ids for every attention
    # kernel, so TRL's padding-free packing ('bfd', 'bfd_split') keeps sequences apart.
    # 'wrapped' packing without padding_free hands the model an all-ones mask instead.
    training = ctx.s.training
    if training["packing"] is not True:
        return
    if training["packing_strategy"] == "wrapped" and training["padding_free"] is not True:
        yield Finding(("training", "packing"), {"attn": ctx.s.model["attn_implementation"]})


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
