"""Where a run trains - CPU or GPU - decided once, before launch.

`choose_placement` is pure: the recipe's effective settings plus two facts about the
machine (is there a GPU, did the user pass `--cpu`) give one `Placement`. `recipe run`
and `recipe show --as launch` both call it, so they print the same command; the
training process receives the decision on its command line (`runner.train --cpu`) and
never decides again. The dtype and mixed precision that follow from it are here too.
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
    """CPU when the recipe says so (hardware.gpu: cpu, training.use_cpu) or `--cpu`; else
    the GPU. A recipe made for a GPU on a machine without one stops here, before any data
    is read, unless `--cpu` says to train on the CPU anyway."""
    on_cpu = settings.cpu_only or force_cpu or not gpu_here
    if on_cpu and settings.strategy == "fsdp":
        # accelerate's CPU mode drops FSDP for DDP, and without it each process trains
        # alone: there is no FSDP on the CPU
        raise PlacementError(
            "launch.strategy fsdp needs CUDA GPUs; on the CPU use strategy ddp, or deepspeed "
            "(ZeRO-3 shards the weights too)"
        )
    if settings.cpu_only or force_cpu:
        return Placement(cpu=True)
    if gpu_here:
        return Placement(cpu=False)
    if needs_gpu(settings):
        card = settings.card
        raise PlacementError(
            f"{settings.name} is made for {card.label if card else 'a GPU'}, but this machine "
            "has no CUDA GPU that torch can use; nothing was started. Run it where the GPU "
            "is, or pass --cpu to train on the CPU anyway (slow; bf16/fp16 are switched off)"
        )
    return Placement(cpu=True)


def mixed_precision(settings: Settings, placement: Placement) -> str:
    """accelerate's --mixed_precision: the recipe's on a GPU, `no` on the CPU."""
    return "no" if placement.cpu else settings.mixed_precision


def on_device(dtype: str, placement: Placement) -> str:
    """`dtype` as this placement can compute in: float16 cannot train on the CPU, so
    float32 there."""
    return "float32" if placement.cpu and dtype == "float16" else dtype


def load_dtype(settings: Settings, placement: Placement) -> str:
    """The dtype weights load in: model.dtype, on the device (`on_device`)."""
    return on_device(settings.model_dtype, placement)
