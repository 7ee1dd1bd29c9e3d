"""The exact `accelerate launch` argv of a recipe, and the accelerate and DeepSpeed configs
it is launched with, per strategy."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import settings_of

from runner.expand.engines import accelerate_config, cpu_threads, deepspeed_config
from runner.expand.launch import executable_argv, launch_argv
from runner.expand.loss import LossSetup
from runner.expand.placement import Placement

CPU, GPU = Placement(cpu=True), Placement(cpu=False)


def settings(*overrides: str):
    return settings_of("llama32-1b-full-3090", "output_dir=/runs/a", "hardware.count=8", *overrides)


def test_single_process_on_cpu_reads_only_the_runs_own_config():
    threads = str(cpu_threads(CPU, 1))
    assert launch_argv(settings(), CPU) == [
        "accelerate", "launch", "--config_file", "/runs/a/accelerate.yaml", "--quiet",
        "--mixed_precision", "no", "--num_cpu_threads_per_process", threads,
        "-m", "runner.train", "/runs/a", "--cpu",
    ]  # fmt: skip
    config = accelerate_config(settings(), CPU)
    assert config["distributed_type"] == "NO" and config["use_cpu"] is True
    assert config["mixed_precision"] == "no"  # the CPU trains in the model's dtype


def test_cpu_threads_share_the_cores_between_processes():
    cores = cpu_threads(CPU, 1)
    assert cpu_threads(CPU, 2) == max(1, cores // 2)
    assert cpu_threads(CPU, 10_000) == 1


def test_ddp_on_two_nodes_with_user_arguments_last():
    s = settings(
        "launch.strategy=ddp", "launch.num_processes=8", "launch.num_machines=2",
        "launch.machine_rank=1", "launch.main_process_ip=10.0.0.1",
        "launch.main_process_port=29501",
    )  # fmt: skip
    argv = launch_argv(s, GPU, extra=["--same_network"], resume=Path("/runs/a/checkpoint-80"))
    assert argv == [
        "accelerate", "launch", "--config_file", "/runs/a/.recipe-node-1/accelerate.yaml",
        "--quiet", "--mixed_precision", "bf16", "--same_network",
        "-m", "runner.train", "/runs/a/.recipe-node-1", "--resume", "/runs/a/checkpoint-80",
    ]  # fmt: skip
    config = accelerate_config(s, GPU)
    assert {k: config[k] for k in ("distributed_type", "num_processes", "num_machines",
                                   "machine_rank", "main_process_ip", "main_process_port",
                                   "mixed_precision", "use_cpu")} == {
        "distributed_type": "MULTI_GPU", "num_processes": 8, "num_machines": 2,
        "machine_rank": 1, "main_process_ip": "10.0.0.1", "main_process_port": 29501,
        "mixed_precision": "bf16", "use_cpu": False,
    }  # fmt: skip


def test_ddp_on_the_cpu_runs_torchrun_over_gloo_not_accelerates_cpu_mode():
    config = accelerate_config(settings("launch.strategy=ddp", "launch.num_processes=2"), CPU)
    assert config["distributed_type"] == "MULTI_GPU" and config["use_cpu"] is False


def test_deepspeed_zero3_with_cpu_offload_gathers_the_weights_on_save():
    s = settings(
        "launch.strategy=deepspeed", "launch.num_processes=2",
        "launch.deepspeed={zero_stage: 3, offload_optimizer_device: cpu, zero3_init_flag: true}",
    )  # fmt: skip
    config = accelerate_config(s, GPU)
    assert config["distributed_type"] == "DEEPSPEED"
    assert config["deepspeed_config"] == {
        "deepspeed_config_file": "/runs/a/deepspeed.json",
        "zero3_init_flag": True,
    }
    ds = deepspeed_config(s)
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["bf16"] == {"enabled": "auto"}


def test_a_recipes_own_deepspeed_file_is_used_as_it_is(tmp_path):
    own = tmp_path / "ds.json"
    own.write_text("{}")
    s = settings("launch.strategy=deepspeed", f"launch.deepspeed.config_file={own}")
    assert deepspeed_config(s) is None
    assert accelerate_config(s, GPU)["deepspeed_config"]["deepspeed_config_file"] == str(own)


def test_fsdp2_settings_take_the_schema_defaults():
    config = accelerate_config(
        settings("launch.strategy=fsdp", "launch.num_processes=4", "launch.fsdp={version: 2}"), GPU
    )
    assert config["distributed_type"] == "FSDP"
    assert config["fsdp_config"] == {
        "fsdp_version": 2,
        "fsdp_reshard_after_forward": True,
        "fsdp_offload_params": False,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        "fsdp_cpu_ram_efficient_loading": False,
        "fsdp_activation_checkpointing": True,
    }


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_every_deepspeed_config_passes_deepspeeds_parser_with_autos_filled(stage, tmp_path):
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig
    from trl import SFTConfig

    from runner.expand.training import run_sft_kwargs

    s = settings_of(
        "llama32-1b-full-3090",
        f"output_dir={tmp_path}",
        "launch.strategy=deepspeed",
        f"launch.deepspeed.zero_stage={stage}",
    )
    (tmp_path / "deepspeed.json").write_text(__import__("json").dumps(deepspeed_config(s)))
    kwargs = run_sft_kwargs(s, CPU, LossSetup("instruction", "</s>"), has_eval=True)
    args = SFTConfig(**kwargs)
    model = SimpleNamespace(config=SimpleNamespace(hidden_size=2048, text_config=None))
    args.hf_deepspeed_config.trainer_config_finalize(args, model, num_training_steps=100)
    config = args.hf_deepspeed_config.config  # transformers filled the autos
    assert "auto" not in repr(config)
    # the recipe's batch (1 packed row x 16), not DeepSpeed's own defaults (1 x 1)
    assert config["train_micro_batch_size_per_gpu"] == s.training["per_device_train_batch_size"]
    assert config["gradient_accumulation_steps"] == s.training["gradient_accumulation_steps"] == 16
    parsed = DeepSpeedConfig(config, mpu=None)
    assert parsed.zero_optimization_stage == stage


def test_accelerate_runs_under_this_python():
    assert executable_argv(["accelerate", "launch", "--cpu"])[:3] == [
        sys.executable, "-m", "accelerate.commands.launch",
    ]  # fmt: skip
