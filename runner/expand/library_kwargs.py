"""The keyword arguments a recipe hands to TRL, PEFT and transformers.

Pure functions from the effective settings to plain dicts: `sft_kwargs` for
`trl.SFTConfig`, `lora_kwargs` for `peft.LoraConfig`, `bnb_kwargs` for
`transformers.BitsAndBytesConfig`. Nothing here imports those libraries, so
`recipe show --as sft|lora|bnb` prints the exact arguments in a fraction of a second.

The blocks mirror the library objects field for field, as resolved: the recipe's own
values, with the few runner defaults runner.recipe.resolve decides on top (bf16 and
activation_checkpointing as TRL would, lora.task_type, the 4-bit compute dtype). The
libraries fill the rest themselves; `Settings.training` / `lora_config` /
`quantization_config` say what they will be.
The training step adds the data- and machine-dependent arguments at run time
(runner.expand.training).
"""

from __future__ import annotations

import copy
from typing import Any

from runner.recipe.settings import Settings


def sft_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `trl.SFTConfig`: the resolved training block, with the
    recipe's top-level output_dir."""
    kwargs = copy.deepcopy(settings.resolved["training"])
    kwargs["output_dir"] = str(settings.output_dir)
    return dict(sorted(kwargs.items()))


def lora_kwargs(settings: Settings) -> dict[str, Any] | None:
    """Keyword arguments for `peft.LoraConfig`, or None for full fine-tuning."""
    if settings.lora_config is None:
        return None
    return dict(sorted(copy.deepcopy(settings.resolved["lora"]).items()))


def bnb_kwargs(settings: Settings) -> dict[str, Any] | None:
    """Keyword arguments for `transformers.BitsAndBytesConfig`, or None when unquantized."""
    if settings.quantization_config is None:
        return None
    return dict(sorted(copy.deepcopy(settings.resolved["quantization"]).items()))
