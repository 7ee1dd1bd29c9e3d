"""The exact `accelerate launch` argv of a recipe, per strategy."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import settings_of

from runner.expand.launch import executable_argv, launch_argv
from runner.expand.placement import Placement

CPU, GPU = Placement(cpu=True), Placement(cpu=False)


def settings(*overrides: str):
    return settings_of("llama32-1b-full-3090", "output_dir=/runs/a", *overrides)


def test_single_process_on_cpu():
    assert launch_argv(settings(), CPU) == [
        "accelerate", "launch", "--quiet", "--cpu",
        "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "runner.train", "/runs/a", "--cpu",
    ]  # fmt: skip


def test_ddp_on_two_nodes_with_user_arguments_last():
    argv = launch_argv(
        settings("launch.strategy=ddp", "launch.num_processes=8", "launch.num_machines=2",
                 "launch.machine_rank=1", "launch.main_process_ip=10.0.0.1",
                 "launch.main_process_port=29500"),
        GPU,
        extra=["--same_network"],
        resume=Path("/runs/a/checkpoint-80"),
    )  # fmt: skip
    assert argv == [
        "accelerate", "launch", "--quiet",
        "--num_processes", "8", "--num_machines", "2",
        "--mixed_precision", "bf16", "--dynamo_backend", "no",
        "--machine_rank", "1", "--main_process_ip", "10.0.0.1", "--main_process_port", "29500",
        "--multi_gpu", "--same_network",
        "-m", "runner.train", "/runs/a", "--resume", "/runs/a/checkpoint-80",
    ]  # fmt: skip


def test_deepspeed_zero3_with_cpu_offload():
    argv = launch_argv(
        settings("launch.strategy=deepspeed", "launch.num_processes=2",
                 "launch.deepspeed={zero_stage: 3, offload_optimizer_device: cpu, "
                 "zero3_init_flag: true}"),
        GPU,
    )  # fmt: skip
    assert argv[argv.index("--use_deepspeed") :] == [
        "--use_deepspeed", "--zero_stage", "3",
        "--offload_optimizer_device", "cpu", "--offload_param_device", "none",
        "--zero3_init_flag", "true",
        "-m", "runner.train", "/runs/a",
    ]  # fmt: skip


def test_fsdp2_settings_take_the_schema_defaults():
    argv = launch_argv(
        settings("launch.strategy=fsdp", "launch.num_processes=4", "launch.fsdp={version: 2}"), GPU
    )
    assert argv[argv.index("--use_fsdp") : -3] == [
        "--use_fsdp", "--fsdp_version", "2", "--fsdp_reshard_after_forward", "true",
        "--fsdp_offload_params", "false", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
        "--fsdp_state_dict_type", "SHARDED_STATE_DICT",
    ]  # fmt: skip


def test_accelerate_runs_under_this_python():
    assert executable_argv(["accelerate", "launch", "--cpu"])[:3] == [
        sys.executable, "-m", "accelerate.commands.launch",
    ]  # fmt: skip
