"""The `accelerate launch` command line of a recipe.

`launch_argv` is pure: the same settings and placement give the same argv, so tests
assert it exactly. `launch_command` decides the placement on this machine first; it is
what `recipe run` executes and what `recipe show --as launch` and `recipe run --dry-run`
print. Arguments the user puts after `--` on `recipe run` are passed to accelerate last,
so they win.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.expand.placement import Placement, choose_placement, gpu_available, mixed_precision
from runner.recipe.settings import Settings

TRAIN_MODULE = "runner.train"
FSDP_WRAP = {
    "transformer_based_wrap": "TRANSFORMER_BASED_WRAP",
    "size_based_wrap": "SIZE_BASED_WRAP",
    "no_wrap": "NO_WRAP",
}


def launch_argv(
    settings: Settings,
    placement: Placement,
    *,
    extra: Sequence[str] = (),
    resume: Path | None = None,
) -> list[str]:
    """`accelerate launch ... -m runner.train RUN_DIR` for a recipe on a placement
    (`resume`: the complete checkpoint the training process continues from).

    single: one process; ddp: --multi_gpu; deepspeed: ZeRO settings from launch.deepspeed
    (or its config file); fsdp: FSDP settings from launch.fsdp. Several machines add
    --machine_rank/--main_process_ip/--main_process_port. The CPU adds --cpu (and
    `--cpu` for the training process, which never decides again).
    """
    launch = settings.launch
    # --quiet: a failed training process reports its own error; no launcher traceback on top
    argv = ["accelerate", "launch", "--quiet"]
    if placement.cpu:
        argv.append("--cpu")
    argv += [
        "--num_processes",
        str(settings.num_processes),
        "--num_machines",
        str(settings.num_machines),
        "--mixed_precision",
        mixed_precision(settings, placement),
        "--dynamo_backend",
        "no",
    ]
    if settings.num_machines > 1:
        argv += ["--machine_rank", str(launch.get("machine_rank", 0))]
        if "main_process_ip" in launch:
            argv += ["--main_process_ip", str(launch["main_process_ip"])]
        if "main_process_port" in launch:
            argv += ["--main_process_port", str(launch["main_process_port"])]
    if settings.strategy == "ddp":
        argv.append("--multi_gpu")
    elif settings.strategy == "deepspeed":
        argv += _deepspeed_args(launch["deepspeed"])
    elif settings.strategy == "fsdp":
        argv += _fsdp_args(launch["fsdp"])
    argv += list(extra)
    argv += ["-m", TRAIN_MODULE, str(settings.output_dir)]
    if placement.cpu:
        argv.append("--cpu")
    if resume is not None:
        argv += ["--resume", str(resume)]
    return argv


def launch_command(
    settings: Settings,
    *,
    force_cpu: bool = False,
    extra: Sequence[str] = (),
    resume: Path | None = None,
) -> list[str]:
    """The argv `recipe run` executes on this machine (placement decided here, once)."""
    placement = choose_placement(settings, gpu_here=gpu_available(), force_cpu=force_cpu)
    return launch_argv(settings, placement, extra=extra, resume=resume)


def _deepspeed_args(ds: dict[str, Any]) -> list[str]:
    argv = ["--use_deepspeed"]
    if ds.get("config_file"):
        return [*argv, "--deepspeed_config_file", str(ds["config_file"])]
    argv += [
        "--zero_stage",
        str(ds["zero_stage"]),
        "--offload_optimizer_device",
        str(ds["offload_optimizer_device"]),
        "--offload_param_device",
        str(ds["offload_param_device"]),
    ]
    if "zero3_init_flag" in ds:
        argv += ["--zero3_init_flag", str(bool(ds["zero3_init_flag"])).lower()]
    return argv


def _fsdp_args(fsdp: dict[str, Any]) -> list[str]:
    return [
        "--use_fsdp",
        "--fsdp_version",
        str(fsdp["version"]),
        "--fsdp_reshard_after_forward",
        str(bool(fsdp["reshard_after_forward"])).lower(),
        "--fsdp_offload_params",
        str(bool(fsdp["cpu_offload"])).lower(),
        "--fsdp_auto_wrap_policy",
        FSDP_WRAP[fsdp["auto_wrap_policy"]],
        "--fsdp_state_dict_type",
        str(fsdp["state_dict_type"]),
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
