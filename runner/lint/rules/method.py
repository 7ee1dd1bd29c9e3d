"""Rules tying `method` (full / lora / qlora) to the lora and quantization blocks, and the
adapter's target modules to the model's modules."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.plan.modules import llama_modules, target_problems
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


def _target_findings(ctx: RuleContext, unfit: bool) -> Iterator[Finding]:
    """lora.target_modules entries that match no module (unfit False) or a module LoRA
    cannot adapt (unfit True), where the model's modules are known without loading it
    (model.config, a local or cached config.json, a known model, a GGUF header); `recipe
    run` checks the other architectures on the meta device (runner.expand.model)."""
    lora = ctx.s.lora_config
    modules = llama_modules(ctx.model_config) if lora is not None else None
    if modules is None:
        return
    for problem in target_problems(lora["target_modules"], modules):
        if bool(problem.matched) == unfit:
            index = () if problem.index is None else (problem.index,)
            yield Finding(
                ("lora", "target_modules", *index), message=problem.message, hint=problem.hint
            )


def _lora_target_missing(ctx: RuleContext) -> Iterator[Finding]:
    return _target_findings(ctx, unfit=False)


def _lora_target_unsupported(ctx: RuleContext) -> Iterator[Finding]:
    return _target_findings(ctx, unfit=True)


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
    Rule(
        "lora-target-missing",
        ERROR,
        "lora.target_modules names a module the model does not have",
        "name the model's modules, or use target_modules: all-linear",
        _lora_target_missing,
    ),
    Rule(
        "lora-target-unsupported",
        ERROR,
        "lora.target_modules names a module LoRA cannot adapt",
        "name linear layers (q_proj, v_proj...), or use target_modules: all-linear",
        _lora_target_unsupported,
    ),
]
