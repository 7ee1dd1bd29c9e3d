"""Generate schemas/recipe-v1.schema.json from the hand-written base and the libraries.

    python tools/gen_schema.py            # write the schema
    python tools/gen_schema.py --check    # exit 1 if the committed schema is stale

`$defs.sft_config` comes from dataclasses.fields(trl.SFTConfig), `$defs.lora_config`
from peft.LoraConfig, `$defs.bnb_config` from transformers.BitsAndBytesConfig's
__init__ signature and docstring: types, enums, defaults and help text, all with
`additionalProperties: false`; RANGES adds the numeric limits the libraries enforce.
Plain-words descriptions in schemas/source/descriptions.yaml replace the library help
for the keys a beginner touches. Fields the recipe owns elsewhere
(runner.lint.rules.renamed_keys.KEY_FIXES, kind `moved`) are left out.
Output is sorted and deterministic: regenerate after upgrading TRL/PEFT/transformers.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import json
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.lint.rules.renamed_keys import DEPRECATED, KEY_FIXES, MOVED  # noqa: E402

SCHEMAS = ROOT / "schemas"  # the schema ships in the wheel; source/ does not
BASE = SCHEMAS / "source" / "recipe-v1.base.yaml"
DESCRIPTIONS = SCHEMAS / "source" / "descriptions.yaml"
OUTPUT = SCHEMAS / "recipe-v1.schema.json"

# Fields the schema leaves out (besides KEY_FIXES `moved` ones): library bookkeeping
# that a recipe never sets.
EXCLUDED = {
    "lora": {"auto_mapping", "peft_version"},
    "training": set(),
    "quantization": set(),
}
# Value lists the type annotations do not carry.
REPORT_TO = [
    "none", "all", "azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive",
    "flyte", "kubeflow", "mlflow", "neptune", "swanlab", "tensorboard", "trackio", "wandb",
]  # fmt: skip
DTYPES = ["bfloat16", "float16", "float32"]
BNB_TYPES: dict[str, dict[str, Any]] = {
    "load_in_8bit": {"type": "boolean"},
    "load_in_4bit": {"type": "boolean"},
    "llm_int8_threshold": {"type": "number"},
    "llm_int8_skip_modules": {"type": ["array", "null"], "items": {"type": "string"}},
    "llm_int8_enable_fp32_cpu_offload": {"type": "boolean"},
    "llm_int8_has_fp16_weight": {"type": "boolean"},
    "bnb_4bit_compute_dtype": {"enum": [*DTYPES, None]},
    "bnb_4bit_quant_type": {"enum": ["fp4", "nf4"]},
    "bnb_4bit_use_double_quant": {"type": "boolean"},
    "bnb_4bit_quant_storage": {"enum": ["uint8", *DTYPES, None]},
}
EXTRA_ENUMS = {"report_to": REPORT_TO}

# The values each numeric field accepts, from what the libraries check or need (a value
# outside trains nothing, or fails only after the model has loaded). JSON Schema has no
# "finite": NaN and infinity are refused by runner.lint.schema_check for every number.
POSITIVE = {"exclusiveMinimum": 0}
AT_LEAST_0 = {"minimum": 0}
AT_LEAST_1 = {"minimum": 1}
# logging/eval/save steps: below 1 a fraction of the total steps, above it a whole count
# (TrainingArguments raises "must be an integer if bigger than 1").
STEPS = {"exclusiveMinimum": 0, "if": {"minimum": 1}, "then": {"multipleOf": 1}}
UNIT_OPEN = {"minimum": 0, "exclusiveMaximum": 1}  # [0, 1)
RANGES: dict[str, dict[str, dict[str, Any]]] = {
    "training": {
        "per_device_train_batch_size": AT_LEAST_1,
        "per_device_eval_batch_size": AT_LEAST_1,
        "gradient_accumulation_steps": AT_LEAST_1,
        "eval_accumulation_steps": AT_LEAST_1,
        "num_train_epochs": POSITIVE,  # 0 or less: "succeeded" after 0 steps
        # -1: train for num_train_epochs; 0 trains nothing (Trainer: epoch-based only below 0)
        "max_steps": {"minimum": -1, "not": {"const": 0}},
        "max_length": AT_LEAST_1,  # null: no truncation
        "learning_rate": POSITIVE,  # torch: "Invalid learning rate" below 0; 0 learns nothing
        "warmup_steps": AT_LEAST_0,  # TrainingArguments: "Expected warmup_steps >= 0"
        "weight_decay": AT_LEAST_0,  # torch AdamW: "Invalid weight_decay value"
        "adam_beta1": UNIT_OPEN,  # torch Adam: "Invalid beta parameter"
        "adam_beta2": UNIT_OPEN,
        "adam_epsilon": AT_LEAST_0,  # torch Adam: "Invalid epsilon value"
        "max_grad_norm": AT_LEAST_0,  # 0: no clipping
        "label_smoothing_factor": {"minimum": 0, "maximum": 1},
        "neftune_noise_alpha": AT_LEAST_0,
        "router_aux_loss_coef": AT_LEAST_0,
        "torch_empty_cache_steps": AT_LEAST_1,  # TrainingArguments: "bigger than 0"
        "logging_steps": STEPS,
        "eval_steps": STEPS,
        "save_steps": STEPS,
        "eval_delay": AT_LEAST_0,
        "save_total_limit": AT_LEAST_1,  # null keeps every checkpoint (0 would too, silently)
        "seed": {"minimum": 0, "maximum": 2**32 - 1},  # numpy's seed range
        "data_seed": {"minimum": 0, "maximum": 2**32 - 1},
        "dataloader_num_workers": AT_LEAST_0,  # torch DataLoader raises below 0
        "dataloader_prefetch_factor": AT_LEAST_1,
        "ddp_bucket_cap_mb": AT_LEAST_1,
        "ddp_timeout": AT_LEAST_1,
        "dataset_num_proc": AT_LEAST_1,  # datasets: num_proc must be at least 1
        "pad_to_multiple_of": AT_LEAST_1,
    },
    "lora": {
        "r": AT_LEAST_1,  # PEFT: "`r` should be a positive integer value"
        "lora_alpha": AT_LEAST_1,  # scaling is lora_alpha / r: 0 switches the adapter off
        "lora_dropout": UNIT_OPEN,  # torch Dropout needs [0, 1]; 1 drops every activation
        "qalora_group_size": AT_LEAST_1,
        "layers_to_transform": AT_LEAST_0,  # layer indexes
        "alora_invocation_tokens": AT_LEAST_0,  # token ids
        "trainable_token_indices": AT_LEAST_0,
    },
    "quantization": {
        "llm_int8_threshold": AT_LEAST_0,
    },
}


def load_yaml(path: Path) -> Any:
    """Plain data from a YAML file."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


# --- Python types -> JSON Schema -----------------------------------------------------


def type_schema(annotation: Any, enum_values: list | None = None) -> dict[str, Any]:
    """JSON Schema for a Python type annotation (as found on the config classes)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return union_schema(typing.get_args(annotation), enum_values)
    if annotation is type(None) or annotation is None:
        return {"type": "null"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if annotation is str:
        return {"enum": list(enum_values)} if enum_values else {"type": "string"}
    if origin is typing.Literal:
        values = list(typing.get_args(annotation))
        if any(isinstance(v, str) and "[" in v for v in values):
            return {"type": "string"}  # a pattern described in words, e.g. pissa_niter_[n]
        return {"enum": values}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    if annotation is dict or origin is dict:
        return {"type": "object"}
    if annotation is list or origin in (list, tuple):
        args = typing.get_args(annotation)
        schema: dict[str, Any] = {"type": "array"}
        if origin is list and args:
            schema["items"] = type_schema(args[0], enum_values)
        return schema
    if dataclasses.is_dataclass(annotation):
        return {"type": "object"}
    return {}


def union_schema(members: tuple, enum_values: list | None) -> dict[str, Any]:
    """JSON Schema for a Union: a type list where possible, else anyOf."""
    enums = [m for m in members if isinstance(m, type) and issubclass(m, enum.Enum)]
    if enums:  # `SchedulerType | str`: the enum's values are the allowed strings
        members = tuple(m for m in members if m is not str)
    parts = [type_schema(m, enum_values) for m in members]
    if any(p == {} for p in parts):
        return {}
    nullable = {"type": "null"} in parts
    parts = [p for p in parts if p != {"type": "null"}]
    if all(set(p) == {"type"} for p in parts):
        names: list[str] = []
        for p in parts:
            for name in [p["type"]] if isinstance(p["type"], str) else p["type"]:
                if name not in names:
                    names.append(name)
        if nullable:
            names.append("null")
        return {"type": names[0] if len(names) == 1 else names}
    if len(parts) == 1 and "enum" in parts[0]:
        values = list(parts[0]["enum"])
        return {"enum": [*values, None] if nullable else values}
    if nullable:
        parts.append({"type": "null"})
    return {"anyOf": parts}


def json_default(value: Any) -> tuple[bool, Any]:
    """(usable, value) for a library default in JSON."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float) and not math.isfinite(value):
        return False, None
    if value is None or isinstance(value, bool | int | float | str):
        return True, value
    if isinstance(value, list | tuple) and all(json_default(v)[0] for v in value):
        return True, [json_default(v)[1] for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        pairs = {k: json_default(v) for k, v in value.items()}
        if all(ok for ok, _ in pairs.values()):
            return True, {k: v for k, (_, v) in pairs.items()}
    return False, None


def clean_help(text: str) -> str:
    """Library help text on one line."""
    text = re.sub(r"\s+", " ", text or "").strip()
    return text


# --- the three blocks ----------------------------------------------------------------


def dataclass_block(cls: type, block: str, descriptions: dict[str, str]) -> dict[str, Any]:
    """The closed object schema of a config dataclass (SFTConfig, LoraConfig)."""
    hints = typing.get_type_hints(cls)
    excluded = EXCLUDED[block] | {
        key for (b, key), fix in KEY_FIXES.items() if b == block and fix.kind == MOVED
    }
    properties: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if not field.init or field.name.startswith("_") or field.name in excluded:
            continue
        choices = field.metadata.get("choices")
        enum_values = list(choices) if choices else EXTRA_ENUMS.get(field.name)
        schema = type_schema(hints.get(field.name, field.type), enum_values)
        if field.default is not dataclasses.MISSING:
            ok, default = json_default(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            ok, default = json_default(field.default_factory())
        else:
            ok, default = False, None
        if ok:
            schema["default"] = default
        help_text = clean_help(field.metadata.get("help", ""))
        key = f"{block}.{field.name}"
        schema["description"] = descriptions.get(key) or help_text or field.name
        fix = KEY_FIXES.get((block, field.name))
        if "deprecated" in help_text.lower()[:40] or (fix and fix.kind == DEPRECATED):
            schema["deprecated"] = True
        properties[field.name] = schema
    return {"type": "object", "additionalProperties": False, "properties": properties}


def bnb_block(descriptions: dict[str, str]) -> dict[str, Any]:
    """The closed object schema of BitsAndBytesConfig (from its signature and docstring)."""
    from transformers import BitsAndBytesConfig

    helps = docstring_args(BitsAndBytesConfig.__doc__ or "")
    properties: dict[str, Any] = {}
    for name, param in inspect.signature(BitsAndBytesConfig.__init__).parameters.items():
        if name in ("self", "kwargs") or param.kind is param.VAR_KEYWORD:
            continue
        schema = dict(BNB_TYPES.get(name, {}))
        ok, default = json_default(param.default)
        if ok and param.default is not inspect.Parameter.empty:
            schema["default"] = default
        schema["description"] = descriptions.get(f"quantization.{name}") or helps.get(name, name)
        properties[name] = schema
    return {"type": "object", "additionalProperties": False, "properties": properties}


def docstring_args(doc: str) -> dict[str, str]:
    """`name (`type`, ...):` entries of a Google-style Args section -> help text."""
    helps: dict[str, str] = {}
    current: str | None = None
    for line in doc.splitlines():
        match = re.match(r"^\s{8}(\w+) \(.*\):\s*$", line)
        if match:
            current = match.group(1)
            helps[current] = ""
        elif current and line.startswith(" " * 12):
            helps[current] += " " + line.strip()
        elif line.strip():
            current = None
    return {k: clean_help(v) for k, v in helps.items()}


def with_range(schema: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    """`schema` with numeric limits added to its number parts: the schema itself, the
    members of an anyOf, and the items of an array of numbers."""
    out = dict(schema)
    types = out.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    if "integer" in names or "number" in names:
        out.update(limits)
    if isinstance(out.get("items"), dict):
        out["items"] = with_range(out["items"], limits)
    if "anyOf" in out:
        out["anyOf"] = [with_range(part, limits) for part in out["anyOf"]]
    return out


def add_ranges(block: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The block schema with RANGES applied; a field RANGES names that the library no
    longer has is an error, so a rename upstream cannot drop a range silently."""
    properties = schema["properties"]
    for name, limits in RANGES[block].items():
        if name not in properties:
            raise SystemExit(f"RANGES names {block}.{name}, which the installed library lacks")
        ranged = with_range(properties[name], limits)
        if ranged == properties[name]:
            raise SystemExit(f"RANGES {block}.{name}: the field has no number to limit")
        properties[name] = ranged
    return schema


def generate() -> dict[str, Any]:
    """The full schema, from the base file and the installed libraries."""
    import peft
    import trl

    base = load_yaml(BASE)
    descriptions = {str(k): clean_help(str(v)) for k, v in load_yaml(DESCRIPTIONS).items()}
    defs = base["$defs"]
    defs["sft_config"] = add_ranges(
        "training", dataclass_block(trl.SFTConfig, "training", descriptions)
    )
    defs["lora_config"] = add_ranges("lora", dataclass_block(peft.LoraConfig, "lora", descriptions))
    defs["bnb_config"] = add_ranges("quantization", bnb_block(descriptions))
    _describe_runner_keys(base, descriptions)
    return base


def _describe_runner_keys(schema: dict[str, Any], descriptions: dict[str, str]) -> None:
    """descriptions.yaml may also describe runner-owned keys (model.dtype, ...)."""
    for key, text in descriptions.items():
        block, _, name = key.partition(".")
        if block in ("training", "lora", "quantization"):
            continue
        node = schema["properties"].get(block)
        if node is not None and name:
            node = node.get("properties", {}).get(name)
        if node is not None:
            node["description"] = text


def render(schema: dict[str, Any]) -> str:
    """The schema as committed: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the schema is stale")
    args = parser.parse_args(argv)
    text = render(generate())
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale: run `python tools/gen_schema.py`", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
