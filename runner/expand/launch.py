"""The `accelerate launch` command line of a resolved recipe.

`launch_argv` is pure: the same recipe, run directory and machine give the same argv, so
tests assert it exactly and `recipe run --dry-run` prints it. Arguments the user puts
after `--` on `recipe run` are passed to accelerate last, so they win.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRAIN_MODULE = "runner.train"
FSDP_WRAP = {
    "transformer_based_wrap": "TRANSFORMER_BASED_WRAP",
    "size_based_wrap": "SIZE_BASED_WRAP",
    "no_wrap": "NO_WRAP",
}


def mixed_precision(resolved: dict[str, Any], use_cpu: bool) -> str:
    """accelerate's --mixed_precision from training.bf16/fp16 ("no" on CPU)."""
    training = resolved.get("training") or {}
    if use_cpu:
        return "no"
    if training.get("bf16"):
        return "bf16"
    if training.get("fp16"):
        return "fp16"
    return "no"


def launch_argv(
    resolved: dict[str, Any],
    run_dir: str | Path,
    *,
    use_cpu: bool,
    extra: Sequence[str] = (),
) -> list[str]:
    """`accelerate launch ... -m runner.train RUN_DIR` for a resolved recipe.

    single: one process; ddp: --multi_gpu; deepspeed: ZeRO settings from launch.deepspeed
    (or its config file); fsdp: FSDP settings from launch.fsdp. Several machines add
    --machine_rank/--main_process_ip/--main_process_port. `use_cpu` adds --cpu.
    """
    launch = resolved.get("launch") or {}
    strategy = launch.get("strategy", "single")
    # --quiet: a failed training process reports its own error; no launcher traceback on top
    argv = ["accelerate", "launch", "--quiet"]
    if use_cpu:
        argv.append("--cpu")
    argv += [
        "--num_processes",
        str(launch.get("num_processes", 1)),
        "--num_machines",
        str(launch.get("num_machines", 1)),
        "--mixed_precision",
        mixed_precision(resolved, use_cpu),
        "--dynamo_backend",
        "no",
    ]
    if launch.get("num_machines", 1) > 1:
        argv += ["--machine_rank", str(launch.get("machine_rank", 0))]
        if "main_process_ip" in launch:
            argv += ["--main_process_ip", str(launch["main_process_ip"])]
        if "main_process_port" in launch:
            argv += ["--main_process_port", str(launch["main_process_port"])]
    if strategy == "ddp":
        argv.append("--multi_gpu")
    elif strategy == "deepspeed":
        argv += _deepspeed_args(launch.get("deepspeed") or {})
    elif strategy == "fsdp":
        argv += _fsdp_args(launch.get("fsdp") or {})
    argv += list(extra)
    argv += ["-m", TRAIN_MODULE, str(run_dir)]
    return argv


def _deepspeed_args(ds: dict[str, Any]) -> list[str]:
    argv = ["--use_deepspeed"]
    if ds.get("config_file"):
        return [*argv, "--deepspeed_config_file", str(ds["config_file"])]
    argv += [
        "--zero_stage",
        str(ds.get("zero_stage", 2)),
        "--offload_optimizer_device",
        str(ds.get("offload_optimizer_device", "none")),
        "--offload_param_device",
        str(ds.get("offload_param_device", "none")),
    ]
    if "zero3_init_flag" in ds:
        argv += ["--zero3_init_flag", str(bool(ds["zero3_init_flag"])).lower()]
    return argv


def _fsdp_args(fsdp: dict[str, Any]) -> list[str]:
    return [
        "--use_fsdp",
        "--fsdp_version",
        str(fsdp.get("version", 2)),
        "--fsdp_reshard_after_forward",
        str(bool(fsdp.get("reshard_after_forward", True))).lower(),
        "--fsdp_offload_params",
        str(bool(fsdp.get("cpu_offload", False))).lower(),
        "--fsdp_auto_wrap_policy",
        FSDP_WRAP[fsdp.get("auto_wrap_policy", "transformer_based_wrap")],
        "--fsdp_state_dict_type",
        str(fsdp.get("state_dict_type", "SHARDED_STATE_DICT")),
    ]


def executable_argv(argv: list[str]) -> list[str]:
    """The argv to execute: `accelerate` run through this Python, so the same environment
    (virtualenv included) trains as the one that checked the recipe."""
    if argv[:2] == ["accelerate", "launch"]:
        return [sys.executable, "-m", "accelerate.commands.launch", *argv[2:]]
    return argv


def shell_command(argv: list[str]) -> str:
    """The argv as one copy-pasteable shell line."""
    return shlex.join(argv)
