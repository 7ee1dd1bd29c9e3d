"""How the model of a resolved recipe is loaded: keyword arguments, then the model.

`model_kwargs` is pure (tested without loading anything): an explicit dtype always (TRL
would otherwise load float32), the attention kernel, the bitsandbytes quantization, and
a device map that puts the whole model on this process's device. A model that does not
fit fails with an out-of-memory error instead of being offloaded to the CPU behind the
user's back; `device_map` is left out under DeepSpeed and FSDP, which place weights
themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.expand.library_kwargs import bnb_kwargs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def training_dtype(resolved: dict[str, Any], use_cpu: bool) -> str:
    """model.dtype, except float16 on CPU (not supported for training there) -> float32."""
    dtype = resolved["model"].get("dtype", "float32")
    return "float32" if use_cpu and dtype == "float16" else dtype


def model_kwargs(resolved: dict[str, Any], device: str, use_cpu: bool = False) -> dict[str, Any]:
    """Keyword arguments for `AutoModelForCausalLM.from_pretrained` (quantization as a dict;
    `load_model` turns it into a BitsAndBytesConfig)."""
    model = resolved["model"]
    kwargs: dict[str, Any] = {
        "dtype": training_dtype(resolved, use_cpu),
        "attn_implementation": model.get("attn_implementation", "sdpa"),
        "trust_remote_code": bool(model.get("trust_remote_code", False)),
    }
    if model.get("revision"):
        kwargs["revision"] = model["revision"]
    quantization = bnb_kwargs(resolved)
    if quantization:
        if use_cpu and quantization.get("bnb_4bit_compute_dtype") == "float16":
            quantization["bnb_4bit_compute_dtype"] = "float32"
        kwargs["quantization_config"] = quantization
    strategy = (resolved.get("launch") or {}).get("strategy", "single")
    if quantization or strategy not in ("deepspeed", "fsdp"):
        kwargs["device_map"] = {"": device}
    return kwargs


def config_kwargs(resolved: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The transformers config of a `model.config` model, completed from the tokenizer
    (vocab size and special token ids) where the recipe leaves them out."""
    config = dict(resolved["model"]["config"])
    config.setdefault("vocab_size", len(tokenizer))
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        token_id = getattr(tokenizer, key)
        if token_id is not None:
            config.setdefault(key, token_id)
    return config


def load_model(
    resolved: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    device: str,
    use_cpu: bool = False,
) -> PreTrainedModel:
    """The model to train: from the hub/a local directory, or built from `model.config`
    with random weights (seeded by training.seed). Embeddings grow to the tokenizer's
    size when a pad token was added."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig, set_seed

    kwargs = model_kwargs(resolved, device, use_cpu)
    model_block = resolved["model"]
    if "config" in model_block:
        set_seed(int((resolved.get("training") or {}).get("seed", 42)))
        fields = config_kwargs(resolved, tokenizer)
        config = AutoConfig.for_model(**fields)
        model = AutoModelForCausalLM.from_config(
            config,
            dtype=getattr(torch, kwargs["dtype"]),
            attn_implementation=kwargs["attn_implementation"],
        )
        model.to(device)
    else:
        if "quantization_config" in kwargs:
            kwargs["quantization_config"] = BitsAndBytesConfig(**kwargs["quantization_config"])
        model = AutoModelForCausalLM.from_pretrained(model_block["id"], **kwargs)
    if use_cpu and "quantization_config" in kwargs:
        # bitsandbytes repacks 4-bit weights for a CPU inference kernel the first time a
        # layer runs in eval mode, and that kernel has no backward: training after an
        # evaluation would get zero gradients. Keep the trainable layout on CPU.
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model


def process_device() -> tuple[str, bool]:
    """(this process's device, whether it is the CPU): cuda:<local rank>, else cpu."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}", False
    return "cpu", True
