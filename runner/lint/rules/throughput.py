"""Rules about the throughput options: Liger kernels, torch.compile, fused AdamW and
length bucketing, each where it cannot work or does nothing. (Packing is checked with
the data, runner.lint.rules.data; a missing package by runner.lint.rules.extras.)"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from runner.expand.model import attention_kernel, flash_attention_installed
from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.plan.setup import padding_free
from runner.recipe.diagnostics import ERROR, WARNING

CXX_COMPILERS = ("c++", "g++", "clang++")


def _liger_needs_gpu(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.training["use_liger_kernel"] is True and ctx.s.cpu_only:
        yield Finding(("training", "use_liger_kernel"))


def _liger_fused_cross_entropy(ctx: RuleContext) -> Iterator[Finding]:
    training = ctx.s.training
    config = training["liger_kernel_config"] or {}
    if training["use_liger_kernel"] is True and config.get("fused_linear_cross_entropy"):
        yield Finding(ctx.nearest("training", "liger_kernel_config", "fused_linear_cross_entropy"))


def compiler_found() -> bool:
    """Whether a C++ compiler is on PATH (or named by $CXX): Inductor needs one on CPU."""
    named = os.environ.get("CXX")
    return bool(named and shutil.which(named)) or any(shutil.which(c) for c in CXX_COMPILERS)


def _compiled(ctx: RuleContext) -> bool:
    training = ctx.s.training
    return bool(
        training["torch_compile"]
        or training["torch_compile_backend"]
        or training["torch_compile_mode"]
    )


def _torch_compile_on_cpu(ctx: RuleContext) -> Iterator[Finding]:
    if _compiled(ctx) and ctx.s.cpu_only:
        found = compiler_found()
        yield Finding(
            ctx.nearest("training", "torch_compile"),
            {"compiler": "a C++ compiler is on PATH" if found else "no C++ compiler is on PATH"},
            hint=None
            if found
            else "install one (e.g. apt-get install g++, or set $CXX), or drop torch_compile",
        )


def _optimizer_not_fused(ctx: RuleContext) -> Iterator[Finding]:
    # on the CPU the fused kernel buys little; the rule is about GPU steps
    if ctx.s.training["optim"] == "adamw_torch" and not ctx.s.cpu_only:
        yield Finding(("training", "optim"))


def _bucketing_with_packing(ctx: RuleContext) -> Iterator[Finding]:
    training = ctx.s.training
    if training["train_sampling_strategy"] == "group_by_length" and training["packing"] is True:
        yield Finding(("training", "train_sampling_strategy"))


def _packing_dense_attention(ctx: RuleContext) -> Iterator[Finding]:
    # A padding-free micro-batch of several rows is one flattened sequence: sdpa and eager
    # get a block-diagonal mask over all of it (correct, tests/test_packing.py) and score
    # every pair of its tokens; flash attention reads the boundaries and does not.
    training = ctx.s.training
    rows = training["per_device_train_batch_size"]
    if not padding_free(training) or not isinstance(rows, int) or rows < 2:
        return
    kernel = attention_kernel(
        ctx.s, on_gpu=not ctx.s.cpu_only, flash_installed=flash_attention_installed()
    )
    if kernel not in ("sdpa", "eager"):
        return
    tokens = rows * (ctx.s.max_length or 0)
    yield Finding(
        ctx.nearest("training", "per_device_train_batch_size"),
        {"rows": rows, "kernel": kernel, "tokens": f"{tokens:,}"},
        hint=f"set per_device_train_batch_size: 1 and gradient_accumulation_steps "
        f"{rows} times higher (the same tokens per optimizer step); or, on a GPU, install "
        f"flash-attn (the flash-attn extra) and use attn_implementation: auto",
    )


RULES = [
    Rule(
        "liger-needs-gpu",
        ERROR,
        "training.use_liger_kernel runs Liger's Triton kernels, which need a GPU, and this "
        "recipe trains on the CPU",
        "drop use_liger_kernel for the CPU (it changes no result, only speed and memory)",
        _liger_needs_gpu,
    ),
    Rule(
        "liger-fused-cross-entropy",
        ERROR,
        "Liger's fused_linear_cross_entropy replaces the model's forward, which TRL 1.16 "
        "needs for its own fused LM head (SFTTrainer stops with a ValueError)",
        "leave fused_linear_cross_entropy out: TRL's fused LM head already never builds the "
        "full logits",
        _liger_fused_cross_entropy,
    ),
    Rule(
        "torch-compile-on-cpu",
        WARNING,
        "torch_compile on the CPU: Inductor generates and compiles C++ before the first "
        "step (a minute or more; {compiler})",
        "worth it for long runs only; drop torch_compile for short ones",
        _torch_compile_on_cpu,
    ),
    Rule(
        "optimizer-not-fused",
        WARNING,
        "optim adamw_torch runs AdamW as foreach kernels on the GPU, with a scratch copy the "
        "size of the gradients during each step",
        "use optim: adamw_torch_fused: the same update in fused kernels, faster and without "
        "the scratch (`recipe plan` shows the difference)",
        _optimizer_not_fused,
    ),
    Rule(
        "bucketing-with-packing",
        WARNING,
        "train_sampling_strategy group_by_length does nothing with packing: packed rows are "
        "all about max_length long",
        "drop it; or turn packing off, and group_by_length then batches rows of similar "
        "length (less padding)",
        _bucketing_with_packing,
    ),
    Rule(
        "packing-dense-attention",
        WARNING,
        "packing with {rows} rows per micro-batch under {kernel}: the micro-batch is one "
        "flattened sequence of up to {tokens} tokens, and its block-diagonal mask keeps the "
        "examples apart but attention still scores every pair of those tokens ({rows}x the "
        "attention work of one row at a time)",
        "set per_device_train_batch_size: 1 and raise gradient_accumulation_steps to match",
        _packing_dense_attention,
    ),
]
