"""A model's architecture without downloading it.

`model_config` finds a recipe's model `config.json` fields from, in order: the recipe's
own `model.config`, a local GGUF file's header, a local model directory, the Hugging Face
cache when the model was downloaded before, or the built-in table of the architectures
the shipped recipes use. It never touches the network and never imports transformers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runner.recipe.gguf_header import GgufError, read_header

# config.json fields of the shipped recipes' models (as published on the hub).
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-3.2-1B-Instruct": {
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    },
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": {
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    },
    "huggyllama/llama-7b": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
    },
}
KNOWN_CONFIGS["meta-llama/Llama-3.2-1B"] = KNOWN_CONFIGS["meta-llama/Llama-3.2-1B-Instruct"]
KNOWN_CONFIGS["TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"] = KNOWN_CONFIGS[
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
]


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def cached_file(model_id: str, filename: str, revision: str | None = None) -> Path | None:
    """`filename` of hub model `model_id` in the local Hugging Face cache, if it is there."""
    repo = hub_cache_dir() / ("models--" + model_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref_file = repo / "refs" / (revision or "main")
    if ref_file.is_file():
        candidate = snapshots / ref_file.read_text().strip() / filename
        if candidate.is_file():
            return candidate
    found = sorted(snapshots.glob(f"*/{filename}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def cached_config_path(model_id: str, revision: str | None = None) -> Path | None:
    """config.json of `model_id` in the local Hugging Face cache, if it is there."""
    return cached_file(model_id, "config.json", revision)


def gguf_file_of(model: dict[str, Any], recipe_dir: Path | None = None) -> Path | None:
    """The local GGUF file a model block loads from: model.id when it is a .gguf path, or
    model.gguf_file inside the folder model.id names; None for any other model. Relative
    paths (a recipe's raw block) are taken from `recipe_dir`."""
    reference = model.get("id")
    if not isinstance(reference, str):
        return None
    path = Path(reference).expanduser()
    if not path.is_absolute():
        if recipe_dir is None:
            return None
        path = recipe_dir / path
    if isinstance(model.get("gguf_file"), str):
        return path / model["gguf_file"]
    return path if path.suffix.lower() == ".gguf" else None


def gguf_tokenizer(model: dict[str, Any]) -> Path | None:
    """The GGUF file the model's tokenizer comes from (a GGUF model without
    model.tokenizer), else None."""
    return None if model.get("tokenizer") else gguf_file_of(model)


def tokenizer_file(model: dict[str, Any], filename: str) -> Path | None:
    """A file of the tokenizer a (resolved) model block uses - `model.tokenizer`, else
    the model's own - from a local directory or the Hugging Face cache; None when the
    tokenizer's files are not on this machine (or it is the byte-level tokenizer)."""
    source = model.get("tokenizer") or model.get("id")
    if not isinstance(source, str) or source == "byte-level":
        return None
    local = Path(source).expanduser()
    if local.is_dir():
        path = local / filename
        return path if path.is_file() else None
    revision = model.get("revision") if source == model.get("id") else None
    return cached_file(source, filename, revision)


def has_local_tokenizer(model: dict[str, Any]) -> bool:
    """Whether the tokenizer's own files are on this machine (so they can be checked)."""
    gguf = gguf_tokenizer(model)
    if gguf is not None:
        try:
            return read_header(gguf) is not None
        except (OSError, GgufError):
            return False
    return tokenizer_file(model, "tokenizer_config.json") is not None


def chat_template_of(model: dict[str, Any]) -> str | None:
    """The chat template the tokenizer's files on this machine carry (tokenizer_config.json
    `chat_template`, or chat_template.jinja / chat_template.json; a GGUF file's
    tokenizer.chat_template), else None."""
    gguf = gguf_tokenizer(model)
    if gguf is not None:
        try:
            return read_header(gguf).chat_template
        except (OSError, GgufError):
            return None
    jinja = tokenizer_file(model, "chat_template.jinja")
    if jinja is not None:
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = tokenizer_file(model, name)
        data = _read_json(path) if path is not None else None
        template = (data or {}).get("chat_template")
        if isinstance(template, list):  # named templates: the "default" one
            template = next(
                (t.get("template") for t in template if t.get("name") == "default"), None
            )
        if isinstance(template, str) and template:
            return template
    return None


def model_config(model: dict[str, Any], recipe_dir: Path | None = None) -> dict[str, Any] | None:
    """The architecture fields of a recipe's `model` block, or None when unknown.

    `model` may be the recipe's raw block (relative paths taken from `recipe_dir`) or the
    resolved one (absolute paths).
    """
    if isinstance(model.get("config"), dict):
        return dict(model["config"])
    gguf = gguf_file_of(model, recipe_dir)
    if gguf is not None:
        try:
            return read_header(gguf).config()
        except (OSError, GgufError):
            return None
    model_id = model.get("id")
    if not isinstance(model_id, str):
        return None
    local = Path(model_id).expanduser()
    if not local.is_absolute() and recipe_dir is not None:
        local = recipe_dir / local
    if (local / "config.json").is_file():
        return _read_json(local / "config.json")
    if local.suffix == ".json" and local.is_file():
        return _read_json(local)
    cached = cached_config_path(model_id, model.get("revision"))
    if cached is not None:
        config = _read_json(cached)
        if config is not None:
            return config
    known = KNOWN_CONFIGS.get(model_id)
    return dict(known) if known else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
