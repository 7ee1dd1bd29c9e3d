"""`recipe merge`: fold a LoRA/QLoRA adapter into its base and save a standalone model.

The base loads unquantized in the merge dtype (for QLoRA too: 4-bit weights cannot be
merged into), PEFT's `merge_and_unload` folds the adapter in, and the result is saved
with the run's tokenizer and a generation config whose `eos_token_id` lists the run's
end-of-turn id(s), so plain transformers code stops where the run's answers end.
The model is written to `<out>.partial` and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from runner.after.target import AfterError, Target

MERGE_DTYPES = ("bfloat16", "float16", "float32")
QLORA_NOTE = (
    "note: this adapter was trained on a 4-bit base; the merged model folds it into the "
    "unquantized base in {dtype}, so its outputs differ slightly from the 4-bit-trained "
    "behaviour you see with `recipe infer` (compare a few prompts before shipping it)"
)


@dataclass(frozen=True)
class Merged:
    out: Path
    dtype: str
    from_qlora: bool
    stop_ids: list[int]


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


def merge_adapter(target: Target, dest: Path, dtype: str) -> Merged:
    """Merge the target's adapter into its base in `dtype` and save everything to `dest`."""
    from peft import PeftModel

    from runner.after.load import load_base_model, load_tokenizer
    from runner.after.prompts import prompt_format, stop_token_ids

    if target.is_run:
        from runner.logs import log_file_of, quiet_libraries

        quiet_libraries(log_file_of(target.path, "merge"), cpu=True)  # merging runs on the CPU
    tokenizer = load_tokenizer(target)
    base = load_base_model(target, tokenizer, "cpu", use_cpu=False, quantize=False, dtype=dtype)
    base_eos = base.generation_config.eos_token_id
    model = PeftModel.from_pretrained(base, target.weights)
    merged = model.merge_and_unload()
    fmt = prompt_format(target.settings, tokenizer, target.path if target.is_run else None)
    stops = stop_token_ids(fmt, tokenizer, base_eos)
    merged.generation_config.eos_token_id = stops
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    from_qlora = target.method == "qlora"

    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    merged.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    record = {
        "merged_from": str(target.path),
        "adapter": target.weights,
        "base": target.base,
        "dtype": dtype,
        "method": target.method,
        "eos_token_id": stops,
        "note": QLORA_NOTE.format(dtype=dtype) if from_qlora else None,
    }
    (partial / "merge.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if dest.exists():
        dest.rmdir()  # empty (merge_destination refused anything else)
    os.replace(partial, dest)
    return Merged(out=dest, dtype=dtype, from_qlora=from_qlora, stop_ids=stops)
