"""`recipe merge`: fold a LoRA/QLoRA adapter into its base and save a standalone model.

The base loads unquantized in the merge dtype, PEFT's `merge_and_unload` folds the
adapter in, and the result is saved with the run's tokenizer and a generation config
whose `eos_token_id` lists the run's end-of-turn id(s), so plain transformers code stops
where the run's answers end. The model is written to `<out>.partial` and renamed when
complete. `recipe export` merges through `merged_model` too, without saving.

A QLoRA adapter was trained against the 4-bit weights, not the original ones. By
default it is merged into those 4-bit weights, dequantized (`qlora_base="4bit"`): the
weights it learned to correct, so the merged model answers as base + adapter did in
training. `qlora_base="original"` merges into the original 16/32-bit base instead.
docs/export.md has the measurement that chose the default (bench/qlora_merge.py).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.target import AfterError, Target

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MERGE_DTYPES = ("bfloat16", "float16", "float32")
# What a QLoRA adapter is merged into: the 4-bit weights it trained on, dequantized
# (the default: the measured better one), or the original 16/32-bit base.
QLORA_BASES = ("4bit", "original")
DEFAULT_QLORA_BASE = "4bit"
QLORA_NOTES = {
    "4bit": (
        "note: this adapter was trained on a 4-bit base; it was merged into those 4-bit "
        "weights, dequantized to {dtype}, so the merged model answers as base + adapter "
        "did in training (--qlora-base original merges into the original base instead)"
    ),
    "original": (
        "note: this adapter was trained on a 4-bit base; the merged model folds it into the "
        "original unquantized base in {dtype}, so its outputs differ from the 4-bit-trained "
        "behaviour you see with `recipe infer` (the default, --qlora-base 4bit, keeps it)"
    ),
}


@dataclass(frozen=True)
class Merged:
    out: Path
    dtype: str
    from_qlora: bool
    stop_ids: list[int]
    qlora_base: str | None = None  # what a QLoRA adapter was merged into


@dataclass
class MergedModel:
    """A merged model in memory, with the run's tokenizer and stop ids."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    stop_ids: list[int]
    qlora_base: str | None  # None unless the run is QLoRA


def merge_destination(target: Target, out: str | None) -> Path:
    """Where the merged model goes (default `<run>/merged`), after checking that there
    is an adapter to merge and that nothing would be overwritten."""
    if not target.adapter:
        where = target.weights
        kind = "a full fine-tuning run" if target.is_run else "a complete model"
        raise AfterError(
            f"{target.path} is {kind}: its model in {where} is already standalone, so there "
            f"is nothing to merge. Use it directly, e.g. `recipe infer {target.path}` or "
            f"AutoModelForCausalLM.from_pretrained({str(where)!r})"
        )
    dest = Path(out).expanduser() if out else target.path / "merged"
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise AfterError(
            f"{dest} exists and is not empty; refusing to overwrite it "
            "(remove it yourself, or choose another directory with --out DIR)"
        )
    return dest


def merge_dtype(target: Target, requested: str | None) -> str:
    """--dtype, else the recipe's model.dtype, else bfloat16."""
    if requested:
        return requested
    dtype = target.settings.model_dtype if target.settings is not None else None
    return dtype if dtype in MERGE_DTYPES else "bfloat16"


def qlora_note(merged: Merged) -> str | None:
    """What the user should know about a QLoRA merge; None for LoRA."""
    if not merged.from_qlora or merged.qlora_base is None:
        return None
    return QLORA_NOTES[merged.qlora_base].format(dtype=merged.dtype)


def merged_model(target: Target, dtype: str, qlora_base: str = DEFAULT_QLORA_BASE) -> MergedModel:
    """The target's adapter merged into its base in `dtype` (on the CPU), with the run's
    tokenizer and a generation config that stops at the run's end-of-turn id(s)."""
    from peft import PeftModel

    from runner.after.load import load_base_model, load_tokenizer
    from runner.after.prompts import prompt_format, stop_token_ids

    if target.is_run:
        from runner.logs import log_file_of, quiet_libraries

        quiet_libraries(log_file_of(target.path, "merge"), cpu=True)  # merging runs on the CPU
    tokenizer = load_tokenizer(target)
    from_qlora = target.method == "qlora"
    base = load_base_model(target, tokenizer, "cpu", quantize=False, dtype=dtype)
    if from_qlora and qlora_base == "4bit":
        load_weights(base, dequantized_4bit_weights(target, tokenizer))
    base_eos = base.generation_config.eos_token_id
    model = PeftModel.from_pretrained(base, target.weights)
    merged = model.merge_and_unload()
    fmt = prompt_format(target.settings, tokenizer, target.path if target.is_run else None)
    stops = stop_token_ids(fmt, tokenizer, base_eos)
    merged.generation_config.eos_token_id = stops
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    return MergedModel(merged, tokenizer, stops, qlora_base if from_qlora else None)


def dequantized_4bit_weights(target: Target, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The weights of the target's base as QLoRA trained on them: loaded in 4-bit exactly
    as `recipe infer` loads it, then each quantized layer dequantized (name -> tensor)."""
    from peft.utils.integrations import dequantize_module_weight

    from runner.after.load import load_base_model

    quantized = load_base_model(target, tokenizer, "cpu", quantize=True)
    weights = {}
    for name, module in quantized.named_modules():
        weight = getattr(module, "weight", None)
        if type(weight).__name__ in ("Params4bit", "Int8Params"):
            weights[f"{name}.weight"] = dequantize_module_weight(module).detach().clone()
    if not weights:
        raise AfterError(
            f"the base of {target.path} loaded in 4-bit has no quantized layer to merge "
            "into; merge into the original base with --qlora-base original"
        )
    return weights


def load_weights(model: PreTrainedModel, weights: dict[str, Any]) -> None:
    """Replace the named weights of `model` (kept in its own dtype)."""
    import torch

    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            parameters[name].copy_(value.to(parameters[name].dtype))


def merge_adapter(
    target: Target, dest: Path, dtype: str, qlora_base: str = DEFAULT_QLORA_BASE
) -> Merged:
    """Merge the target's adapter into its base in `dtype` and save everything to `dest`."""
    done = merged_model(target, dtype, qlora_base)
    from_qlora = target.method == "qlora"
    result = Merged(dest, dtype, from_qlora, done.stop_ids, done.qlora_base)
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    done.model.save_pretrained(partial)
    done.tokenizer.save_pretrained(partial)
    record = {
        "merged_from": str(target.path),
        "adapter": target.weights,
        "base": target.base,
        "dtype": dtype,
        "method": target.method,
        "qlora_base": done.qlora_base,
        "eos_token_id": done.stop_ids,
        "note": qlora_note(result),
    }
    (partial / "merge.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if dest.exists():
        dest.rmdir()  # empty (merge_destination refused anything else)
    os.replace(partial, dest)
    return result
