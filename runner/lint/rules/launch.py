"""Rules about how accelerate launches training: DeepSpeed, FSDP and quantized models."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR


def _deepspeed_and_fsdp(ctx: RuleContext) -> Iterator[Finding]:
    strategy = ctx.s.strategy
    if ctx.written("launch", "fsdp") and (
        ctx.written("launch", "deepspeed") or strategy == "deepspeed"
    ):
        yield Finding(("launch", "fsdp"))
    elif strategy == "fsdp" and ctx.written("launch", "deepspeed"):
        yield Finding(("launch", "deepspeed"))


def _qlora_zero3_quant_storage(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.method != "qlora" or ctx.s.zero_stage != 3:
        return
    dtype = ctx.s.model_dtype
    storage = (ctx.s.quantization or {}).get("bnb_4bit_quant_storage")
    if storage != dtype:
        key = ctx.nearest("quantization", "bnb_4bit_quant_storage")
        if not ctx.written("quantization"):
            key = ("method",)
        yield Finding(key, {"storage": storage or "uint8", "dtype": dtype})


RULES = [
    Rule(
        "deepspeed-and-fsdp",
        ERROR,
        "launch configures both DeepSpeed and FSDP; a run uses one of them",
        "keep the block that matches launch.strategy and delete the other",
        _deepspeed_and_fsdp,
    ),
    Rule(
        "qlora-zero3-quant-storage",
        ERROR,
        "QLoRA under DeepSpeed ZeRO-3 needs bnb_4bit_quant_storage to equal the model dtype "
        "({dtype}), not {storage}",
        "set quantization.bnb_4bit_quant_storage: {dtype} so ZeRO-3 can shard the 4-bit weights",
        _qlora_zero3_quant_storage,
    ),
]
