"""Peak training memory per GPU, term by term.

    peak = weights + adapters + gradients + optimizer states        (static)
         + max(forward/backward peak, optimizer step, evaluation)    (dynamic)
         + CUDA context + allocator overhead

The forward/backward peak is reached when backward starts: every saved activation is
alive and the LM head's backward scratch is allocated. Gradients are alive then only
with gradient accumulation (the Trainer frees them after each optimizer step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.plan.activations import (
    LM_TOKEN_CHUNK,
    LM_VOCAB_CHUNK,
    activation_bytes,
    backward_working_per_token,
    has_padding_mask,
    head_saved_per_token,
    layer_bytes_per_token,
    lm_head_backward_transient,
    tokens_per_micro_batch,
)
from runner.plan.architecture import Architecture
from runner.plan.setup import DTYPE_BYTES, Setup
from runner.plan.states import (
    ADAM_32BIT_OPTIMS,
    adapter_bytes,
    gradient_bytes,
    optimizer_bytes,
    optimizer_step_transient,
    trainable_params,
    weight_bytes,
)

GIB = 1024**3
MIB = 1024**2
# CUDA context + cuBLAS/cuDNN handles outside torch's allocator: nvidia-smi shows
# 0.4-0.6 GiB for an idle process holding a context on Ampere/Hopper with CUDA 12/13.
CUDA_CONTEXT_BYTES = 512 * MIB
# Caching-allocator slack (reserved minus allocated at peak): block rounding and
# fragmentation; PyTorch rounds large blocks to 2 MiB segments. 5% of the peak is the
# usual gap on training loops like this one.
ALLOCATOR_FRACTION = 0.05


@dataclass(frozen=True)
class Term:
    key: str
    label: str
    bytes: int
    note: str = ""


@dataclass(frozen=True)
class Estimate:
    """An estimate of peak memory on one GPU, with the terms that add up to it."""

    terms: tuple[Term, ...]
    trainable_params: int
    total_params: int
    phase: str  # which phase sets the peak: backward | optimizer step | evaluation
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(t.bytes for t in self.terms)

    @property
    def allocated(self) -> int:
        """Peak of torch.cuda.max_memory_allocated (terms minus allocator and context)."""
        return sum(t.bytes for t in self.terms if t.key not in ("allocator", "cuda_context"))

    paged: int = 0  # optimizer states in CUDA unified memory (bitsandbytes paged_*)

    @property
    def reserved(self) -> int:
        """Peak of torch.cuda.max_memory_reserved: all but the CUDA context and the paged
        optimizer states, which live outside torch's allocator (nvidia-smi sees them)."""
        return sum(t.bytes for t in self.terms if t.key != "cuda_context") - self.paged

    def term(self, key: str) -> int:
        return sum(t.bytes for t in self.terms if t.key == key)


def _shards(setup: Setup) -> tuple[int, int, int]:
    """Divisors for (weights, gradients, optimizer states) under the launch strategy."""
    n = max(setup.processes, 1)
    if setup.strategy == "deepspeed":
        stage = setup.zero_stage
        return (n if stage >= 3 else 1, n if stage >= 2 else 1, n if stage >= 1 else 1)
    if setup.strategy == "fsdp":
        return n, n, n
    return 1, 1, 1


def estimate_memory(arch: Architecture, setup: Setup) -> Estimate:
    """Estimate peak training memory per GPU for `setup` on `arch`."""
    notes: list[str] = []
    w_shard, g_shard, o_shard = _shards(setup)
    weights = weight_bytes(arch, setup)
    adapters = adapter_bytes(arch, setup)
    grads = gradient_bytes(arch, setup)
    optim, paged = optimizer_bytes(arch, setup)
    n_trainable = trainable_params(arch, setup)

    gathered = 0
    if w_shard > 1:
        # the layer being computed is gathered whole (two with prefetch), and so is the
        # root unit (embedding, LM head), which stays gathered through forward and backward
        element = DTYPE_BYTES[setup.dtype]
        layer = arch.layer_params() * element
        root = (arch.embedding_params + arch.lm_head_params) * element
        gathered = 2 * layer + (root if setup.method == "full" else 0)
        notes.append(f"{setup.strategy}: weights sharded over {setup.processes} GPUs")
    master = 0
    if setup.strategy == "deepspeed" and setup.method == "full" and setup.dtype != "float32":
        master = n_trainable * 4  # DeepSpeed's bf16/fp16 optimizer keeps fp32 master weights
        if setup.optim in ADAM_32BIT_OPTIMS:
            optim = n_trainable * 8  # and its Adam moments in fp32
    if setup.offload_optimizer:
        optim, master, paged = 0, 0, 0
        notes.append("optimizer states offloaded to CPU memory")
    if setup.offload_params:
        weights = 0
    ddp_buckets = grads if setup.strategy == "ddp" and setup.processes > 1 else 0

    weights_term = weights // w_shard + gathered
    grads_term = grads // g_shard
    optim_term = (optim + master) // o_shard

    kept, recompute = activation_bytes(arch, setup)
    tokens = tokens_per_micro_batch(setup)
    lm_head = lm_head_backward_transient(arch, setup, tokens)
    working = backward_working_per_token(arch, setup) * tokens
    if setup.method == "qlora":
        # bitsandbytes dequantizes each 4-bit weight to the compute dtype to multiply
        largest = max(i * o for i, o in arch.linear_shapes().values())
        working += largest * setup.activation_bytes
    grads_at_backward = grads_term if setup.grad_accum > 1 else 0
    backward_peak = grads_at_backward + kept + max(lm_head, recompute + working)
    step_peak = grads_term + optimizer_step_transient(arch, setup) // o_shard
    eval_peak = 0
    if setup.evaluates:
        eval_tokens = tokens_per_micro_batch(setup, setup.eval_batch)
        mask = has_padding_mask(setup, setup.eval_batch)
        eval_setup = setup.replace(batch=setup.eval_batch)
        tile = min(eval_tokens, LM_TOKEN_CHUNK) * min(arch.vocab, LM_VOCAB_CHUNK)
        eval_peak = (
            layer_bytes_per_token(arch, eval_setup, setup.seq, mask) * eval_tokens
            + head_saved_per_token(arch, eval_setup) * eval_tokens
            + tile * setup.activation_bytes  # one logits tile of the fused LM head
        )
    dynamic = max(backward_peak, step_peak, eval_peak)
    phase = (
        "backward"
        if dynamic == backward_peak
        else ("optimizer step" if dynamic == step_peak else "evaluation")
    )

    if setup.checkpointing:
        act_note = "layer inputs only (activation checkpointing); one layer recomputed"
    else:
        act_note = "every layer's saved tensors (no checkpointing)"
    if setup.attn == "eager":
        act_note += "; eager attention keeps seq x seq probabilities"
    terms = [
        Term("weights", "weights", weights_term, _weights_note(setup)),
        Term("adapters", "LoRA adapters", adapters, f"r={setup.lora_r}") if adapters else None,
        Term(
            "gradients",
            "gradients",
            grads_term if phase != "backward" else grads_at_backward,
            f"{n_trainable:,} trainable parameters"
            + (
                "; freed after each step, not yet alive when backward starts"
                if phase == "backward" and not grads_at_backward
                else ""
            ),
        ),
        Term("optimizer", "optimizer states", optim_term, _optim_note(setup, paged)),
        Term("ddp_buckets", "DDP gradient buckets", ddp_buckets) if ddp_buckets else None,
    ]
    if phase == "backward":
        head_sets_peak = lm_head > recompute + working
        if not head_sets_peak:
            act_note += f"; the LM head's backward scratch ({lm_head / GIB:.2f} GiB) fits inside"
        terms.append(
            Term(
                "activations",
                "activations",
                kept + (0 if head_sets_peak else recompute + working),
                act_note,
            )
        )
        if head_sets_peak:
            terms.append(
                Term(
                    "lm_head",
                    "LM head + loss (backward scratch)",
                    lm_head,
                    "TRL fused log-prob head: fp32 gradient accumulators + one 4096x32768 tile",
                )
            )
    elif phase == "optimizer step":
        terms.append(Term("optimizer_step", "optimizer step scratch", step_peak - grads_term))
    else:
        terms.append(
            Term(
                "eval",
                "evaluation batch",
                eval_peak,
                f"per_device_eval_batch_size={setup.eval_batch}, no gradients",
            )
        )
    allocated = sum(t.bytes for t in terms if t is not None)
    terms.append(
        Term(
            "allocator",
            "allocator overhead",
            int(allocated * ALLOCATOR_FRACTION),
            "5% caching-allocator slack",
        )
    )
    terms.append(
        Term("cuda_context", "CUDA context", CUDA_CONTEXT_BYTES, "outside torch's allocator")
    )
    return Estimate(
        terms=tuple(t for t in terms if t is not None),
        trainable_params=n_trainable,
        total_params=arch.total_params(),
        phase=phase,
        notes=tuple(notes),
        paged=paged // o_shard,
    )


def _weights_note(setup: Setup) -> str:
    if setup.method == "qlora":
        dq = " + double quantization" if setup.double_quant else ""
        return f"4-bit {setup.quant_type}{dq}; embeddings, norms and LM head in {setup.dtype}"
    return setup.dtype


def _optim_note(setup: Setup, paged: int) -> str:
    note = setup.optim
    if setup.strategy == "deepspeed" and setup.method == "full" and setup.dtype != "float32":
        note += " (DeepSpeed: fp32 master weights + fp32 moments)"
    if setup.processes > 1 and setup.strategy in ("deepspeed", "fsdp"):
        note += f", sharded over {setup.processes} GPUs"
    if paged:
        note += f" ({paged / GIB:.2f} GiB paged: may spill to CPU RAM)"
    return note
