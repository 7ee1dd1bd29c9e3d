"""Rules tying `method` (full / lora / qlora) to the lora and quantization blocks."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING


def _qlora_needs_4bit(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.method == "qlora" and ctx.s.quantized_bits != 4:
        yield Finding(("quantization",) if ctx.written("quantization") else ("method",))


def _lora_block_missing(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.adapter and not ctx.written("lora"):
        yield Finding(("method",), {"method": ctx.s.method})


def _full_forbids_lora(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.method == "full" and ctx.written("lora"):
        yield Finding(("lora",))


def _full_forbids_quantization(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.method == "full" and ctx.written("quantization") and ctx.s.quantized_bits is None:
        yield Finding(("quantization",))


def _full_with_kbit(ctx: RuleContext) -> Iterator[Finding]:
    bits = ctx.s.quantized_bits
    if ctx.s.method == "full" and bits is not None:
        yield Finding(("quantization", f"load_in_{bits}bit"), {"bits": bits})


def _lora_with_quantization(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.method == "lora" and ctx.s.quantized_bits is not None:
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
