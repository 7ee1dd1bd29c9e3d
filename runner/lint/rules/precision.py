"""Rules about numeric precision: bf16/fp16 flags, model dtype and the card's support."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING


def _fp16_and_bf16(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.training["bf16"] is True and ctx.s.training["fp16"] is True:
        yield Finding(("training", "fp16"))


def _bf16_unsupported(ctx: RuleContext) -> Iterator[Finding]:
    card = ctx.card
    if card is None or card.bf16:
        return
    where = {"card": card.name if card.name != "custom" else card.label}
    if ctx.s.training["bf16"] is True:
        if ctx.written("training", "bf16"):
            yield Finding(("training", "bf16"), where)
        else:
            yield Finding(
                ("training",) if ctx.written("training") else ("hardware",),
                where,
                message="TRL turns bf16 on by default (training sets neither bf16 nor fp16), "
                "but {card} has no bfloat16 support",
            )
    # a derived model.dtype follows bf16, which the finding above already reports
    if ctx.written("model", "dtype") and ctx.s.model_dtype == "bfloat16":
        yield Finding(
            ("model", "dtype"), where, message="model.dtype bfloat16 is not supported by {card}"
        )
    if ctx.written("quantization", "bnb_4bit_compute_dtype") and (
        (ctx.s.quantization_config or {}).get("bnb_4bit_compute_dtype") == "bfloat16"
    ):
        yield Finding(
            ("quantization", "bnb_4bit_compute_dtype"),
            where,
            message="bnb_4bit_compute_dtype bfloat16 is not supported by {card}",
        )


def _dtype_mismatch(ctx: RuleContext) -> Iterator[Finding]:
    if not ctx.written("model", "dtype"):
        return  # derived from the mixed precision, so it matches
    dtype, training = ctx.s.model_dtype, ctx.s.training
    if dtype == "float16" and training["bf16"] is True:
        yield Finding(("model", "dtype"), {"dtype": dtype, "flag": "bf16"})
    elif dtype == "bfloat16" and training["fp16"] is True:
        yield Finding(("model", "dtype"), {"dtype": dtype, "flag": "fp16"})


RULES = [
    Rule(
        "fp16-and-bf16",
        ERROR,
        "training turns on both fp16 and bf16; only one mixed precision can be used",
        "keep bf16: true on cards that support it (RTX 30xx and newer, A100, H100), "
        "else fp16: true and bf16: false",
        _fp16_and_bf16,
    ),
    Rule(
        "bf16-unsupported",
        ERROR,
        "training.bf16 is on, but {card} has no bfloat16 support",
        "set training.bf16: false and training.fp16: true (and model.dtype: float16), "
        "or change hardware if the recipe targets another card",
        _bf16_unsupported,
    ),
    Rule(
        "dtype-mismatch",
        WARNING,
        "model.dtype {dtype} does not match training.{flag}: true",
        "use model.dtype bfloat16 with bf16, float16 with fp16 (or leave model.dtype out to "
        "derive it)",
        _dtype_mismatch,
    ),
]
