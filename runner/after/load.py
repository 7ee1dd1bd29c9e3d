"""Load a target's tokenizer and model, offline, the way the run trained it.

- full fine-tune: the model in `final/`, in the recipe's dtype;
- LoRA/QLoRA: the base model (QLoRA in 4-bit unless `base_4bit=False`; a `model.config`
  base from `final/base`, where training saved its exact random initial weights) with
  the adapter from `final/` on top;
- a plain model directory or cached hub id: as saved, dtype "auto".

Every `from_pretrained` runs with `local_files_only=True`; a model that is not on this
machine was already refused by `runner.after.target.require_model` with a message that
says how to provide it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.prompts import prompt_settings, stop_token_ids
from runner.after.target import AfterError, Target, require_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_4BIT = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
}


@dataclass
class Loaded:
    """A loaded target: model (a PeftModel for adapters), tokenizer, how prompts render
    (`settings`), the ids generation stops at, and whether the base is 4-bit."""

    target: Target
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    settings: dict[str, Any]
    stop_ids: list[int]
    quantized: bool


def wants_4bit(target: Target, base_4bit: bool | None) -> bool:
    """Whether the adapter's base loads in 4-bit: as trained (QLoRA with a hub or local
    base) unless `--base-4bit/--no-base-4bit` says otherwise."""
    if not target.adapter:
        return False
    if base_4bit is not None:
        return base_4bit
    trained_from_config = target.resolved is not None and "config" in target.resolved["model"]
    return target.method == "qlora" and not trained_from_config


def model_dtype(target: Target, use_cpu: bool) -> str:
    """The dtype the model loads in: the recipe's (float16 -> float32 on CPU), else auto."""
    if target.resolved is None:
        return "auto"
    from runner.expand.model import training_dtype

    return training_dtype(target.resolved, use_cpu)


def quantization_kwargs(target: Target, dtype: str, use_cpu: bool) -> dict[str, Any]:
    """BitsAndBytesConfig fields for a 4-bit base: the recipe's quantization block, else NF4."""
    from runner.expand.library_kwargs import bnb_kwargs

    fields = (bnb_kwargs(target.resolved) if target.resolved is not None else None) or {}
    if not fields.get("load_in_4bit") and not fields.get("load_in_8bit"):
        fields = dict(DEFAULT_4BIT)
    compute = fields.get("bnb_4bit_compute_dtype") or (dtype if dtype != "auto" else "bfloat16")
    if use_cpu and compute == "float16":
        compute = "float32"
    fields["bnb_4bit_compute_dtype"] = compute
    return fields


def load_tokenizer(target: Target) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the run or model (for an adapter without one, its base's)."""
    from transformers import AutoTokenizer

    weights = Path(target.weights)
    has_own = any(
        (weights / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")
    )
    source = target.weights if has_own or not target.base else target.base
    if source == target.base:
        require_model(source, target.revision, where=str(target.path))
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise AfterError(
            f"error: cannot load the tokenizer from {source}: {_first_line(exc)}"
        ) from None


def load_base_model(
    target: Target,
    tokenizer: PreTrainedTokenizerBase,
    device: str,
    use_cpu: bool,
    *,
    quantize: bool,
    dtype: str | None = None,
) -> PreTrainedModel:
    """The base model of a target: an adapter's base, or the model a full run started from."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from runner.expand.model import model_kwargs

    dtype = dtype or model_dtype(target, use_cpu)
    resolved = target.resolved
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype), "device_map": {"": device}}
    if target.adapter and Path(target.weights, "base").is_dir():
        reference = str(Path(target.weights, "base"))  # a model.config base, saved by training
    elif resolved is not None and "config" in resolved["model"]:
        # A full run from model.config: its start was random weights, rebuilt from the seed.
        from runner.expand.model import load_model

        plain = copy.deepcopy(resolved)
        plain["model"]["dtype"] = dtype
        return load_model(plain, tokenizer, device, use_cpu)
    elif resolved is not None:
        reference = require_model(
            str(resolved["model"]["id"]), target.revision, where=str(target.path)
        )
        kwargs = model_kwargs({**resolved, "quantization": None}, device, use_cpu)
        kwargs["dtype"] = _torch_dtype(dtype)
        kwargs["device_map"] = {"": device}
    else:
        reference = require_model(str(target.base), where=str(target.path))
    if quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            **quantization_kwargs(target, dtype, use_cpu)
        )
    if Path(reference).is_dir():
        kwargs.pop("revision", None)
    model = _from_pretrained(AutoModelForCausalLM, reference, kwargs)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model


def load_target(
    target: Target, *, base_4bit: bool | None = None, device: str | None = None
) -> Loaded:
    """The trained model of a target with its tokenizer and stop ids, ready to generate."""
    from transformers import AutoModelForCausalLM

    from runner.expand.model import process_device

    if device is None:
        device, use_cpu = process_device()
    else:
        use_cpu = device == "cpu"
    tokenizer = load_tokenizer(target)
    quantize = wants_4bit(target, base_4bit)
    if target.adapter:
        from peft import PeftModel

        base = load_base_model(target, tokenizer, device, use_cpu, quantize=quantize)
        try:
            model = PeftModel.from_pretrained(base, target.weights)
        except (OSError, ValueError, RuntimeError) as exc:
            raise AfterError(
                f"error: cannot apply the adapter in {target.weights}: {_first_line(exc)} "
                "(was it trained on this base model?)"
            ) from None
    else:
        kwargs = {"dtype": _torch_dtype(model_dtype(target, use_cpu)), "device_map": {"": device}}
        model = _from_pretrained(AutoModelForCausalLM, target.weights, kwargs)
    model.eval()
    settings = prompt_settings(target.resolved, tokenizer)
    generation_config = getattr(model, "generation_config", None)
    stops = stop_token_ids(settings, tokenizer, getattr(generation_config, "eos_token_id", None))
    return Loaded(target, model, tokenizer, settings, stops, quantize)


def _torch_dtype(dtype: str) -> Any:
    import torch

    return dtype if dtype == "auto" else getattr(torch, dtype)


def _from_pretrained(cls: Any, reference: str, kwargs: dict[str, Any]) -> Any:
    try:
        return cls.from_pretrained(reference, local_files_only=True, **kwargs)
    except OSError as exc:
        raise AfterError(f"error: cannot load the model {reference}: {_first_line(exc)}") from None
    except (ImportError, ValueError) as exc:
        hint = " (try --no-base-4bit)" if "quantization_config" in kwargs else ""
        raise AfterError(
            f"error: cannot load the model {reference}: {_first_line(exc)}{hint}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
