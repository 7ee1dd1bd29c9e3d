"""The exact `accelerate launch` argv of a recipe, per strategy."""

from __future__ import annotations

import sys

from runner.expand.launch import executable_argv, launch_argv


def recipe(**launch) -> dict:
    return {"training": {"bf16": True}, "launch": {"num_processes": 1, "num_machines": 1, **launch}}


def test_single_process_on_cpu():
    assert launch_argv(recipe(strategy="single"), "/runs/a", use_cpu=True) == [
        "accelerate", "launch", "--quiet", "--cpu",
        "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "runner.train", "/runs/a",
    ]  # fmt: skip


def test_ddp_on_two_nodes_with_user_arguments_last():
    argv = launch_argv(
        recipe(strategy="ddp", num_processes=8, num_machines=2, machine_rank=1,
               main_process_ip="10.0.0.1", main_process_port=29500),
        "/runs/a",
        use_cpu=False,
        extra=["--same_network"],
    )  # fmt: skip
    assert argv == [
        "accelerate", "launch", "--quiet",
        "--num_processes", "8", "--num_machines", "2",
        "--mixed_precision", "bf16", "--dynamo_backend", "no",
        "--machine_rank", "1", "--main_process_ip", "10.0.0.1", "--main_process_port", "29500",
        "--multi_gpu", "--same_network",
        "-m", "runner.train", "/runs/a",
    ]  # fmt: skip


def test_deepspeed_zero3_with_cpu_offload():
    argv = launch_argv(
        recipe(strategy="deepspeed", num_processes=2,
               deepspeed={"zero_stage": 3, "offload_optimizer_device": "cpu",
                          "offload_param_device": "none", "zero3_init_flag": True}),
        "/runs/a",
        use_cpu=False,
    )  # fmt: skip
    assert argv[argv.index("--use_deepspeed") :] == [
        "--use_deepspeed", "--zero_stage", "3",
        "--offload_optimizer_device", "cpu", "--offload_param_device", "none",
        "--zero3_init_flag", "true",
        "-m", "runner.train", "/runs/a",
    ]  # fmt: skip


def test_fsdp2_settings():
    argv = launch_argv(
        recipe(strategy="fsdp", num_processes=4, fsdp={"version": 2}), "/runs/a", use_cpu=False
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
