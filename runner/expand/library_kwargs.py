"""The keyword arguments a resolved recipe hands to TRL, PEFT and transformers.

Pure functions from the resolved recipe to plain dicts: `sft_kwargs` for
`trl.SFTConfig`, `lora_kwargs` for `peft.LoraConfig`, `bnb_kwargs` for
`transformers.BitsAndBytesConfig`. Nothing here imports those libraries, so
`recipe show --as sft|lora|bnb` prints the exact arguments in a fraction of a second.

The blocks mirror the library objects field for field; the few runner policies applied
on top are listed in RUNNER_POLICIES and shown by `recipe show`. Library defaults are
left to the libraries, except where a policy says otherwise. The training step adds the
data-dependent arguments (e.g. `dataset_text_field`) at run time.
"""

from __future__ import annotations

import copy
from typing import Any

RUNNER_POLICIES: tuple[str, ...] = (
    "output_dir comes from the recipe's top-level output_dir (resolved against the "
    "directory you run from), never from training",
    "the deprecated training.gradient_checkpointing(_kwargs) is passed as "
    "activation_checkpointing(_kwargs) when the new name is not set",
    "lora.task_type defaults to CAUSAL_LM",
    "quantization.bnb_4bit_compute_dtype defaults to model.dtype for 4-bit loading "
    "(bitsandbytes would otherwise compute in float32: slow, and no memory saved)",
)

RENAMED_ALIASES = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def _block(resolved: dict[str, Any], name: str) -> dict[str, Any] | None:
    block = resolved.get(name)
    return copy.deepcopy(block) if isinstance(block, dict) else None


def sft_kwargs(resolved: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `trl.SFTConfig` from a resolved recipe."""
    kwargs = _block(resolved, "training") or {}
    for old, new in RENAMED_ALIASES.items():
        if old in kwargs:
            value = kwargs.pop(old)
            kwargs.setdefault(new, value)
    if resolved.get("output_dir") is not None:
        kwargs["output_dir"] = resolved["output_dir"]
    return dict(sorted(kwargs.items()))


def lora_kwargs(resolved: dict[str, Any]) -> dict[str, Any] | None:
    """Keyword arguments for `peft.LoraConfig`, or None for full fine-tuning."""
    if resolved.get("method") not in ("lora", "qlora"):
        return None
    kwargs = _block(resolved, "lora") or {}
    kwargs.setdefault("task_type", "CAUSAL_LM")
    return dict(sorted(kwargs.items()))


def bnb_kwargs(resolved: dict[str, Any]) -> dict[str, Any] | None:
    """Keyword arguments for `transformers.BitsAndBytesConfig`, or None when unquantized."""
    kwargs = _block(resolved, "quantization")
    if kwargs is None or resolved.get("method") == "full":
        return None
    model_dtype = (resolved.get("model") or {}).get("dtype")
    if kwargs.get("load_in_4bit") and "bnb_4bit_compute_dtype" not in kwargs and model_dtype:
        kwargs["bnb_4bit_compute_dtype"] = model_dtype
    return dict(sorted(kwargs.items()))
