"""What a recipe asks of the GPU, in the estimator's terms.

`setup_from_settings` reads a recipe's effective settings (runner.recipe.settings):
every value as the run will use it, TRL's defaults included, so the estimate needs no
defaults of its own. The attention kernel is the one the run will load
(runner.expand.model.attention_kernel: `auto` is flash_attention_2 on a GPU where
flash-attn is installed, sdpa otherwise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.expand.model import attention_kernel, flash_attention_installed
from runner.plan.architecture import LAYER_LINEARS
from runner.recipe.settings import Settings

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Setup:
    """Everything besides the architecture that sets peak memory on one GPU."""

    method: str = "full"  # full | lora | qlora
    dtype: str = "bfloat16"  # the dtype the weights are loaded in
    mixed_precision: str = "bf16"  # bf16 | fp16 | no (autocast)
    quant_type: str = "nf4"
    double_quant: bool = True
    quant_blocksize: int = 64
    lora_r: int = 0
    lora_targets: tuple[str, ...] = ()
    lora_dropout: float = 0.0
    modules_to_save: tuple[str, ...] = ()
    optim: str = "adamw_torch_fused"
    batch: int = 8
    eval_batch: int = 8
    grad_accum: int = 1
    seq: int = 1024  # tokens in the longest row: max_length, or the model's context
    seq_is_context: bool = False  # max_length null (no truncation): planned at the context
    packing: bool = False
    padding_free: bool = False  # TRL's padding-free collator: packing bfd/bfd_split, or asked
    bucketing: bool = False  # train_sampling_strategy group_by_length (not packing)
    liger: bool = False  # use_liger_kernel: Liger's RMSNorm, SwiGLU and RoPE kernels
    compiled: bool = False  # torch_compile (planned as eager PyTorch: an upper bound)
    checkpointing: bool = True
    offload_activations: bool = False
    attn: str = "sdpa"
    evaluates: bool = False
    strategy: str = "single"  # single | ddp | deepspeed | fsdp
    processes: int = 1
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False
    device: str = "cuda"  # cuda | cpu: what dropout keeps for backward differs (activations.py)

    @property
    def activation_bytes(self) -> int:
        """Bytes per element of the activations (the compute dtype)."""
        if self.method == "qlora" or self.mixed_precision != "no":
            return 2
        return DTYPE_BYTES[self.dtype]

    @property
    def tokens_per_batch(self) -> int:
        return self.batch * self.seq

    def replace(self, **changes: Any) -> Setup:
        return dataclasses.replace(self, **changes)


def resolve_lora_targets(target_modules: Any) -> tuple[str, ...]:
    """PEFT target_modules -> the decoder linear layers they select.

    "all-linear" is every linear layer but the LM head; a list selects modules whose name
    ends with an entry; a regular-expression string selects the layer names it contains.
    """
    if target_modules is None:
        return ("q_proj", "v_proj")  # PEFT's default for the llama family
    if isinstance(target_modules, str):
        if target_modules == "all-linear":
            return LAYER_LINEARS
        return tuple(name for name in LAYER_LINEARS if name in target_modules)
    names = {str(t).split(".")[-1] for t in target_modules}
    return tuple(name for name in LAYER_LINEARS if name in names)


def padding_free(training: Any) -> bool:
    """Whether TRL 1.16 flattens each batch into one row with position ids: packing with
    a best-fit-decreasing strategy, or `padding_free` itself."""
    packed = bool(training["packing"]) and training["packing_strategy"] in ("bfd", "bfd_split")
    return bool(training["padding_free"]) or packed


class RowLengthUnknown(ValueError):
    """training.max_length is null and the model's context is unknown."""


def row_tokens(max_length: int | None, context: int | None) -> tuple[int, bool]:
    """(tokens in the longest row, whether that is the model's context): max_length, or
    for `max_length: null` (no truncation) the model's context, the longest row the
    model takes; RowLengthUnknown when neither is known."""
    if max_length is not None:
        return int(max_length), False
    if context is None:
        raise RowLengthUnknown(
            "training.max_length is null (no truncation) and the model's context "
            "(max_position_embeddings) is unknown, so the longest row cannot be planned"
        )
    return context, True


def _quantization_terms(quantization: Mapping[str, Any] | None) -> dict[str, Any]:
    """The estimator's quantization terms (none for an unquantized base)."""
    if quantization is None:
        return {}
    return {
        "quant_type": str(quantization["bnb_4bit_quant_type"]),
        "double_quant": bool(quantization["bnb_4bit_use_double_quant"]),
    }


def _adapter_terms(lora: Mapping[str, Any] | None) -> dict[str, Any]:
    """The estimator's adapter terms (none for full fine-tuning)."""
    if lora is None:
        return {}
    return {
        "lora_r": int(lora["r"]),
        "lora_targets": resolve_lora_targets(lora["target_modules"]),
        "lora_dropout": float(lora["lora_dropout"]),
        "modules_to_save": tuple(lora["modules_to_save"] or ()),
    }


def _deepspeed_offloads(settings: Settings, what: str) -> bool:
    """Whether DeepSpeed keeps the optimizer states or the weights (`what`) off the GPU."""
    deepspeed = settings.launch["deepspeed"] if settings.strategy == "deepspeed" else None
    return deepspeed is not None and deepspeed[f"offload_{what}_device"] != "none"


def setup_from_settings(settings: Settings, context: int | None = None) -> Setup:
    """The estimator's view of a recipe's effective settings; `context` is the model's
    (runner.plan.architecture), what `max_length: null` is planned at."""
    training = settings.training
    launch = settings.launch
    fsdp_offload = settings.strategy == "fsdp" and bool(launch["fsdp"]["cpu_offload"])
    seq, seq_is_context = row_tokens(settings.max_length, context)
    return Setup(
        method=settings.method,
        dtype=settings.model_dtype,
        mixed_precision=settings.mixed_precision,
        **_quantization_terms(settings.quantization_config),
        **_adapter_terms(settings.lora_config),
        optim=str(training["optim"]),
        batch=int(training["per_device_train_batch_size"]),
        eval_batch=int(training["per_device_eval_batch_size"]),
        grad_accum=int(training["gradient_accumulation_steps"]),
        seq=seq,
        seq_is_context=seq_is_context,
        packing=bool(training["packing"]),
        padding_free=padding_free(training),
        bucketing=str(training["train_sampling_strategy"]) == "group_by_length",
        liger=bool(training["use_liger_kernel"]),
        compiled=bool(
            training["torch_compile"]
            or training["torch_compile_backend"]
            or training["torch_compile_mode"]
        ),
        checkpointing=bool(training["activation_checkpointing"]),
        offload_activations=bool(training["activation_offloading"]),
        attn=attention_kernel(
            settings,
            on_gpu=not settings.cpu_only,
            flash_installed=flash_attention_installed(),
        ),
        evaluates=settings.evaluates,
        strategy=settings.strategy,
        processes=settings.num_processes,
        zero_stage=settings.zero_stage,
        offload_optimizer=_deepspeed_offloads(settings, "optimizer") or fsdp_offload,
        offload_params=_deepspeed_offloads(settings, "param") or fsdp_offload,
    )
