"""Checkpoints load as data, never as code.

A pickle file runs code when it is loaded, and a run directory (with its checkpoints)
can be copied from anywhere, like a recipe. transformers, PEFT and accelerate already
read weights, optimizer, scheduler and RNG states with torch's weights-only unpickler;
two loaders a resumed run reaches do not:

- DeepSpeed reads its `global_step*/` files with `torch.load(weights_only=False)`.
  `load_as_data` makes every `torch.load` of a training process weights-only
  (TORCH_FORCE_WEIGHTS_ONLY_LOAD, which overrides the caller), and allows the few
  plain-data classes DeepSpeed's own checkpoints hold (its loss scaler, the ZeRO stage,
  parameter fragment addresses), so a DeepSpeed run still resumes.
- FSDP's sharded checkpoints keep their index (`.metadata`, torch.distributed.checkpoint)
  as a plain pickle. `check_sharded_metadata` reads each one first with an unpickler that
  knows only the classes such an index holds, and refuses the checkpoint otherwise.

A file that holds anything else is refused with `CheckpointNotData`, before any of it
runs. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

from runner.errors import UserError

FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
NO_FORCE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
# (module, class) DeepSpeed pickles into its checkpoints: plain data, no code on load.
DEEPSPEED_DATA = (
    ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
    ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"),
    ("deepspeed.runtime.zero.config", "ZeroStageEnum"),
    ("deepspeed.utils.tensor_fragment", "fragment_address"),
)
# What a torch.distributed.checkpoint index holds (torch 2.13): its dataclasses, tensor
# sizes, dtypes and layouts, and the checkpoint's path.
SHARDED_INDEX = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "MetadataIndex",
        "ChunkStorageMetadata",
        "TensorProperties",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}
SHARDED_INDEX_NAME = re.compile(r"(__\d+)?\.metadata")


class CheckpointNotData(UserError):
    """A checkpoint file holds Python objects that would run code when loaded."""


def load_as_data(checkpoint: Path | None) -> None:
    """From here on, this process loads every torch file weights-only; a checkpoint to
    resume from has its sharded indexes checked (CheckpointNotData otherwise)."""
    os.environ.pop(NO_FORCE, None)  # the two together are an error in torch
    os.environ[FORCE] = "1"
    if checkpoint is None:
        return
    if any(checkpoint.glob("global_step*")):
        allow_deepspeed_data()
    for path in sorted(checkpoint.rglob("*")):
        if SHARDED_INDEX_NAME.fullmatch(path.name) and path.is_file():
            check_sharded_metadata(path)


def allow_deepspeed_data() -> None:
    """Let torch's weights-only unpickler rebuild DeepSpeed's plain-data classes."""
    import importlib

    import torch

    classes = []
    for module, name in DEEPSPEED_DATA:
        try:
            classes.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue  # another DeepSpeed version: what it lacks it does not pickle
    torch.serialization.add_safe_globals(classes)


class _IndexUnpickler(pickle.Unpickler):
    """Rebuilds only what a sharded checkpoint's index holds (SHARDED_INDEX)."""

    def find_class(self, module: str, name: str) -> object:
        if name in SHARDED_INDEX.get(module, ()) or (module == "torch" and _plain_torch(name)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def _plain_torch(name: str) -> bool:
    """torch.Size, a dtype (torch.bfloat16) or a layout: data, not code."""
    import torch

    if name == "Size":
        return True
    value = getattr(torch, name, None) if "." not in name else None
    return isinstance(value, torch.dtype | torch.layout | torch.memory_format)


def check_sharded_metadata(path: Path) -> None:
    """CheckpointNotData unless `path` (a torch.distributed.checkpoint `.metadata`)
    holds only an index: it is read here with an unpickler that rebuilds nothing else."""
    try:
        with open(path, "rb") as handle:
            _IndexUnpickler(handle).load()
    except pickle.UnpicklingError as exc:
        raise CheckpointNotData(not_data_message(path, str(exc))) from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointNotData(not_data_message(path, f"unreadable: {exc}")) from None


def not_data_message(where: Path | str, holds: str) -> str:
    return (
        f"{where} holds Python objects, not only weights ({holds}), and loading it would "
        "run code; recipe loads checkpoints as data only, so it is not loaded. Resume only "
        "a run directory you trained (the runner's own checkpoints hold only data), or "
        "start the run again"
    )


def translate_unpickling(exc: BaseException, checkpoint: Path | None) -> UserError | None:
    """torch's weights-only refusal, raised deep in a loader, as CheckpointNotData."""
    text = str(exc)
    if type(exc).__name__ != "UnpicklingError" or "Weights only load failed" not in text:
        return None
    found = re.search(r"GLOBAL ([\w.]+)", text)
    where = f"a file of {checkpoint}" if checkpoint is not None else "a file it loads"
    return CheckpointNotData(not_data_message(where, found.group(1) if found else "not tensors"))
