"""What a recipe asks of the GPU, in the estimator's terms.

`setup_from_recipe` reads a (resolved or raw) recipe and fills in what TRL 1.16 /
transformers 5 would use when the recipe says nothing: SFTConfig turns activation
checkpointing and bf16 on, trains 8 sequences of up to 1024 tokens per device and uses
fused AdamW.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from runner.plan.architecture import LAYER_LINEARS

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# SFTConfig defaults (trl 1.16 on transformers 5.23) for the fields the estimate reads.
SFT_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_length": 1024,
    "packing": False,
    "padding_free": False,
    "optim": "adamw_torch_fused",
    "activation_checkpointing": True,
    "activation_offloading": False,
    "eval_strategy": "no",
}


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
    seq: int = 1024
    packing: bool = False
    padding_free: bool = False
    checkpointing: bool = True
    offload_activations: bool = False
    attn: str = "sdpa"
    evaluates: bool = False
    strategy: str = "single"  # single | ddp | deepspeed | fsdp
    processes: int = 1
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False

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


def setup_from_recipe(recipe: dict[str, Any]) -> Setup:
    """Read a recipe (resolved or raw) into a Setup, applying SFTConfig's defaults."""
    training = {**SFT_DEFAULTS, **(recipe.get("training") or {})}
    if "gradient_checkpointing" in training and "activation_checkpointing" not in (
        recipe.get("training") or {}
    ):
        training["activation_checkpointing"] = training["gradient_checkpointing"]
    model = recipe.get("model") or {}
    method = recipe.get("method", "full")
    fp16 = bool(training.get("fp16"))
    bf16 = training.get("bf16", not fp16)
    mixed = "fp16" if fp16 else ("bf16" if bf16 else "no")
    dtype = model.get("dtype") or ("bfloat16" if bf16 else "float16" if fp16 else "float32")

    quant = recipe.get("quantization") or {}
    lora = recipe.get("lora") or {}
    launch = recipe.get("launch") or {}
    processes = int(launch.get("num_processes", 1))
    strategy = launch.get("strategy") or ("single" if processes == 1 else "ddp")
    deepspeed = launch.get("deepspeed") or {}
    fsdp = launch.get("fsdp") or {}
    eval_block = (recipe.get("data") or {}).get("eval")

    return Setup(
        method=method,
        dtype=dtype,
        mixed_precision=mixed,
        quant_type=str(quant.get("bnb_4bit_quant_type", "fp4")),
        double_quant=bool(quant.get("bnb_4bit_use_double_quant", False)),
        lora_r=int(lora.get("r", 8)) if method in ("lora", "qlora") else 0,
        lora_targets=resolve_lora_targets(lora.get("target_modules"))
        if method in ("lora", "qlora")
        else (),
        lora_dropout=float(lora.get("lora_dropout", 0.0)),
        modules_to_save=tuple(lora.get("modules_to_save") or ()),
        optim=str(training["optim"]),
        batch=int(training["per_device_train_batch_size"]),
        eval_batch=int(training["per_device_eval_batch_size"]),
        grad_accum=int(training["gradient_accumulation_steps"]),
        seq=int(training["max_length"] or 1024),
        packing=bool(training["packing"]),
        padding_free=bool(training["padding_free"]) or bool(training["packing"]),
        checkpointing=bool(training["activation_checkpointing"]),
        offload_activations=bool(training["activation_offloading"]),
        attn=str(model.get("attn_implementation", "sdpa")),
        evaluates=str(training["eval_strategy"]) != "no" and bool(eval_block),
        strategy=strategy,
        processes=processes,
        zero_stage=int(deepspeed.get("zero_stage", 2)) if strategy == "deepspeed" else 0,
        offload_optimizer=deepspeed.get("offload_optimizer_device", "none") != "none"
        or bool(fsdp.get("cpu_offload")),
        offload_params=deepspeed.get("offload_param_device", "none") != "none"
        or bool(fsdp.get("cpu_offload")),
    )
