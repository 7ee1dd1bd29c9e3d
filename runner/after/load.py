"""Load a target's tokenizer and model, offline, the way the run trained it.

- full fine-tune: the model in `final/`, in the recipe's dtype;
- LoRA/QLoRA: the base model (QLoRA in 4-bit unless `base_4bit=False`; a `model.config`
  or GGUF base from the run's `base/`, where `recipe run` saved the weights it started
  from) with the adapter from `final/` on top;
- a plain model directory or cached hub id: as saved, dtype "auto".

A run's prompts are rendered from the copy of the template it trained with
(runner.run.template_copy: `template/` in the run directory), never from the package's
or checkout's templates.

Every `from_pretrained` runs with `local_files_only=True`; a model that is not on this
machine was already refused by `runner.after.target.require_model` with a message that
says how to provide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.prompts import prompt_format, stop_token_ids
from runner.after.target import AfterError, Target, require_model
from runner.data.templates import PromptFormat
from runner.expand.library_kwargs import bnb_kwargs
from runner.expand.placement import Placement, load_dtype, on_device
from runner.recipe.remote_code import FLAG, needs_own_code

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# A plain adapter directory has no recipe to say how its base was quantized: NF4 with
# double quantization, as the shipped QLoRA recipes train.
PLAIN_ADAPTER_4BIT = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
}


@dataclass
class Loaded:
    """A loaded target: model (a PeftModel for adapters), tokenizer, how prompts are
    written (`fmt`), the ids generation stops at, and whether the base is 4-bit."""

    target: Target
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fmt: PromptFormat
    stop_ids: list[int]
    quantized: bool


def wants_4bit(target: Target, base_4bit: bool | None) -> bool:
    """Whether the adapter's base loads in 4-bit: as trained (QLoRA) unless
    `--base-4bit/--no-base-4bit` says otherwise."""
    if not target.adapter:
        return False
    return base_4bit if base_4bit is not None else target.method == "qlora"


def model_dtype(target: Target, use_cpu: bool) -> str:
    """The dtype the model loads in: the run's (float16 -> float32 on CPU), else auto."""
    if target.settings is None:
        return "auto"
    return load_dtype(target.settings, Placement(cpu=use_cpu))


def quantization_kwargs(target: Target, dtype: str, use_cpu: bool) -> dict[str, Any]:
    """BitsAndBytesConfig fields for a 4-bit base: the run's quantization block, else NF4."""
    settings = target.settings
    fields = dict(bnb_kwargs(settings) or {}) if settings is not None else {}
    if not fields.get("load_in_4bit") and not fields.get("load_in_8bit"):
        fields = dict(PLAIN_ADAPTER_4BIT)
    compute = fields.get("bnb_4bit_compute_dtype") or (dtype if dtype != "auto" else "bfloat16")
    fields["bnb_4bit_compute_dtype"] = on_device(compute, Placement(cpu=use_cpu))
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
        tokenizer = AutoTokenizer.from_pretrained(
            source, local_files_only=True, trust_remote_code=target.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        refused = needs_own_code(exc, source, "the tokenizer", _allow(target))
        if refused is not None:
            raise refused from None
        raise AfterError(f"cannot load the tokenizer from {source}: {_first_line(exc)}") from None
    if target.is_run:
        from runner.run.template_copy import run_chat_template

        # The chat template training rendered with, from the run's own copy.
        tokenizer.chat_template = run_chat_template(target.path) or tokenizer.chat_template
    return tokenizer


def load_base_model(
    target: Target,
    tokenizer: PreTrainedTokenizerBase,
    device: str,
    use_cpu: bool,
    *,
    quantize: bool,
    dtype: str | None = None,
) -> PreTrainedModel:
    """The base model of a target: an adapter's base, or the model a full run started
    from (for a model.config or GGUF run, the base it saved in `base/`)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from runner.expand.model import attention_kernel, flash_attention_installed
    from runner.run.directory import RunDirectory

    dtype = dtype or model_dtype(target, use_cpu)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype), "device_map": {"": device}}
    kwargs["trust_remote_code"] = target.trust_remote_code  # runner.after.target
    settings = target.settings
    if settings is not None and settings.builds_base:
        reference = require_model(str(RunDirectory(target.path).base), where=str(target.path))
    elif settings is not None:
        reference = require_model(str(settings.model["id"]), target.revision, str(target.path))
        kwargs["attn_implementation"] = attention_kernel(
            settings, on_gpu=device != "cpu", flash_installed=flash_attention_installed()
        )
        if target.revision and not Path(reference).is_dir():
            kwargs["revision"] = target.revision
    else:
        reference = require_model(str(target.base), where=str(target.path))
    if quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            **quantization_kwargs(target, dtype, use_cpu)
        )
    model = _from_pretrained(AutoModelForCausalLM, reference, kwargs, _allow(target))
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model


def load_target(
    target: Target, *, base_4bit: bool | None = None, device: str | None = None
) -> Loaded:
    """The trained model of a target with its tokenizer and stop ids, ready to generate."""
    from transformers import AutoModelForCausalLM

    from runner.expand.placement import gpu_available

    if device is None:
        device = Placement(cpu=not gpu_available()).device()
    use_cpu = device == "cpu"
    if target.is_run:
        from runner.logs import log_file_of, quiet_libraries

        quiet_libraries(log_file_of(target.path, _command_name()), cpu=use_cpu)
    tokenizer = load_tokenizer(target)
    quantize = wants_4bit(target, base_4bit)
    if target.adapter:
        from peft import PeftModel

        base = load_base_model(target, tokenizer, device, use_cpu, quantize=quantize)
        try:
            model = PeftModel.from_pretrained(base, target.weights)
        except (OSError, ValueError, RuntimeError) as exc:
            raise AfterError(
                f"cannot apply the adapter in {target.weights}: {_first_line(exc)} "
                "(was it trained on this base model?)"
            ) from None
    else:
        kwargs = {
            "dtype": _torch_dtype(model_dtype(target, use_cpu)),
            "device_map": {"": device},
            "trust_remote_code": target.trust_remote_code,  # runner.after.target
        }
        model = _from_pretrained(AutoModelForCausalLM, target.weights, kwargs, _allow(target))
    model.eval()
    fmt = prompt_format(target.settings, tokenizer, target.path if target.is_run else None)
    generation_config = getattr(model, "generation_config", None)
    stops = stop_token_ids(fmt, tokenizer, getattr(generation_config, "eos_token_id", None))
    return Loaded(target, model, tokenizer, fmt, stops, quantize)


def as_trained(loaded: Loaded) -> Loaded:
    """The run with the numerics it trained with: a 4-bit base on the CPU keeps the
    layout training used, not bitsandbytes' bfloat16 inference kernel (which it would
    switch to on a CPU with AVX512-BF16, changing logits by up to ~1)."""
    if loaded.quantized:
        from runner.expand.model import keep_trainable_4bit_layout

        keep_trainable_4bit_layout(loaded.model)
    return loaded


def _command_name() -> str:
    """The `recipe` command running (infer, chat, eval...), for its log file's name."""
    import click

    context = click.get_current_context(silent=True)
    return context.info_name if context is not None and context.info_name else "after"


def _torch_dtype(dtype: str) -> Any:
    import torch

    return dtype if dtype == "auto" else getattr(torch, dtype)


def _allow(target: Target) -> str:
    """How to let a target's own code run (for needs_own_code's message)."""
    if target.is_run:
        return f"train the run with model.trust_remote_code: true and {FLAG}, then give {FLAG}"
    return f"give {FLAG} to the command"


def _from_pretrained(
    cls: Any, reference: str, kwargs: dict[str, Any], allow: str = f"give {FLAG}"
) -> Any:
    try:
        return cls.from_pretrained(reference, local_files_only=True, **kwargs)
    except OSError as exc:
        raise AfterError(f"cannot load the model {reference}: {_first_line(exc)}") from None
    except (ImportError, ValueError) as exc:
        refused = needs_own_code(exc, reference, "the model", allow)
        if refused is not None:
            raise refused from None
        hint = " (try --no-base-4bit)" if "quantization_config" in kwargs else ""
        raise AfterError(f"cannot load the model {reference}: {_first_line(exc)}{hint}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
