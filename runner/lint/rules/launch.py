"""Rules about how accelerate launches training: DeepSpeed, FSDP and quantized models."""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR


def _deepspeed_and_fsdp(ctx: RuleContext) -> Iterator[Finding]:
    launch = ctx.launch
    strategy = launch.get("strategy")
    if "fsdp" in launch and ("deepspeed" in launch or strategy == "deepspeed"):
        yield Finding(("launch", "fsdp"))
    elif strategy == "fsdp" and "deepspeed" in launch:
        yield Finding(("launch", "deepspeed"))


def _zero_stage(ctx: RuleContext) -> object:
    deepspeed = ctx.launch.get("deepspeed")
    return deepspeed.get("zero_stage", 2) if isinstance(deepspeed, dict) else 2


def _qlora_zero3_quant_storage(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.method != "qlora" or ctx.launch.get("strategy") != "deepspeed":
        return
    if _zero_stage(ctx) != 3:
        return
    dtype = ctx.model.get("dtype", "bfloat16")
    storage = ctx.block("quantization").get("bnb_4bit_quant_storage")
    if storage != dtype:
        key = ("quantization", "bnb_4bit_quant_storage")
        if storage is None:
            key = ("quantization",) if "quantization" in ctx.data else ("method",)
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
