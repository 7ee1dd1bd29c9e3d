"""Weights, trainable parameters, gradients and optimizer states, byte for byte.

Every parameter tensor of the model is listed (`parameter_tensors`) so per-tensor rules
come out exact: bitsandbytes quantizes each linear weight in blocks of 64 with its own
constants, its 8-bit optimizers keep tensors under 4096 elements in 32 bit, and the
Trainer tells them to keep embeddings in 32 bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.plan.architecture import Architecture
from runner.plan.setup import DTYPE_BYTES, Setup

# bitsandbytes 0.50: 4-bit blocks, the 8-bit optimizers' blocks and their threshold.
NF4_BLOCKSIZE = 64
NESTED_BLOCKSIZE = 256  # double quantization: absmax values per second-level constant
OPTIM_8BIT_BLOCKSIZE = 256
OPTIM_8BIT_MIN_SIZE = 4096
PAGED_MIN_NUMEL = 100_000  # smaller state tensors of paged optimizers stay ordinary

EIGHT_BIT_OPTIMS = ("adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_8bit_fused")
ADAM_32BIT_OPTIMS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_torch_4bit",
    "adamw_apex_fused",
    "adamw_anyprecision",
    "paged_adamw_32bit",
    "adamw_hf",
)


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor of the model."""

    name: str
    numel: int
    shape: tuple[int, ...]
    quantized: bool = False  # stored as 4-bit
    trainable: bool = False
    is_embedding: bool = False


def parameter_tensors(arch: Architecture, setup: Setup) -> list[Tensor]:
    """Every parameter tensor of the base model, with what is quantized and trained."""
    full = setup.method == "full"
    quantized = setup.method == "qlora"
    tensors = [
        Tensor("embed_tokens", arch.embedding_params, (arch.vocab, arch.hidden), False, full, True)
    ]
    for layer in range(arch.layers):
        for name, (i, o) in arch.linear_shapes().items():
            tensors.append(Tensor(f"{layer}.{name}", i * o, (o, i), quantized, full))
            if arch.linear_has_bias(name):
                tensors.append(Tensor(f"{layer}.{name}.bias", o, (o,), False, full))
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors.append(Tensor(f"{layer}.{norm}", arch.hidden, (arch.hidden,), False, full))
    tensors.append(Tensor("norm", arch.hidden, (arch.hidden,), False, full))
    if not arch.tied_embeddings:
        tensors.append(
            Tensor("lm_head", arch.lm_head_params, (arch.vocab, arch.hidden), False, full)
        )
    return tensors


def quantized_bytes(numel: int, double_quant: bool) -> int:
    """Bytes of one 4-bit weight: packed nibbles plus its quantization constants."""
    packed = (numel + 1) // 2
    blocks = -(-numel // NF4_BLOCKSIZE)
    code = 16 * 4  # the 16-entry NF4/FP4 code book, float32, per tensor
    if not double_quant:
        return packed + 4 * blocks + code
    nested = -(-blocks // NESTED_BLOCKSIZE)
    # uint8 absmax per block, float32 absmax per 256 blocks, 256-entry float32 code, offset
    return packed + blocks + 4 * nested + 256 * 4 + 4 + code


def trainable_tensors(arch: Architecture, setup: Setup) -> list[Tensor]:
    """The tensors the optimizer updates: all for full, adapters (+ modules_to_save) else."""
    if setup.method == "full":
        return [t for t in parameter_tensors(arch, setup) if t.trainable]
    r = setup.lora_r
    out: list[Tensor] = []
    for layer in range(arch.layers):
        for name, (i, o) in arch.linear_shapes().items():
            if name in setup.lora_targets:
                out.append(Tensor(f"{layer}.{name}.lora_A", r * i, (r, i), trainable=True))
                out.append(Tensor(f"{layer}.{name}.lora_B", o * r, (o, r), trainable=True))
    for module in setup.modules_to_save:
        if module == "embed_tokens" or (module == "lm_head" and arch.tied_embeddings):
            shape = (arch.vocab, arch.hidden)
            out.append(
                Tensor(module, arch.embedding_params, shape, trainable=True, is_embedding=True)
            )
        elif module == "lm_head":
            out.append(
                Tensor(module, arch.lm_head_params, (arch.vocab, arch.hidden), trainable=True)
            )
    return out


def trainable_dtype_bytes(setup: Setup) -> int:
    """Bytes per element of trained parameters.

    Full: the load dtype. LoRA: PEFT keeps adapters in float32 (autocast_adapter_dtype).
    QLoRA: TRL 1.16 casts every trainable parameter of a quantized model to bfloat16.
    """
    if setup.method == "full":
        return DTYPE_BYTES[setup.dtype]
    if setup.method == "qlora":
        return 2
    if setup.strategy == "deepspeed" and setup.zero_stage == 3:
        return DTYPE_BYTES[setup.dtype]  # TRL passes autocast_adapter_dtype=False there
    return 4


def weight_bytes(arch: Architecture, setup: Setup) -> int:
    """The base model as loaded: load dtype, or 4-bit packed weights + constants."""
    element = DTYPE_BYTES[setup.dtype]
    total = 0
    for t in parameter_tensors(arch, setup):
        total += quantized_bytes(t.numel, setup.double_quant) if t.quantized else t.numel * element
    return total


def adapter_bytes(arch: Architecture, setup: Setup) -> int:
    """LoRA matrices and modules_to_save copies (0 for full fine-tuning)."""
    if setup.method == "full":
        return 0
    return sum(t.numel for t in trainable_tensors(arch, setup)) * trainable_dtype_bytes(setup)


def trainable_params(arch: Architecture, setup: Setup) -> int:
    return sum(t.numel for t in trainable_tensors(arch, setup))


def gradient_bytes(arch: Architecture, setup: Setup) -> int:
    """One gradient per trained parameter, in the parameter's dtype."""
    return trainable_params(arch, setup) * trainable_dtype_bytes(setup)


def optimizer_bytes(arch: Architecture, setup: Setup) -> tuple[int, int]:
    """(device bytes, of which paged) of the optimizer states once the first step ran."""
    optim = setup.optim
    element = trainable_dtype_bytes(setup)
    tensors = trainable_tensors(arch, setup)
    total = paged = 0
    for t in tensors:
        if optim in EIGHT_BIT_OPTIMS:
            if t.numel < OPTIM_8BIT_MIN_SIZE or t.is_embedding:
                size = 2 * 4 * t.numel  # 32-bit states
            else:
                blocks = -(-t.numel // OPTIM_8BIT_BLOCKSIZE)
                size = 2 * t.numel + 2 * 4 * blocks
            if optim.startswith("paged") and t.numel >= PAGED_MIN_NUMEL:
                paged += 2 * (t.numel if size < 8 * t.numel else 4 * t.numel)
        elif optim in ("paged_adamw_32bit", "adamw_bnb_32bit"):
            size = 2 * 4 * t.numel
            if optim.startswith("paged") and t.numel >= PAGED_MIN_NUMEL:
                paged += size
        elif optim.startswith(("adamw", "adam")) or optim in ADAM_32BIT_OPTIMS:
            # torch AdamW: exp_avg and exp_avg_sq like the parameter (its dtype), plus step
            size = 2 * element * t.numel
        elif optim in ("lion_8bit", "paged_lion_8bit"):
            size = t.numel if t.numel >= OPTIM_8BIT_MIN_SIZE else 4 * t.numel
        elif optim.startswith(("lion", "paged_lion")):
            size = 4 * t.numel
        elif optim == "adafactor":
            # factored second moment (rows + columns) in float32, no first moment
            size = 4 * (sum(t.shape) if len(t.shape) == 2 else t.numel)
        elif optim.startswith("sgd"):
            size = 0  # momentum is 0 unless optim_args set it
        else:
            size = 2 * element * t.numel  # unknown: assume an Adam-like optimizer
        total += size
    if optim in EIGHT_BIT_OPTIMS and any(
        t.numel >= OPTIM_8BIT_MIN_SIZE and not t.is_embedding for t in tensors
    ):
        total += 2 * 256 * 4  # the two quantization maps, shared by all 8-bit states
    return total, paged


def optimizer_step_transient(arch: Architecture, setup: Setup) -> int:
    """Scratch memory of one optimizer step.

    torch's foreach AdamW (adamw_torch) builds a temporary the size of all second
    moments (the sqrt of exp_avg_sq); the fused kernel and bitsandbytes work in place.
    """
    if setup.optim in ("adamw_torch", "adamw_hf"):
        return gradient_bytes(arch, setup)
    return 0
