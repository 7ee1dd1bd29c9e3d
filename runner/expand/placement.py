"""Where a run trains - CPU or GPU - decided once, before launch.

`choose_placement` is pure: the recipe's effective settings plus two facts about the
machine (is there a GPU, did the user pass `--cpu`) give one `Placement`. `recipe run`
and `recipe show --as launch` both call it, so they print the same command; the
training process receives the decision on its command line (`runner.train --cpu`) and
never decides again. The dtype and mixed precision that follow from it are here too.

A recipe made for a GPU is placed on its GPU even on a machine without one (a laptop, a
cluster's login node), marked `gpu_missing`: planning (`show --as launch`, `run
--dry-run`, `run --print-launch`) prints the command its hardware runs, with one line
saying this machine has no GPU (`missing_gpu_note`), and `recipe run` refuses to train
(`require_gpu_here`) unless `--cpu`.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError
from runner.recipe.settings import Settings


class PlacementError(UserError):
    """The recipe needs a GPU this machine does not have."""


@dataclass(frozen=True)
class Placement:
    """CPU or GPU for every process of a run."""

    cpu: bool
    gpu_missing: bool = False  # on the GPU, planned on a machine that has none

    def device(self, local_rank: int = 0) -> str:
        """This process's device: cuda:<local rank>, or cpu."""
        return "cpu" if self.cpu else f"cuda:{local_rank}"


def gpu_available() -> bool:
    """Whether this machine has a CUDA GPU torch can use. A build of torch made without
    CUDA/ROCm has none, and its version file says so without importing torch (two
    seconds of `recipe run`); any other build is asked (imports torch)."""
    if "torch" not in sys.modules and not torch_build_has_gpu_support():
        return False
    import torch

    return torch.cuda.is_available()


def torch_build_has_gpu_support() -> bool:
    """Whether the installed torch was built for CUDA or ROCm, read from torch/version.py
    (`cuda = None` and `hip = None` in a CPU-only build); True when unsure."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return True
    try:
        text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text()
    except OSError:
        return True
    builds = re.findall(r"^(cuda|hip)\b[^=\n]*=\s*(.+?)\s*$", text, re.MULTILINE)
    return len(builds) < 2 or any(value != "None" for _, value in builds)


def needs_gpu(settings: Settings) -> bool:
    """The recipe targets a GPU: its hardware names a card other than `cpu`."""
    card = settings.card
    return card is not None and card.name != "cpu" and not settings.cpu_only


def choose_placement(settings: Settings, *, gpu_here: bool, force_cpu: bool = False) -> Placement:
    """CPU when the recipe says so (hardware.gpu: cpu, training.use_cpu) or `--cpu`, or
    when it names no GPU and this machine has none; else the GPU, marked `gpu_missing`
    when this machine has none (see the module docstring)."""
    on_cpu = settings.cpu_only or force_cpu or (not gpu_here and not needs_gpu(settings))
    if on_cpu and settings.strategy == "fsdp":
        # accelerate's CPU mode drops FSDP for DDP, and without it each process trains
        # alone: there is no FSDP on the CPU
        raise PlacementError(
            "launch.strategy fsdp needs CUDA GPUs; on the CPU use strategy ddp, or deepspeed "
            "(ZeRO-3 shards the weights too)"
        )
    if on_cpu:
        return Placement(cpu=True)
    return Placement(cpu=False, gpu_missing=not gpu_here)


def require_gpu_here(settings: Settings, placement: Placement) -> None:
    """Stop a run, before any data is read, when it is placed on a GPU this machine does
    not have."""
    if placement.gpu_missing:
        card = settings.card
        raise PlacementError(
            f"{settings.name} is made for {card.label if card else 'a GPU'}, but this machine "
            "has no CUDA GPU that torch can use; nothing was started. Run it where the GPU "
            "is, or pass --cpu to train on the CPU anyway (slow; bf16/fp16 are switched off)"
        )


def missing_gpu_note(settings: Settings, placement: Placement) -> str | None:
    """The line a planning command prints on a machine without the recipe's GPU."""
    if not placement.gpu_missing:
        return None
    card = settings.card.label if settings.card else "GPU"
    return (
        f"note: this machine has no CUDA GPU; this is what `recipe run` executes on the "
        f"recipe's {card} (here it trains only with --cpu)"
    )


def mixed_precision(settings: Settings, placement: Placement) -> str:
    """accelerate's --mixed_precision: the recipe's on a GPU; on the CPU `bf16` only for a
    CPU recipe that asks for it (`cpu_bf16`), else `no`."""
    if placement.cpu:
        return "bf16" if cpu_bf16(settings, placement) else "no"
    return settings.mixed_precision


def cpu_bf16(settings: Settings, placement: Placement) -> bool:
    """bf16 autocast on the CPU: kept when the recipe itself targets the CPU
    (`hardware.gpu: cpu`), asks for bf16, and this CPU computes bf16 natively (AVX-512
    BF16 or AMX; emulated bf16 is slower than fp32). A GPU recipe run with --cpu trains in
    fp32."""
    return (
        placement.cpu
        and settings.cpu_only
        and bool(settings.training["bf16"])
        and cpu_has_native_bf16()
    )


def cpu_has_native_bf16() -> bool:
    """This CPU has bf16 instructions (Linux's /proc/cpuinfo flags avx512_bf16 or
    amx_bf16); False where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def on_device(dtype: str, placement: Placement) -> str:
    """`dtype` as this placement can compute in: float16 cannot train on the CPU, so
    float32 there."""
    return "float32" if placement.cpu and dtype == "float16" else dtype


def load_dtype(settings: Settings, placement: Placement) -> str:
    """The dtype weights load in: model.dtype, on the device (`on_device`)."""
    return on_device(settings.model_dtype, placement)
