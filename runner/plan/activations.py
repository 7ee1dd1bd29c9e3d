"""Activation memory: the tensors autograd keeps for backward, per token.

Each decoder layer is walked op by op the way transformers 5's Llama block runs it, and
every tensor an op saves for backward is named, so a tensor saved by two ops (the norm
output read by q, k and v) counts once, as `saved_tensors_hooks` deduplicated by storage
would count it. Sizes are bytes per token of the micro-batch.
"""

from __future__ import annotations

from runner.plan.architecture import Architecture
from runner.plan.setup import DTYPE_BYTES, Setup

# TRL 1.16's fused LM head (trl/kernels/chunked_logprob.py): tiles of 4096 tokens x
# 32768 vocabulary entries in the compute dtype, recomputed in backward.
LM_TOKEN_CHUNK = 4096
LM_VOCAB_CHUNK = 32768
# What dropout keeps for backward per element: CUDA's native_dropout saves a bool mask;
# on the CPU dropout saves its noise tensor, in the dtype of what it drops (`dropout_bytes`).
CUDA_DROPOUT_MASK_BYTES = 1


def dropout_bytes(setup: Setup, a: int) -> int:
    """Bytes per element dropout keeps for backward in front of a LoRA adapter: a bool
    mask on CUDA; on the CPU a noise tensor in the adapter's dtype, since PEFT casts the
    input to it first (float32 LoRA adapters; QLoRA's adapters in the compute dtype)."""
    if setup.device == "cuda":
        return CUDA_DROPOUT_MASK_BYTES
    return 4 if setup.method == "lora" else a


def _lora_input(
    saved: dict[str, int],
    name: str,
    x_name: str,
    width: int,
    setup: Setup,
    a: int,
    input_grad: bool = True,
) -> None:
    """What a LoRA branch saves for the adapter on `name` (input `x_name`, width `width`).

    With dropout each adapter keeps its own dropped copy of the input and what dropout
    needs for backward (`dropout_bytes`). fp32 adapters under bf16 autocast keep a bf16 cast of
    their input; bf16 adapters (QLoRA) read the input itself.
    """
    casts = setup.method == "lora" and setup.mixed_precision != "no"
    if setup.lora_dropout > 0:
        if input_grad:  # no gradient flows to a frozen input: dropout keeps no mask
            saved[f"{name}.dropout_mask"] = dropout_bytes(setup, a) * width
        saved[f"{name}.lora_in"] = (2 if casts else a) * width
    elif casts:
        saved[f"{name}.lora_in"] = 2 * width
    elif setup.method == "lora" and a != 4:
        saved[f"{name}.lora_in"] = 4 * width  # fp32 adapter, no autocast: fp32 copy
    else:
        saved[x_name] = a * width
    saved[f"{name}.lora_mid"] = (
        2 if casts else (4 if setup.method == "lora" else a)
    ) * setup.lora_r


def _linear(
    saved: dict[str, int],
    name: str,
    x_name: str,
    width: int,
    setup: Setup,
    a: int,
    input_grad: bool = True,
) -> None:
    if setup.method == "full":
        saved[x_name] = a * width
    elif name in setup.lora_targets:
        _lora_input(saved, name, x_name, width, setup, a, input_grad)


def _norm(
    saved: dict[str, int],
    name: str,
    x_name: str,
    hidden: int,
    setup: Setup,
    a: int,
    input_grad: bool = True,
) -> None:
    """RMSNorm in float32: x.float(), pow, mean, rsqrt, mul, .to(dtype), weight *.

    With a frozen weight and an input that needs no gradient it keeps nothing. Under
    Liger (`use_liger_kernel`) one Triton kernel keeps only its input and rstd.
    """
    if not input_grad:
        return
    if setup.liger:
        # Liger's RMSNorm keeps its input and the float32 rstd, and recomputes the rest
        saved[x_name] = a * hidden
        saved[f"{name}.rsqrt"] = 4
        return
    saved[x_name if a == 4 else f"{name}.f32"] = 4 * hidden
    saved[f"{name}.rsqrt"] = 4
    if setup.method == "full":
        saved[f"{name}.normed"] = a * hidden


def layer_saved(
    arch: Architecture, setup: Setup, seq: int, mask: bool, input_grad: bool = True
) -> dict[str, int]:
    """Tensors one decoder layer saves for backward, name -> bytes per token.

    `seq`: how many keys each query is scored against - max_length for padded rows, every
    token of the micro-batch for a packed one under sdpa/eager (one flattened row).
    `mask`: the batch carries a dense mask (padding, or the block-diagonal one
    transformers builds from packed position ids), so sdpa gets repeated k/v heads
    instead of native GQA (transformers' use_gqa_in_sdpa), and each layer's sdpa call
    converts the bool mask into an additive one that it keeps. `input_grad`: the layer's
    input needs a gradient (False only for the first layer of an adapter model without
    checkpointing, whose embedding output is frozen).
    """
    a = setup.activation_bytes
    h, i = arch.hidden, arch.intermediate
    saved: dict[str, int] = {}
    _norm(saved, "ln1", "x_in", h, setup, a, input_grad)
    for name in ("q_proj", "k_proj", "v_proj"):
        _linear(saved, name, "ln1.out", h, setup, a, input_grad)
    repeat = arch.kv_heads != arch.heads and (mask or setup.attn == "eager")
    if setup.attn == "eager":
        saved["q_rot"] = a * arch.q_dim
        saved["k_rep"] = a * arch.q_dim
        saved["v_rep"] = a * arch.q_dim
        saved["probs_f32"] = 4 * arch.heads * seq
        if a != 4:
            saved["probs"] = a * arch.heads * seq
    else:
        saved["q_rot"] = a * arch.q_dim
        saved["k_rep" if repeat else "k_rot"] = a * (arch.q_dim if repeat else arch.kv_dim)
        saved["v_rep" if repeat else "v"] = a * (arch.q_dim if repeat else arch.kv_dim)
        saved["attn_out"] = a * arch.q_dim
        saved["lse"] = 4 * arch.heads
        if mask:
            saved["mask"] = a * seq  # the additive mask, [batch, 1, seq, seq] per layer
    # sdpa returns [b, s, heads, d] memory, so transpose(1, 2).contiguous() copies nothing
    # and o_proj reads the attention output itself; eager's output is a fresh copy.
    o_in = "o_in" if setup.attn == "eager" else "attn_out"
    _linear(saved, "o_proj", o_in, arch.q_dim, setup, a)
    _norm(saved, "ln2", "x_mid", h, setup, a)
    for name in ("gate_proj", "up_proj"):
        _linear(saved, name, "ln2.out", h, setup, a)
    saved["gate"] = a * i
    if not setup.liger:  # Liger's SiLU-and-multiply kernel recomputes SiLU in backward
        saved["act"] = a * i
    saved["up"] = a * i
    _linear(saved, "down_proj", "prod", i, setup, a)
    return saved


def layer_bytes_per_token(
    arch: Architecture, setup: Setup, seq: int, mask: bool, input_grad: bool = True
) -> int:
    return sum(layer_saved(arch, setup, seq, mask, input_grad).values())


def head_saved_per_token(arch: Architecture, setup: Setup) -> int:
    """Final norm and TRL's fused LM head: what they keep for backward, per token."""
    a = setup.activation_bytes
    saved: dict[str, int] = {}
    _norm(saved, "final_norm", "x_out", arch.hidden, setup, a)
    # hidden[mask] copy, int64 targets, float32 log Z and entropy, bool label mask
    return sum(saved.values()) + a * arch.hidden + 8 + 4 + 4 + 1


def lm_head_backward_transient(arch: Architecture, setup: Setup, tokens: int) -> int:
    """Scratch of the fused LM head's backward, the first thing backward runs.

    fp32 accumulators for the hidden-state gradient and (when the head trains) the head's
    weight gradient, their casts back to the compute dtype, and one logits tile.
    """
    a = setup.activation_bytes
    head_trains = setup.method == "full" or "lm_head" in setup.modules_to_save
    tile = min(tokens, LM_TOKEN_CHUNK) * min(arch.vocab, LM_VOCAB_CHUNK) * a
    grad_hidden = tokens * arch.hidden * (4 + (a if a != 4 else 0))
    grad_weight = arch.vocab * arch.hidden * (4 + (a if a != 4 else 0)) if head_trains else 0
    return tile + grad_hidden + grad_weight


def backward_working_per_token(arch: Architecture, setup: Setup) -> int:
    """Gradients in flight inside one layer's backward (the MLP's are the widest)."""
    a = setup.activation_bytes
    return a * (3 * arch.intermediate + 2 * arch.hidden)


def tokens_per_micro_batch(setup: Setup, batch: int | None = None) -> int:
    """Tokens in the largest micro-batch: batch x max_length, padded (a batch whose
    longest row reaches max_length) or packed (TRL's packed rows are each up to
    max_length, and the padding-free collator flattens the batch into one row)."""
    return (batch or setup.batch) * setup.seq


def packed_dense_mask(setup: Setup) -> bool:
    """A packed (padding-free) batch under sdpa or eager: transformers builds a dense
    block-diagonal causal mask over the whole flattened micro-batch from the position
    ids. Flash attention reads the sequence boundaries instead (no mask); flex attention
    keeps a block-sparse mask (small)."""
    return setup.padding_free and setup.attn in ("sdpa", "eager")


def has_padding_mask(setup: Setup, batch: int) -> bool:
    """Whether the attention gets a dense mask: padded batches of several rows (their
    padding mask), packed ones under sdpa/eager (the block-diagonal mask)."""
    if setup.padding_free:
        return packed_dense_mask(setup)
    return batch > 1


def attention_span(setup: Setup, batch: int) -> int:
    """Keys each query is scored against: max_length for padded rows; for a packed batch
    under sdpa/eager, every token of the flattened micro-batch (the mask hides the other
    examples, but the kernel still computes and keeps every score)."""
    return batch * setup.seq if packed_dense_mask(setup) else setup.seq


def dense_mask_bytes(setup: Setup, batch: int) -> int:
    """The mask every layer reads (an input of each checkpointed layer): batch x seq x
    seq for padded rows, (batch x seq)^2 for a packed micro-batch; one byte per entry
    (sdpa's bool mask), or the weights' dtype for eager's additive mask."""
    if not has_padding_mask(setup, batch):
        return 0
    span = attention_span(setup, batch)
    entries = span * span if packed_dense_mask(setup) else batch * setup.seq * setup.seq
    return entries * (DTYPE_BYTES[setup.dtype] if setup.attn == "eager" else 1)


def shared_bytes(arch: Architecture, setup: Setup, batch: int) -> int:
    """Tensors every layer shares: rotary cos/sin (one row of positions, or the packed
    row's) and the input ids."""
    positions = batch * setup.seq if setup.padding_free else setup.seq
    rotary = 2 * positions * arch.head_dim * setup.activation_bytes
    return rotary + 8 * batch * setup.seq


def autocast_weight_copies(arch: Architecture, setup: Setup) -> int:
    """bf16 casts of fp32 LoRA weights that autocast caches for the whole forward."""
    if setup.method != "lora" or setup.mixed_precision == "no":
        return 0
    per_layer = sum(
        setup.lora_r * (i + o)
        for n, (i, o) in arch.linear_shapes().items()
        if n in setup.lora_targets
    )
    return 2 * arch.layers * per_layer


def activation_bytes(arch: Architecture, setup: Setup) -> tuple[int, int]:
    """(kept through the forward pass, recomputed/working peak during backward)."""
    tokens = tokens_per_micro_batch(setup)
    mask = has_padding_mask(setup, setup.batch)
    span = attention_span(setup, setup.batch)
    per_layer = layer_bytes_per_token(arch, setup, span, mask) * tokens
    head = (
        head_saved_per_token(arch, setup) * tokens
        + shared_bytes(arch, setup, setup.batch)
        + autocast_weight_copies(arch, setup)
    )
    if setup.checkpointing:
        head += dense_mask_bytes(setup, setup.batch)  # the bool mask, an input of every layer
    if setup.offload_activations:
        # TRL's activation offloading moves saved tensors to CPU; one layer stays on GPU
        return head, per_layer
    if setup.checkpointing:
        # each layer keeps only its input; backward recomputes one layer at a time
        kept = arch.layers * setup.activation_bytes * arch.hidden * tokens + head
        return kept, per_layer
    first = per_layer
    if setup.method != "full":  # the frozen embedding's output needs no gradient
        first = layer_bytes_per_token(arch, setup, span, mask, input_grad=False) * tokens
    return first + (arch.layers - 1) * per_layer + head, 0
