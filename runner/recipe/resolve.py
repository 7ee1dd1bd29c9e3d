"""The resolved recipe: defaults applied, derived values filled in, paths made absolute.

The recipe itself is never mutated; `resolve_recipe` returns a new mapping. It is what
`recipe show` prints, what every run saves as `recipe.resolved.yaml`, and the only input
of the expansion into TRL/PEFT/transformers objects.

Library defaults inside `training`, `lora` and `quantization` are left to the libraries
(`recipe show --as sft|lora|bnb` prints the exact keyword arguments instead).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from runner import SCHEMAS_DIR

SCHEMA_PATH = SCHEMAS_DIR / "recipe-v1.schema.json"
LIBRARY_BLOCKS = ("training", "lora", "quantization")
LOCAL_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


@functools.cache
def load_schema() -> dict[str, Any]:
    """The committed JSON Schema of recipe v1."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def looks_local(reference: str, base: Path) -> bool:
    """Whether a model/data reference names a local path rather than a hub id."""
    if reference.startswith(("/", "./", "../", "~")) or reference.endswith(LOCAL_DATA_SUFFIXES):
        return True
    return (base / reference).exists()


def absolute_path(reference: str, base: Path) -> str:
    return str((base / Path(reference).expanduser()).resolve())


def resolve_recipe(
    data: dict[str, Any], recipe_dir: Path, cwd: Path | None = None
) -> dict[str, Any]:
    """Return a resolved copy of validated recipe data.

    Local data and model paths are taken relative to `recipe_dir` (the recipe file's
    folder) and `output_dir` relative to `cwd`, and written back as absolute paths so the
    resolved recipe works from any directory.
    """
    cwd = cwd or Path.cwd()
    schema = load_schema()
    resolved = copy.deepcopy(data)
    resolved.setdefault("launch", {})  # so its defaults (one process, one machine) apply
    for key, subschema in schema["properties"].items():
        if key in LIBRARY_BLOCKS or key not in resolved:
            continue
        resolved[key] = _apply_defaults(resolved[key], subschema, schema)

    model = resolved.setdefault("model", {})
    training = resolved.get("training") or {}
    if "dtype" not in model:
        if training.get("bf16"):
            model["dtype"] = "bfloat16"
        elif training.get("fp16"):
            model["dtype"] = "float16"
        else:
            model["dtype"] = "float32"
    for key in ("id", "tokenizer"):
        ref = model.get(key)
        if isinstance(ref, str) and ref != "byte-level" and looks_local(ref, recipe_dir):
            model[key] = absolute_path(ref, recipe_dir)

    data_block = resolved.get("data") or {}
    sources = list(data_block.get("train") or [])
    if isinstance(data_block.get("eval"), list):
        sources += data_block["eval"]
    for source in sources:
        ref = source.get("source")
        if isinstance(ref, str) and looks_local(ref, recipe_dir):
            source["source"] = absolute_path(ref, recipe_dir)

    launch = resolved["launch"]
    if "strategy" not in launch:
        single = launch["num_processes"] == 1 and launch["num_machines"] == 1
        launch["strategy"] = "single" if single else "ddp"
    for key, subschema in schema["properties"]["launch"]["properties"].items():
        if key in ("deepspeed", "fsdp") and launch["strategy"] == key:
            launch[key] = _apply_defaults(launch.get(key) or {}, subschema, schema)

    if isinstance(resolved.get("output_dir"), str):
        resolved["output_dir"] = absolute_path(resolved["output_dir"], cwd)
    return resolved


def _apply_defaults(value: Any, subschema: dict[str, Any], root: dict[str, Any]) -> Any:
    """Fill `default`s of an object schema (recursively, following local $refs)."""
    subschema = _deref(subschema, root)
    if isinstance(value, dict) and "properties" in subschema:
        out = dict(value)
        for key, prop in subschema["properties"].items():
            prop = _deref(prop, root)
            if key not in out and "default" in prop:
                out[key] = copy.deepcopy(prop["default"])
            elif key in out:
                out[key] = _apply_defaults(out[key], prop, root)
        return out
    if isinstance(value, list) and isinstance(subschema.get("items"), dict):
        return [_apply_defaults(item, subschema["items"], root) for item in value]
    return value


def _deref(subschema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = subschema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        return node
    return subschema
