"""Time per epoch from a token count, the card's bf16 throughput and a utilisation.

FLOPs per trained token: 2N forward + 4N backward for full fine-tuning (6N), 2N + 2N for
LoRA/QLoRA (no weight gradients of the frozen base), plus 2N with activation checkpointing
(the forward runs twice), plus causal attention (6 * layers * seq * q_dim, fwd + bwd).
N counts every weight that takes part in a matrix multiply, the LM head included.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.plan.architecture import Architecture
from runner.plan.setup import Setup

# Assumed model-FLOPs utilisation of SFTTrainer on one consumer/datacenter GPU: an
# assumption, not a measurement, until bench/gpu_memory.py has run on a GPU.
UTILISATION = {"full": 0.40, "lora": 0.35, "qlora": 0.25}


@dataclass(frozen=True)
class EpochTime:
    tokens: int
    flops_per_token: float
    tflops: float
    utilisation: float

    @property
    def seconds(self) -> float:
        if self.tflops <= 0:
            return float("inf")
        return self.tokens * self.flops_per_token / (self.tflops * 1e12 * self.utilisation)


def flops_per_token(arch: Architecture, setup: Setup) -> float:
    n = arch.compute_params()
    passes = 6 if setup.method == "full" else 4
    if setup.checkpointing:
        passes += 2
    attention = 6 * arch.layers * setup.seq * arch.q_dim
    return passes * n + attention


def epoch_time(arch: Architecture, setup: Setup, tokens: int, tflops: float) -> EpochTime:
    """Time for one pass over `tokens` training tokens on all `setup.processes` GPUs."""
    per_gpu_tokens = tokens // max(setup.processes, 1)
    return EpochTime(
        per_gpu_tokens, flops_per_token(arch, setup), tflops, UTILISATION[setup.method]
    )
