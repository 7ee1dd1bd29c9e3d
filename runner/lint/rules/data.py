"""Rules about the data: local files that exist, lengths that fit, packing that keeps
examples apart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner import RECIPES_DIR
from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.plan.setup import padding_free
from runner.recipe.diagnostics import ERROR, WARNING, KeyPath
from runner.recipe.resolve import keyed_sources, looks_local


def written_sources(data: dict[str, Any]) -> Iterator[tuple[KeyPath, dict[str, Any]]]:
    """(key path, source) of every train and eval source of a data block as written."""
    for key, item in keyed_sources(data):
        if isinstance(item, dict):
            yield ("data", *key), item


def _data_file_missing(ctx: RuleContext) -> Iterator[Finding]:
    base = ctx.recipe.directory
    for key, item in written_sources(ctx.block("data")):
        source = item["source"]
        if looks_local(source, base) and not (base / Path(source).expanduser()).exists():
            values = {"source": source, "folder": str(base)}
            yield Finding((*key, "source"), values, hint=_shipped_data_hint(ctx, source))


def _shipped_data_hint(ctx: RuleContext, source: str) -> str | None:
    """For a shipped recipe copied by hand out of recipes/: the shipped file its path
    named there, and the command that makes a copy with its paths rewritten."""
    shipped = RECIPES_DIR / source
    if Path(source).is_absolute() or not shipped.is_file():
        return None
    name = ctx.data.get("name")
    original = name if isinstance(name, str) and (RECIPES_DIR / f"{name}.yaml").is_file() else None
    command = f"recipe new mine.yaml --from {original or '<shipped recipe>'}"
    return (
        f"{source!r} is shipped demo data, found beside the shipped recipes and not beside "
        f"a copy: write `source: {shipped.resolve().as_posix()}`, or make the copy with "
        f"`{command}`, which rewrites its paths"
    )


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


def _truncation_mode_unused(ctx: RuleContext) -> Iterator[Finding]:
    # Rows reach TRL fitted to max_length by data.overlong_rows (runner.data.truncation),
    # so TRL's own truncation never cuts anything: one policy, not two.
    if ctx.written("training", "truncation_mode"):
        yield Finding(("training", "truncation_mode"), {"policy": ctx.s.overlong_rows})


def _packing_cross_contamination(ctx: RuleContext) -> Iterator[Finding]:
    # TRL 1.16 packs with 'bfd'/'bfd_split' into rows whose seq_lengths give position ids
    # that restart at each example, and transformers 5.23 keeps the examples apart from
    # them under every attention kernel (flash attention from the boundaries, sdpa,
    # eager and flex from a block-diagonal mask; tests/test_packing.py). A 'wrapped' row
    # has no boundaries (padding_free or not), and eval_packing without packing packs
    # the eval rows without the padding-free collator (an all-ones mask): in both,
    # examples attend to each other.
    training = ctx.s.training
    packs_eval = training["eval_packing"]
    packs_eval = training["packing"] is True if packs_eval is None else packs_eval is True
    wrapped = training["packing_strategy"] == "wrapped"
    if training["packing"] is True and wrapped:
        yield Finding(
            ("training", "packing"),
            {"reason": "packing_strategy 'wrapped' cuts the data into rows with no example "
             "boundaries (even with padding_free)"},
        )  # fmt: skip
    elif packs_eval and (wrapped or not padding_free(training)):
        yield Finding(
            ("training", "eval_packing"),
            {"reason": "eval_packing without packing: the eval rows are packed but batched "
             "with an all-ones attention mask"},
        )  # fmt: skip


def _packing_needs_max_length(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.training["packing"] is True and ctx.s.max_length is None:
        yield Finding(ctx.nearest("training", "max_length"))


def _padding_free_without_packing(ctx: RuleContext) -> Iterator[Finding]:
    training = ctx.s.training
    if (
        training["padding_free"] is True
        and training["packing"] is not True
        and ctx.s.max_length is not None
    ):
        yield Finding(("training", "padding_free"), {"max_length": ctx.s.max_length})


def _attention_needs_gpu(ctx: RuleContext) -> Iterator[Finding]:
    attn = ctx.s.model["attn_implementation"]
    if ctx.s.cpu_only and attn in ("flash_attention_2", "flash_attention_3"):
        yield Finding(("model", "attn_implementation"), {"attn": attn})


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
        "truncation-mode-unused",
        WARNING,
        "training.truncation_mode has no effect: rows longer than max_length follow "
        "data.overlong_rows ({policy}) before TRL sees them",
        "delete truncation_mode; data.overlong_rows: truncate shortens the prompt and keeps "
        "the whole answer (what keep_end was for), drop leaves the row out",
        _truncation_mode_unused,
    ),
    Rule(
        "packing-cross-contamination",
        ERROR,
        "packed examples would attend to each other: {reason}",
        "use training.packing: true with packing_strategy bfd (the default) or bfd_split, "
        "which keep each example apart under every attention kernel; or leave eval_packing "
        "unset",
        _packing_cross_contamination,
    ),
    Rule(
        "packing-needs-max-length",
        ERROR,
        "training.packing needs a max_length (the length rows are packed to); it is null",
        "set training.max_length (TRL's default is 1024), or turn packing off",
        _packing_needs_max_length,
    ),
    Rule(
        "padding-free-without-packing",
        ERROR,
        "training.padding_free without packing does not enforce max_length {max_length} "
        "(TRL stops with a ValueError after the model has loaded)",
        "use training.packing: true (packing_strategy bfd is padding-free already), or "
        "drop padding_free",
        _padding_free_without_packing,
    ),
    Rule(
        "attention-needs-gpu",
        ERROR,
        "attn_implementation {attn!r} runs on NVIDIA GPUs only, and this recipe trains on the CPU",
        "use attn_implementation: sdpa (or auto, which picks flash attention where it "
        "runs); packed examples stay apart under sdpa too",
        _attention_needs_gpu,
    ),
]
