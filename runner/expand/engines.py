"""What accelerate and DeepSpeed are told, as files the run directory keeps.

`accelerate_config` is the whole accelerate config of a run (the `--config_file` it is
launched with, written as `<run>/accelerate.yaml`), so a stray default config in
`~/.cache/huggingface/accelerate` can never change a run. `deepspeed_config` is the
DeepSpeed JSON (`<run>/deepspeed.json`) for `launch.strategy: deepspeed` unless the
recipe names its own file; values the Trainer knows are `"auto"`, filled by
transformers' DeepSpeed integration from the training settings. Both are pure.

On the CPU, several processes train with DDP over gloo (accelerate's MULTI_CPU, started
through torchrun like MULTI_GPU), and DeepSpeed runs on its CPU accelerator.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runner.expand.placement import Placement, mixed_precision
from runner.recipe.settings import Settings

ACCELERATE_CONFIG = "accelerate.yaml"
DEEPSPEED_CONFIG = "deepspeed.json"
DISTRIBUTED_TYPES = {"single": "NO", "ddp": "MULTI_GPU", "deepspeed": "DEEPSPEED", "fsdp": "FSDP"}
FSDP_WRAP = {
    "transformer_based_wrap": "TRANSFORMER_BASED_WRAP",
    "size_based_wrap": "SIZE_BASED_WRAP",
    "no_wrap": "NO_WRAP",
}
DEFAULT_PORT = 29500


def accelerate_config(settings: Settings, placement: Placement) -> dict[str, Any]:
    """The accelerate config of this recipe on this placement (one machine's view)."""
    launch = settings.launch
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": DISTRIBUTED_TYPES[settings.strategy],
        "num_processes": settings.num_processes,
        "num_machines": settings.num_machines,
        "machine_rank": settings.machine_rank,
        "mixed_precision": mixed_precision(settings, placement),
        # one CPU process: accelerate's own CPU mode; several: torchrun over gloo
        "use_cpu": placement.cpu and settings.strategy == "single",
        "gpu_ids": "all",
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        "downcast_bf16": "no",
        "debug": False,
    }
    if settings.num_machines > 1:
        config["main_process_ip"] = launch["main_process_ip"]
        config["main_process_port"] = int(launch.get("main_process_port", DEFAULT_PORT))
    if settings.strategy == "deepspeed":
        config["deepspeed_config"] = {
            "deepspeed_config_file": deepspeed_file(settings),
            "zero3_init_flag": bool(launch["deepspeed"].get("zero3_init_flag", False)),
        }
    elif settings.strategy == "fsdp":
        config["fsdp_config"] = fsdp_config(settings)
    return config


def owns_run(settings: Settings) -> bool:
    """Whether this machine owns the run: machine 0 of a multi-machine recipe (and the
    one machine of any other) keeps the run directory, run.json, the metrics and the
    model; the others only train."""
    return settings.machine_rank == 0


def launch_home(settings: Settings) -> Path:
    """Where this machine keeps what its training processes read (the resolved recipe,
    the accelerate and DeepSpeed configs, a model.config base): the run directory on
    the machine that owns the run, `<run>/.recipe-node-<rank>/` on the others (the run
    directory may be shared, and only machine 0 writes the run's own files)."""
    if owns_run(settings):
        return settings.output_dir
    return settings.output_dir / f".recipe-node-{settings.machine_rank}"


def deepspeed_file(settings: Settings) -> str:
    """The DeepSpeed JSON the run uses: the recipe's own file, else the one it writes."""
    own = settings.launch["deepspeed"].get("config_file")
    return str(own) if own else str(launch_home(settings) / DEEPSPEED_CONFIG)


def deepspeed_config(settings: Settings) -> dict[str, Any] | None:
    """The DeepSpeed JSON for launch.deepspeed, or None (not DeepSpeed, or the recipe's
    own config file)."""
    if settings.strategy != "deepspeed" or settings.launch["deepspeed"].get("config_file"):
        return None
    ds = settings.launch["deepspeed"]
    stage = settings.zero_stage
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage >= 1 and ds["offload_optimizer_device"] != "none":
        zero["offload_optimizer"] = {"device": ds["offload_optimizer_device"], "pin_memory": True}
    if stage == 3:
        zero.update(
            {
                "offload_param": {"device": ds["offload_param_device"]},
                "stage3_prefetch_bucket_size": "auto",
                "stage3_param_persistence_threshold": "auto",
                # the final save gathers the shards into one loadable model
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


def fsdp_config(settings: Settings) -> dict[str, Any]:
    """accelerate's fsdp_config for launch.fsdp. Checkpoints are saved as the recipe
    says; the final model is always gathered whole (runner.train)."""
    fsdp = settings.launch["fsdp"]
    return {
        "fsdp_version": int(fsdp["version"]),
        "fsdp_reshard_after_forward": bool(fsdp["reshard_after_forward"]),
        "fsdp_offload_params": bool(fsdp["cpu_offload"]),
        "fsdp_auto_wrap_policy": FSDP_WRAP[fsdp["auto_wrap_policy"]],
        "fsdp_state_dict_type": str(fsdp["state_dict_type"]),
        "fsdp_cpu_ram_efficient_loading": False,
        "fsdp_activation_checkpointing": bool(settings.training["activation_checkpointing"]),
    }


def cpu_threads(placement: Placement, processes_here: int) -> int:
    """OpenMP threads per training process on the CPU: this machine's cores shared out
    (more threads than cores make the processes stall each other)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, processes_here))


def stray_default_config() -> Path | None:
    """accelerate's default config file, when there is one (a run never reads it)."""
    from runner.recipe.models import hub_cache_dir

    home = os.environ.get("HF_HOME") or str(hub_cache_dir().parent)
    named = os.environ.get("ACCELERATE_CONFIG_FILE")
    for candidate in (named, Path(home) / "accelerate" / "default_config.yaml"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None
