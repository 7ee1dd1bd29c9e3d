"""How the model of a recipe is loaded: keyword arguments, then the model.

`model_kwargs` is pure (tested without loading anything): an explicit dtype always (TRL
would otherwise load float32), the attention kernel (`attention_kernel`: the recipe's,
or for `auto` flash_attention_2 on a GPU where flash-attn is installed and the weights
are 16-bit, else sdpa; every kernel keeps packed examples apart in transformers 5.23),
the bitsandbytes quantization, and
a device map that puts the whole model on this process's device. A model that does not
fit fails with an out-of-memory error instead of being offloaded to the CPU behind the
user's back; `device_map` is left out under DeepSpeed (a quantized model under ZeRO-1/2
keeps it: bitsandbytes quantizes on the device) and FSDP, which place weights
themselves.

Two kinds of model have no checkpoint `from_pretrained` can train from, so `recipe run`
makes one in the run directory (`base/`) before launch (`save_base_model`), and
`load_model` loads it from there like any local model - so quantization (QLoRA's 4-bit
over those weights), dtype and placement take the same `from_pretrained` path:
- a `model.config` model: random weights, made once (seeded by training.seed);
- a GGUF file (llama.cpp's format): its weights dequantized once to float32
  (`GgufConfig(dequantize=True)`; without it transformers keeps a quantizer that can
  neither train nor save), with the tokenizer and chat template the file carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.expand.library_kwargs import bnb_kwargs
from runner.expand.missing import ModelNotFoundError, first_line, require_gguf_package
from runner.expand.placement import Placement, load_dtype, on_device
from runner.expand.source import model_revision, model_source
from runner.expand.tokenizer import load_tokenizer
from runner.recipe.remote_code import needs_own_code
from runner.recipe.settings import Settings

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def flash_attention_installed() -> bool:
    """Whether the flash-attn package is installed here (asked without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("flash_attn") is not None
    except (ImportError, ValueError):
        return False


def attention_kernel(settings: Settings, *, on_gpu: bool, flash_installed: bool) -> str:
    """The attention implementation the model loads with: the recipe's, or for `auto`
    flash_attention_2 where it runs (a GPU, flash-attn installed, bfloat16/float16
    weights: packed rows then attend through the varlen kernel, no mask at all), else
    sdpa (packed rows get a block-diagonal mask from their position ids)."""
    chosen = str(settings.model["attn_implementation"])
    if chosen != "auto":
        return chosen
    sixteen_bit = settings.model_dtype in ("bfloat16", "float16")
    return "flash_attention_2" if on_gpu and flash_installed and sixteen_bit else "sdpa"


# 4-bit NF4 with double quantization, as the shipped QLoRA recipes train: the base of a
# recipe without a quantization block asked to load in 4-bit (`--base-4bit`), and of an
# adapter directory without a recipe.
NF4 = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}


def quantization_fields(
    settings: Settings | None, dtype: str, placement: Placement, *, force_4bit: bool = False
) -> dict[str, Any] | None:
    """BitsAndBytesConfig fields: the recipe's quantization block (None without one),
    or with `force_4bit` that block or NF4 (`NF4`); a 4-bit compute dtype defaults to
    the load dtype and is computable on the device (float16 -> float32 on the CPU)."""
    fields = bnb_kwargs(settings) if settings is not None else None
    if force_4bit and not (fields and (fields.get("load_in_4bit") or fields.get("load_in_8bit"))):
        fields = dict(NF4)
    if not fields:
        return None
    if fields.get("load_in_4bit"):
        compute = fields.get("bnb_4bit_compute_dtype") or (dtype if dtype != "auto" else "bfloat16")
        fields["bnb_4bit_compute_dtype"] = on_device(compute, placement)
    return fields


def model_kwargs(
    settings: Settings,
    placement: Placement,
    device: str,
    *,
    source: str | None = None,
    quantize: bool | None = None,
    dtype: str | None = None,
    one_process: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for `AutoModelForCausalLM.from_pretrained` of a recipe's model,
    for training and for every command that loads a run (quantization as a dict;
    `from_pretrained_kwargs` turns it into a BitsAndBytesConfig).

    `source`: what loads (default model.id; see `model_source`), which decides the
    revision (`model_revision`). `quantize`: None as the recipe trains, True a 4-bit
    base (`--base-4bit`), False unquantized. `dtype`: instead of model.dtype (merge's
    --dtype). `one_process`: a command outside `recipe run` (no launch strategy places
    the weights: the whole model goes on `device`)."""
    load = dtype or load_dtype(settings, placement)
    kwargs: dict[str, Any] = {
        "dtype": load,
        "attn_implementation": attention_kernel(
            settings, on_gpu=device != "cpu", flash_installed=flash_attention_installed()
        ),
        # the recipe asks, the command line allows: runner.recipe.remote_code
        "trust_remote_code": settings.trust_remote_code,
    }
    revision = model_revision(settings, source or model_source(settings))
    if revision:
        kwargs["revision"] = revision
    quantization = (
        quantization_fields(settings, load, placement, force_4bit=bool(quantize))
        if quantize is not False
        else None
    )
    if quantization:
        kwargs["quantization_config"] = quantization
    engine_places = settings.shards_weights or (
        settings.strategy == "deepspeed" and not quantization
    )
    if one_process or not engine_places:
        kwargs["device_map"] = {"": device}  # ZeRO-3 and FSDP place the shards themselves
    return kwargs


def from_pretrained_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`model_kwargs` as `from_pretrained` takes them: torch dtypes, a BitsAndBytesConfig."""
    import torch
    from transformers import BitsAndBytesConfig

    ready = dict(kwargs)
    if ready.get("dtype", "auto") != "auto":
        ready["dtype"] = getattr(torch, ready["dtype"])
    if "quantization_config" in ready:
        ready["quantization_config"] = BitsAndBytesConfig(**ready["quantization_config"])
    return ready


def config_kwargs(settings: Settings, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The transformers config of a `model.config` model, completed from the tokenizer
    (vocab size and special token ids) where the recipe leaves them out."""
    config = dict(settings.model["config"])
    config.setdefault("vocab_size", len(tokenizer))
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        token_id = getattr(tokenizer, key)
        if token_id is not None:
            config.setdefault(key, token_id)
    return config


def build_config_model(settings: Settings, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A `model.config` model with random weights, seeded by training.seed (on the CPU,
    in model.dtype)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, set_seed

    set_seed(settings.seed)
    config = AutoConfig.for_model(**config_kwargs(settings, tokenizer))
    return AutoModelForCausalLM.from_config(
        config,
        dtype=getattr(torch, settings.model_dtype),
        attn_implementation=attention_kernel(settings, on_gpu=False, flash_installed=False),
    )


def load_gguf_model(gguf: Path) -> PreTrainedModel:
    """The model in a GGUF file with its weights dequantized to float32 (trainable and
    saveable); a UserError naming the extra when the gguf package is missing."""
    import contextlib
    import io

    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    require_gguf_package()
    # transformers draws a progress bar per tensor straight to stderr: kept off the screen
    with contextlib.redirect_stderr(io.StringIO()):
        return AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            gguf_file=gguf.name,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
            dtype=torch.float32,
        )


def save_base_model(settings: Settings, path: Path) -> None:
    """Write the model a run starts from into `path` (the run's `base/`), whole or not at
    all: a `model.config` recipe's random initial weights, or a GGUF file's dequantized
    weights; with the tokenizer. Any later step loads it with `from_pretrained`
    (training, `recipe infer --compare`, eval, merge)."""
    import os
    import shutil

    tokenizer = load_tokenizer(settings)
    gguf = settings.gguf_path
    model = load_gguf_model(gguf) if gguf is not None else build_config_model(settings, tokenizer)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    os.replace(partial, path)


def load_model(
    settings: Settings,
    placement: Placement,
    tokenizer: PreTrainedTokenizerBase,
    *,
    local_rank: int = 0,
    base_dir: Path | None = None,
) -> PreTrainedModel:
    """The model to train: model.id from the hub or a local directory, or the base the
    run made in `base_dir` (a `model.config` recipe's random weights, a GGUF file's
    dequantized weights). Embeddings grow to the tokenizer's size when a pad token was
    added."""
    from transformers import AutoModelForCausalLM

    source = model_source(settings, base_dir)
    kwargs = model_kwargs(settings, placement, placement.device(local_rank), source=source)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **from_pretrained_kwargs(kwargs))
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot load the model {source} (model.id): {first_line(exc)}; offline, it "
            "must be a local model directory or in the Hugging Face cache"
        ) from None
    except ValueError as exc:  # a model type transformers lacks, whose code was not trusted
        refused = needs_own_code(exc, source, "model.id")
        if refused is None:
            raise
        raise refused from None
    if placement.cpu and "quantization_config" in kwargs:
        keep_trainable_4bit_layout(model)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model


def keep_trainable_4bit_layout(model: PreTrainedModel) -> None:
    """bitsandbytes repacks 4-bit weights for a CPU inference kernel the first time a
    layer runs in eval mode, and that kernel has no backward: training after an
    evaluation would get zero gradients. Keep the trainable layout on CPU."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
