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
    attention_span,
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
    static = _static_states(arch, setup)
    peaks = _dynamic_peaks(arch, setup, static.gradients)
    terms = _static_terms(setup, static, peaks) + _peak_terms(setup, peaks)
    terms += _overhead_terms(sum(t.bytes for t in terms))
    return Estimate(
        terms=tuple(terms),
        trainable_params=static.trainable,
        total_params=arch.total_params(),
        phase=peaks.phase,
        notes=static.notes,
        paged=static.paged,
    )


@dataclass(frozen=True)
class _StaticStates:
    """Bytes per GPU alive through the whole step, once sharded by the launch strategy."""

    weights: int  # this GPU's shard plus the units gathered whole
    adapters: int
    gradients: int
    optimizer: int  # optimizer states plus DeepSpeed's fp32 master weights
    ddp_buckets: int
    paged: int  # the part of `optimizer` in CUDA unified memory
    paged_unsharded: int  # the same before sharding, as the optimizer's note gives it
    trainable: int  # trainable parameters (a count, not bytes)
    notes: tuple[str, ...]


def _static_states(arch: Architecture, setup: Setup) -> _StaticStates:
    """Weights, adapters, gradients and optimizer states per GPU under the launch strategy."""
    notes: list[str] = []
    w_shard, g_shard, o_shard = _shards(setup)
    weights = 0 if setup.offload_params else weight_bytes(arch, setup)
    gathered = 0
    if w_shard > 1:
        gathered = _gathered_weight_bytes(arch, setup)
        notes.append(f"{setup.strategy}: weights sharded over {setup.processes} GPUs")
    n_trainable = trainable_params(arch, setup)
    grads = gradient_bytes(arch, setup)
    optim, paged = _optimizer_state_bytes(arch, setup, n_trainable)
    if setup.offload_optimizer:
        notes.append("optimizer states offloaded to CPU memory")
    return _StaticStates(
        weights=weights // w_shard + gathered,
        adapters=adapter_bytes(arch, setup),
        gradients=grads // g_shard,
        optimizer=optim // o_shard,
        ddp_buckets=grads if setup.strategy == "ddp" and setup.processes > 1 else 0,
        paged=paged // o_shard,
        paged_unsharded=paged,
        trainable=n_trainable,
        notes=tuple(notes),
    )


def _gathered_weight_bytes(arch: Architecture, setup: Setup) -> int:
    """Weights held whole on each GPU although sharded: the layer being computed (two
    with prefetch), and the root unit (embedding, LM head), which stays gathered
    through forward and backward."""
    element = DTYPE_BYTES[setup.dtype]
    layer = arch.layer_params() * element
    root = (arch.embedding_params + arch.lm_head_params) * element
    return 2 * layer + (root if setup.method == "full" else 0)


def _optimizer_state_bytes(arch: Architecture, setup: Setup, n_trainable: int) -> tuple[int, int]:
    """(optimizer states + master weights, of which paged) before sharding, on the GPU."""
    if setup.offload_optimizer:
        return 0, 0
    optim, paged = optimizer_bytes(arch, setup)
    master = 0
    if setup.strategy == "deepspeed" and setup.method == "full" and setup.dtype != "float32":
        master = n_trainable * 4  # DeepSpeed's bf16/fp16 optimizer keeps fp32 master weights
        if setup.optim in ADAM_32BIT_OPTIMS:
            optim = n_trainable * 8  # and its Adam moments in fp32
    return optim + master, paged


@dataclass(frozen=True)
class _Peaks:
    """The dynamic memory of each phase of a step, on top of the static states."""

    kept: int  # activations saved for backward
    recompute: int  # one layer's activations recomputed under checkpointing
    working: int  # backward's working tensors
    lm_head: int  # the LM head's backward scratch
    gradients_at_backward: int  # gradients already alive when backward starts
    step_scratch: int  # the optimizer step's transient tensors
    backward: int
    step: int
    evaluation: int

    @property
    def phase(self) -> str:
        """The phase that sets the peak; ties go to backward, then the optimizer step."""
        peak = max(self.backward, self.step, self.evaluation)
        if peak == self.backward:
            return "backward"
        if peak == self.step:
            return "optimizer step"
        return "evaluation"

    @property
    def head_sets_backward_peak(self) -> bool:
        return self.lm_head > self.recompute + self.working


def _dynamic_peaks(arch: Architecture, setup: Setup, gradients: int) -> _Peaks:
    """Backward, optimizer step and evaluation peaks, given the gradients per GPU."""
    kept, recompute = activation_bytes(arch, setup)
    tokens = tokens_per_micro_batch(setup)
    lm_head = lm_head_backward_transient(arch, setup, tokens)
    working = _backward_working_bytes(arch, setup, tokens)
    # the Trainer frees gradients after each optimizer step: alive at backward only
    # while accumulating
    grads_at_backward = gradients if setup.grad_accum > 1 else 0
    step_scratch = optimizer_step_transient(arch, setup) // _shards(setup)[2]
    return _Peaks(
        kept=kept,
        recompute=recompute,
        working=working,
        lm_head=lm_head,
        gradients_at_backward=grads_at_backward,
        step_scratch=step_scratch,
        backward=grads_at_backward + kept + max(lm_head, recompute + working),
        step=gradients + step_scratch,
        evaluation=_evaluation_peak(arch, setup) if setup.evaluates else 0,
    )


def _backward_working_bytes(arch: Architecture, setup: Setup, tokens: int) -> int:
    working = backward_working_per_token(arch, setup) * tokens
    if setup.method == "qlora":
        # bitsandbytes dequantizes each 4-bit weight to the compute dtype to multiply
        largest = max(i * o for i, o in arch.linear_shapes().values())
        working += largest * setup.activation_bytes
    return working


def _evaluation_peak(arch: Architecture, setup: Setup) -> int:
    """One evaluation batch's forward, with no gradients."""
    eval_tokens = tokens_per_micro_batch(setup, setup.eval_batch)
    mask = has_padding_mask(setup, setup.eval_batch)
    span = attention_span(setup, setup.eval_batch)
    eval_setup = setup.replace(batch=setup.eval_batch)
    tile = min(eval_tokens, LM_TOKEN_CHUNK) * min(arch.vocab, LM_VOCAB_CHUNK)
    return (
        layer_bytes_per_token(arch, eval_setup, span, mask) * eval_tokens
        + head_saved_per_token(arch, eval_setup) * eval_tokens
        + tile * setup.activation_bytes  # one logits tile of the fused LM head
    )


def _static_terms(setup: Setup, static: _StaticStates, peaks: _Peaks) -> list[Term]:
    """Weights, adapters, gradients, optimizer states and DDP buckets, as they stand at
    the peak (gradients may not be alive yet when backward starts)."""
    at_backward = peaks.phase == "backward"
    grads_note = f"{static.trainable:,} trainable parameters"
    if at_backward and not peaks.gradients_at_backward:
        grads_note += "; freed after each step, not yet alive when backward starts"
    terms = [Term("weights", "weights", static.weights, _weights_note(setup))]
    if static.adapters:
        terms.append(Term("adapters", "LoRA adapters", static.adapters, f"r={setup.lora_r}"))
    terms.append(
        Term(
            "gradients",
            "gradients",
            peaks.gradients_at_backward if at_backward else static.gradients,
            grads_note,
        )
    )
    terms.append(
        Term(
            "optimizer",
            "optimizer states",
            static.optimizer,
            _optim_note(setup, static.paged_unsharded),
        )
    )
    if static.ddp_buckets:
        terms.append(Term("ddp_buckets", "DDP gradient buckets", static.ddp_buckets))
    return terms


def _peak_terms(setup: Setup, peaks: _Peaks) -> list[Term]:
    """The terms of the phase that sets the peak."""
    if peaks.phase == "optimizer step":
        return [Term("optimizer_step", "optimizer step scratch", peaks.step_scratch)]
    if peaks.phase == "evaluation":
        note = f"per_device_eval_batch_size={setup.eval_batch}, no gradients"
        return [Term("eval", "evaluation batch", peaks.evaluation, note)]
    return _backward_terms(setup, peaks)


def _backward_terms(setup: Setup, peaks: _Peaks) -> list[Term]:
    """Activations when backward starts, and the LM head's scratch when it is the larger."""
    note = _activations_note(setup)
    if peaks.head_sets_backward_peak:
        return [
            Term("activations", "activations", peaks.kept, note),
            Term(
                "lm_head",
                "LM head + loss (backward scratch)",
                peaks.lm_head,
                "TRL fused log-prob head: fp32 gradient accumulators + one 4096x32768 tile",
            ),
        ]
    note += f"; the LM head's backward scratch ({peaks.lm_head / GIB:.2f} GiB) fits inside"
    return [Term("activations", "activations", peaks.kept + peaks.recompute + peaks.working, note)]


def _overhead_terms(allocated: int) -> list[Term]:
    """Allocator slack on top of what torch allocates, and the CUDA context outside it."""
    return [
        Term(
            "allocator",
            "allocator overhead",
            int(allocated * ALLOCATOR_FRACTION),
            "5% caching-allocator slack",
        ),
        Term("cuda_context", "CUDA context", CUDA_CONTEXT_BYTES, "outside torch's allocator"),
    ]


def _activations_note(setup: Setup) -> str:
    if setup.checkpointing:
        note = "layer inputs only (activation checkpointing); one layer recomputed"
    else:
        note = "every layer's saved tensors (no checkpointing)"
    if setup.attn == "eager":
        note += "; eager attention keeps seq x seq probabilities"
    return note


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
