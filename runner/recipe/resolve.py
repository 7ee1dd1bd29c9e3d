"""The resolved recipe: every default filled once, derived values decided, paths absolute.

The recipe itself is never mutated; `resolve_recipe` returns a new mapping from
schema-valid data. It is what `recipe show` prints, what every run saves as
`recipe.resolved.yaml`, and what `runner.recipe.settings.Settings` (the typed view that
rules, plan, expand, train and the after-training commands read) is built from.

Decided here and nowhere else:
- the schema's defaults of the runner's own blocks (model, data, launch, ...);
- `training.bf16` and `training.activation_checkpointing` as SFTConfig will see them
  (TRL turns both on unless told otherwise; the deprecated `gradient_checkpointing`
  name is read as `activation_checkpointing`);
- `model.dtype` from the mixed precision when the recipe does not say;
- `quantization.bnb_4bit_compute_dtype` = model.dtype for 4-bit loading, and
  `lora.task_type` = CAUSAL_LM;
- `launch.strategy` (single, or ddp for several processes) and the engine's defaults;
- `data.template` (a name, or an absolute file path), and `data.template_variables`
  with the schema's `date_string` kept under any variables the recipe sets (Llama 3.x
  templates write "Today Date: ..." from transformers' clock unless given one, so the
  training text, the data cache key and every prompt would follow the calendar);
- local model, tokenizer and data paths relative to the recipe's folder, `output_dir`
  relative to the directory the command runs in.

The other SFTConfig / LoraConfig / BitsAndBytesConfig defaults stay with the libraries
(the resolved training block is what SFTConfig is given). `library_view` layers them,
from the generated schema, under the resolved blocks - once per recipe, for
`Settings.training` / `lora_config` / `quantization_config`; nothing else applies them.

`keyed_sources` (with `data_sources` and `eval_sources`) lists a recipe's data sources,
in the one order every step reads them: train, then eval.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from runner.recipe.schema import block_schema, defaults_of, fill_defaults, load_schema, properties
from runner.recipe.template import resolve_template

LIBRARY_BLOCKS = ("training", "lora", "quantization")
LOCAL_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
LOCAL_MODEL_SUFFIXES = (".gguf",)
PACKAGE_PREFIX = "package:"
BYTE_LEVEL = "byte-level"
# deprecated TrainingArguments names -> the names transformers 5 reads
TRAINING_ALIASES = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def looks_local(reference: str, base: Path) -> bool:
    """Whether a model/data reference names a local path rather than a hub id (or a
    `package:` reference, resolved by `package_file`)."""
    if reference.startswith(PACKAGE_PREFIX):
        return False
    if reference.startswith(("/", "./", "../", "~")) or reference.endswith(
        LOCAL_DATA_SUFFIXES + LOCAL_MODEL_SUFFIXES
    ):
        return True
    return (base / reference).exists()


def absolute_path(reference: str, base: Path) -> str:
    return str((base / Path(reference).expanduser()).resolve())


def resolve_recipe(
    data: dict[str, Any], recipe_dir: Path, cwd: Path | None = None
) -> dict[str, Any]:
    """Return the resolved copy of schema-valid recipe data (see the module docstring).

    Never raises for a schema-valid recipe, even one the lint rules reject: rules read
    the resolved recipe.
    """
    resolved = with_recipe_defaults(data)
    resolved["training"] = resolve_training(resolved.get("training") or {})
    _resolve_model(resolved["model"], resolved["training"], recipe_dir)
    _resolve_data(resolved["data"], recipe_dir)
    _resolve_adapters(resolved)
    _resolve_launch(resolved["launch"], recipe_dir)
    resolved["output_dir"] = absolute_path(resolved["output_dir"], cwd or Path.cwd())
    return resolved


def with_recipe_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of recipe data with the schema's defaults filled in where keys are absent
    (the library blocks excepted: `library_view` layers those). Also how a run's recorded
    recipe is read (runner.run.directory.read_resolved): a run recorded before a key
    existed reads it with the default that key was given."""
    resolved = copy.deepcopy(data)
    resolved.setdefault("launch", {})  # so its defaults (one process, one machine) apply
    for key, node in properties(load_schema()).items():
        if key in resolved and key not in LIBRARY_BLOCKS:
            resolved[key] = fill_defaults(resolved[key], node)
        elif key not in resolved and "default" in node:
            resolved[key] = fill_defaults(copy.deepcopy(node["default"]), node)
    return resolved


@functools.cache
def library_defaults(block: str) -> dict[str, Any]:
    """The field defaults of SFTConfig (training), LoraConfig (lora) or
    BitsAndBytesConfig (quantization), as the generated schema records them."""
    return defaults_of(block_schema(block))


def trl_training_default(key: str) -> Any:
    """What SFTConfig uses for a `training` key the recipe leaves out (trl 1.16 on
    transformers 5.23): the generated schema's default, with the two values its
    __post_init__ computes - bf16 (on unless fp16) and activation_checkpointing (the
    deprecated gradient_checkpointing's default, True in SFTConfig)."""
    defaults = library_defaults("training")
    if key == "bf16":
        return defaults.get("bf16") if defaults.get("bf16") is not None else True
    if key == "activation_checkpointing" and defaults.get(key) is None:
        return bool(defaults.get("gradient_checkpointing"))
    return defaults.get(key)


def library_view(resolved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each library block (training, lora, quantization) as its library will see it: the
    library's defaults (from the generated schema) under the resolved block, with the
    values the library's own __post_init__ derives from them."""
    view = {
        block: {**library_defaults(block), **(resolved.get(block) or {})}
        for block in LIBRARY_BLOCKS
    }
    training = view["training"]
    if training["eval_steps"] is None and str(training["eval_strategy"]).lower() == "steps":
        training["eval_steps"] = training["logging_steps"]  # TrainingArguments does so
    if view["quantization"]["bnb_4bit_quant_storage"] is None:
        view["quantization"]["bnb_4bit_quant_storage"] = "uint8"  # BitsAndBytesConfig does so
    return view


def resolve_training(training: dict[str, Any]) -> dict[str, Any]:
    """The training block with the aliases renamed and the mixed precision and
    checkpointing decided (see `trl_training_default`)."""
    out = dict(training)
    for old, new in TRAINING_ALIASES.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    if out.get("activation_checkpointing") is None:
        out["activation_checkpointing"] = trl_training_default("activation_checkpointing")
    if out.get("bf16") is None:
        out["bf16"] = False if out.get("fp16") else trl_training_default("bf16")
    return out


def _resolve_model(model: dict[str, Any], training: dict[str, Any], recipe_dir: Path) -> None:
    if "dtype" not in model:
        if training.get("bf16"):
            model["dtype"] = "bfloat16"
        elif training.get("fp16"):
            model["dtype"] = "float16"
        else:
            model["dtype"] = "float32"
    for key in ("id", "tokenizer"):
        ref = model.get(key)
        if isinstance(ref, str) and ref.startswith(PACKAGE_PREFIX):
            found = package_file(ref)
            model[key] = str(found) if found is not None else ref  # lint says it is missing
        elif isinstance(ref, str) and ref != BYTE_LEVEL and looks_local(ref, recipe_dir):
            model[key] = absolute_path(ref, recipe_dir)


def package_file(reference: str) -> Path | None:
    """The file a `package:NAME/PATH` reference names inside the installed Python package
    NAME (found without importing it), or None when the package is not installed."""
    import importlib.util

    name, _, inner = reference.removeprefix(PACKAGE_PREFIX).partition("/")
    try:
        spec = importlib.util.find_spec(name) if name.isidentifier() else None
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return (Path(folders[0]) / inner).resolve() if folders and inner else None


def keyed_sources(data: dict[str, Any]) -> list[tuple[tuple[str, int], Any]]:
    """(("train" or "eval", index), source) for every data source of a data block, the
    train sources first; eval sources only when data.eval lists them (not a fraction).
    Reads a block as written too (lint's schema-level rules): anything not a list is no
    sources."""
    entries: list[tuple[tuple[str, int], Any]] = []
    for split in ("train", "eval"):
        items = data.get(split)
        if isinstance(items, list):
            entries += [((split, index), item) for index, item in enumerate(items)]
    return entries


def data_sources(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every data source of a data block: the train sources, then the eval sources."""
    return [source for _, source in keyed_sources(data)]


def eval_sources(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The sources data.eval lists (none when it is a fraction or absent)."""
    return [source for (split, _), source in keyed_sources(data) if split == "eval"]


def _resolve_data(data: dict[str, Any], recipe_dir: Path) -> None:
    for source in data_sources(data):
        ref = source.get("source")
        if isinstance(ref, str) and looks_local(ref, recipe_dir):
            source["source"] = absolute_path(ref, recipe_dir)
    data["template"] = resolve_template(data["template"], recipe_dir)
    default = properties(block_schema("data"))["template_variables"]["default"]
    data["template_variables"] = {**default, **data["template_variables"]}


def _resolve_adapters(resolved: dict[str, Any]) -> None:
    quantization = resolved.get("quantization")
    if isinstance(quantization, dict) and quantization.get("load_in_4bit"):
        # bitsandbytes would otherwise compute in float32: slow, and no memory saved
        quantization.setdefault("bnb_4bit_compute_dtype", resolved["model"]["dtype"])
        if quantization["bnb_4bit_compute_dtype"] is None:
            quantization["bnb_4bit_compute_dtype"] = resolved["model"]["dtype"]
    lora = resolved.get("lora")
    if isinstance(lora, dict):
        lora.setdefault("task_type", "CAUSAL_LM")


def _resolve_launch(launch: dict[str, Any], recipe_dir: Path) -> None:
    if "strategy" not in launch:
        single = launch["num_processes"] == 1 and launch["num_machines"] == 1
        launch["strategy"] = "single" if single else "ddp"
    engines = block_schema("launch")["properties"]
    for engine in ("deepspeed", "fsdp"):
        if launch["strategy"] == engine:
            launch[engine] = fill_defaults(launch.get(engine) or {}, engines[engine])
    config_file = (launch.get("deepspeed") or {}).get("config_file")
    if config_file:
        launch["deepspeed"]["config_file"] = absolute_path(config_file, recipe_dir)
