"""Rules tying `method` (full / lora / qlora) to the lora and quantization blocks."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING


def _quantized_bits(ctx: RuleContext) -> int | None:
    quant = ctx.block("quantization")
    if quant.get("load_in_4bit") is True:
        return 4
    if quant.get("load_in_8bit") is True:
        return 8
    return None


def _qlora_needs_4bit(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.method == "qlora" and _quantized_bits(ctx) != 4:
        key = ("quantization",) if "quantization" in ctx.data else ("method",)
        yield Finding(key)


def _lora_block_missing(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.method in ("lora", "qlora") and "lora" not in ctx.data:
        yield Finding(("method",), {"method": ctx.method})


def _full_forbids_lora(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.method == "full" and "lora" in ctx.data:
        yield Finding(("lora",))


def _full_forbids_quantization(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.method == "full" and "quantization" in ctx.data and _quantized_bits(ctx) is None:
        yield Finding(("quantization",))


def _full_with_kbit(ctx: RuleContext) -> Iterator[Finding]:
    bits = _quantized_bits(ctx)
    if ctx.method == "full" and bits is not None:
        yield Finding(("quantization", f"load_in_{bits}bit"), {"bits": bits})


def _lora_with_quantization(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.method == "lora" and _quantized_bits(ctx) is not None:
        yield Finding(("method",))


RULES = [
    Rule(
        "qlora-needs-4bit",
        ERROR,
        "method qlora needs a quantization block with load_in_4bit: true",
        "add `quantization: {{load_in_4bit: true, bnb_4bit_quant_type: nf4, "
        "bnb_4bit_compute_dtype: bfloat16}}`, or use method: lora for an unquantized base",
        _qlora_needs_4bit,
    ),
    Rule(
        "lora-block-missing",
        ERROR,
        "method {method} needs a lora block (the adapter's settings)",
        "add `lora: {{r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: all-linear}}`",
        _lora_block_missing,
    ),
    Rule(
        "full-forbids-lora",
        ERROR,
        "method full trains every weight, so a lora block has no effect",
        "delete the lora block, or set method: lora to train an adapter instead",
        _full_forbids_lora,
    ),
    Rule(
        "full-forbids-quantization",
        ERROR,
        "method full cannot use a quantization block",
        "delete the quantization block, or set method: qlora",
        _full_forbids_quantization,
    ),
    Rule(
        "full-with-4bit",
        ERROR,
        "{bits}-bit quantized weights cannot be fully fine-tuned",
        "set method: qlora to train LoRA adapters on the quantized model, or delete the "
        "quantization block for full fine-tuning",
        _full_with_kbit,
    ),
    Rule(
        "lora-with-quantization",
        WARNING,
        "method lora with a quantized base model is QLoRA",
        "set method: qlora so the runner prepares the quantized model for training",
        _lora_with_quantization,
    ),
]
