"""Rules about how accelerate launches training: processes, machines, DeepSpeed, FSDP, and
what breaks only at scale (quantized storage under sharding, bitsandbytes optimizers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING


def _deepspeed_and_fsdp(ctx: RuleContext) -> Iterator[Finding]:
    strategy = ctx.s.strategy
    if ctx.written("launch", "fsdp") and (
        ctx.written("launch", "deepspeed") or strategy == "deepspeed"
    ):
        yield Finding(("launch", "fsdp"))
    elif strategy == "fsdp" and ctx.written("launch", "deepspeed"):
        yield Finding(("launch", "deepspeed"))


def _single_with_many(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.strategy == "single" and (ctx.s.num_processes > 1 or ctx.s.num_machines > 1):
        yield Finding(("launch", "strategy"), {"processes": ctx.s.num_processes})


def _ddp_with_one(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.strategy == "ddp" and ctx.s.num_processes == 1:
        yield Finding(ctx.nearest("launch", "strategy"))


def _processes_per_machine(ctx: RuleContext) -> Iterator[Finding]:
    processes, machines = ctx.s.num_processes, ctx.s.num_machines
    if processes < machines or processes % machines:
        yield Finding(
            ctx.nearest("launch", "num_processes"),
            {"processes": processes, "machines": machines},
        )


def _processes_over_hardware(ctx: RuleContext) -> Iterator[Finding]:
    hardware = ctx.s.hardware
    if hardware.get("gpu") == "cpu" or "count" not in hardware:
        return
    here = ctx.s.num_processes // max(1, ctx.s.num_machines)
    if here > int(hardware["count"]):
        yield Finding(
            ctx.nearest("launch", "num_processes"), {"here": here, "count": hardware["count"]}
        )


def _multi_node_address(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.num_machines > 1 and not ctx.s.launch.get("main_process_ip"):
        yield Finding(ctx.nearest("launch", "num_machines"))


def _machine_rank(ctx: RuleContext) -> Iterator[Finding]:
    rank = ctx.s.machine_rank
    if rank >= ctx.s.num_machines:
        yield Finding(("launch", "machine_rank"), {"rank": rank, "machines": ctx.s.num_machines})


def _deepspeed_config_missing(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.strategy != "deepspeed":
        return
    path = ctx.s.launch["deepspeed"].get("config_file")
    if path and not Path(path).is_file():
        yield Finding(("launch", "deepspeed", "config_file"), {"path": path})


def _qlora_sharded_quant_storage(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.s.method != "qlora" or not ctx.s.shards_weights:
        return
    quantization, dtype = ctx.s.quantization_config, ctx.s.model_dtype
    if quantization is None:
        return  # qlora-needs-4bit says the block is missing
    storage = quantization["bnb_4bit_quant_storage"]
    if storage != dtype:
        key = ctx.nearest("quantization", "bnb_4bit_quant_storage")
        engine = "FSDP" if ctx.s.strategy == "fsdp" else "DeepSpeed ZeRO-3"
        yield Finding(key, {"storage": storage, "dtype": dtype, "engine": engine})


def _bnb_optimizer_sharded(ctx: RuleContext) -> Iterator[Finding]:
    optim = str(ctx.s.training["optim"])
    if ctx.s.strategy in ("deepspeed", "fsdp") and ("8bit" in optim or "paged" in optim):
        yield Finding(
            ctx.nearest("training", "optim"), {"optim": optim, "strategy": ctx.s.strategy}
        )


RULES = [
    Rule(
        "deepspeed-and-fsdp",
        ERROR,
        "launch configures both DeepSpeed and FSDP; a run uses one of them",
        "keep the block that matches launch.strategy and delete the other",
        _deepspeed_and_fsdp,
    ),
    Rule(
        "single-with-many-processes",
        ERROR,
        "launch.strategy single runs one process, but num_processes is {processes}",
        "set launch.strategy: ddp (or deepspeed, fsdp) to use them, or num_processes: 1",
        _single_with_many,
    ),
    Rule(
        "ddp-with-one-process",
        WARNING,
        "launch.strategy ddp with one process is a single-process run",
        "set launch.num_processes to the number of GPUs, or strategy: single",
        _ddp_with_one,
    ),
    Rule(
        "processes-per-machine",
        ERROR,
        "launch.num_processes {processes} does not split evenly over {machines} machine(s)",
        "num_processes counts every process on every machine: make it a multiple of "
        "num_machines (e.g. 2 machines x 4 GPUs = 8)",
        _processes_per_machine,
    ),
    Rule(
        "processes-over-hardware",
        ERROR,
        "{here} processes per machine, but hardware.count says {count} GPU(s) per machine",
        "one process per GPU: lower launch.num_processes or raise hardware.count",
        _processes_over_hardware,
    ),
    Rule(
        "multi-node-needs-address",
        ERROR,
        "launch.num_machines > 1 needs launch.main_process_ip (the rank-0 machine's address)",
        "add `main_process_ip: 10.0.0.1` (the address every machine reaches machine 0 at) "
        "and, if 29500 is taken, `main_process_port`",
        _multi_node_address,
    ),
    Rule(
        "machine-rank-out-of-range",
        ERROR,
        "launch.machine_rank {rank} is not below num_machines {machines}",
        "machines are numbered 0 to num_machines - 1; set it per machine with "
        "--set launch.machine_rank=N",
        _machine_rank,
    ),
    Rule(
        "deepspeed-config-missing",
        ERROR,
        "the DeepSpeed config file {path} does not exist",
        "config_file is relative to the recipe's folder; fix the path, or delete it to use "
        "the zero_stage/offload settings",
        _deepspeed_config_missing,
    ),
    Rule(
        "qlora-zero3-quant-storage",
        ERROR,
        "QLoRA under {engine} needs bnb_4bit_quant_storage to equal the model dtype "
        "({dtype}), not {storage}",
        "set quantization.bnb_4bit_quant_storage: {dtype} so the 4-bit weights can be sharded",
        _qlora_sharded_quant_storage,
    ),
    Rule(
        "bnb-optimizer-with-sharding",
        ERROR,
        "training.optim {optim} (bitsandbytes) does not work with launch.strategy {strategy}, "
        "which shards the optimizer itself",
        "use optim: adamw_torch (DeepSpeed/FSDP shard its states), or strategy ddp",
        _bnb_optimizer_sharded,
    ),
]
