"""Changes that would make a recipe fit its card, each with its new estimate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from runner.plan.architecture import LAYER_LINEARS, Architecture
from runner.plan.estimate import Estimate, estimate_memory
from runner.plan.setup import Setup
from runner.plan.states import ADAM_32BIT_OPTIMS

HEADROOM = 0.10  # a plan under 10% headroom gets advice and a lint warning


@dataclass(frozen=True)
class Change:
    """One change to the recipe: what it does, the --set overrides, the new estimate."""

    description: str
    overrides: tuple[tuple[str, object], ...]
    estimate: Estimate

    def set_args(self) -> str:
        return " ".join(f"--set {key}={_yaml(value)}" for key, value in self.overrides)


def _yaml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# A proposed change: its description, the --set overrides, the setup it leads to.
Candidate = tuple[str, dict, Setup]

# LoRA r=16 on every linear layer: in the estimator's terms, and as recipe overrides.
_LORA_SETUP = {"lora_r": 16, "lora_targets": LAYER_LINEARS, "lora_dropout": 0.05}
_LORA_OVERRIDES = {"lora.r": 16, "lora.target_modules": "all-linear", "lora.lora_dropout": 0.05}


def candidate_changes(arch: Architecture, setup: Setup) -> list[Candidate]:
    """Changes worth trying for this setup, cheapest in quality/speed first."""
    return [
        *_attention_changes(setup),
        *_checkpointing_changes(setup),
        *_optimizer_changes(setup),
        *_batch_changes(setup),
        *_length_changes(setup),
        *_lora_changes(setup),
        *_qlora_changes(setup),
        *_launch_changes(setup),
    ]


def _attention_changes(setup: Setup) -> Iterator[Candidate]:
    if setup.attn == "eager":
        yield (
            "sdpa attention instead of eager",
            {"model.attn_implementation": "sdpa"},
            setup.replace(attn="sdpa"),
        )


def _checkpointing_changes(setup: Setup) -> Iterator[Candidate]:
    if not setup.checkpointing:
        yield (
            "turn activation checkpointing on (about 30% slower)",
            {"training.activation_checkpointing": True},
            setup.replace(checkpointing=True),
        )


def _optimizer_changes(setup: Setup) -> Iterator[Candidate]:
    if setup.optim in ADAM_32BIT_OPTIMS:
        yield (
            "8-bit AdamW (bitsandbytes)",
            {"training.optim": "adamw_bnb_8bit"},
            setup.replace(optim="adamw_bnb_8bit"),
        )


def _batch_changes(setup: Setup) -> Iterator[Candidate]:
    """Halve the micro-batch down to 1, doubling accumulation to keep the effective batch."""
    batch, accum = setup.batch, setup.grad_accum
    while batch > 1:
        batch, accum = batch // 2, accum * 2
        yield (
            f"batch {batch} x accumulation {accum} (same effective batch)",
            {
                "training.per_device_train_batch_size": batch,
                "training.gradient_accumulation_steps": accum,
            },
            setup.replace(batch=batch, grad_accum=accum),
        )


def _length_changes(setup: Setup) -> Iterator[Candidate]:
    """Halve max_length down to 256."""
    length = setup.seq
    while length > 256:
        length //= 2
        yield (
            f"max_length {length} (longer examples are truncated)",
            {"training.max_length": length},
            setup.replace(seq=length),
        )


def _lora_changes(setup: Setup) -> Iterator[Candidate]:
    if setup.method == "full":
        yield (
            "LoRA r=16 on all linear layers instead of full fine-tuning",
            {"method": "lora", **_LORA_OVERRIDES},
            setup.replace(method="lora", **_LORA_SETUP),
        )


def _qlora_changes(setup: Setup) -> Iterator[Candidate]:
    """A 4-bit base; a LoRA recipe keeps its adapters, a full one gets LoRA r=16."""
    if setup.method not in ("full", "lora"):
        return
    adds_lora = setup.method == "full"
    yield (
        "QLoRA (4-bit NF4 base) r=16 on all linear layers",
        {
            "method": "qlora",
            "quantization.load_in_4bit": True,
            "quantization.bnb_4bit_quant_type": "nf4",
            "quantization.bnb_4bit_use_double_quant": True,
            **(_LORA_OVERRIDES if adds_lora else {}),
        },
        setup.replace(
            method="qlora",
            quant_type="nf4",
            double_quant=True,
            **(_LORA_SETUP if adds_lora else {}),
        ),
    )


def _launch_changes(setup: Setup) -> Iterator[Candidate]:
    if setup.processes > 1 and setup.strategy in ("single", "ddp"):
        yield (
            "DeepSpeed ZeRO-3 across the GPUs",
            {"launch.strategy": "deepspeed", "launch.deepspeed.zero_stage": 3},
            setup.replace(strategy="deepspeed", zero_stage=3),
        )


def fitting_changes(arch: Architecture, setup: Setup, capacity: int) -> list[Change]:
    """The candidate changes with their estimates; those that fit with headroom first.

    Of each kind (batch, length) only the mildest change that fits is kept.
    """
    changes: list[Change] = []
    seen_kinds: set[str] = set()
    for description, overrides, changed in candidate_changes(arch, setup):
        estimate = estimate_memory(arch, changed)
        kind = description.split(" ")[0]
        fits = estimate.total <= capacity * (1 - HEADROOM)
        if kind in ("batch", "max_length"):
            if kind in seen_kinds or not fits:
                continue
            seen_kinds.add(kind)
        changes.append(Change(description, tuple(overrides.items()), estimate))
    limit = capacity * (1 - HEADROOM)
    if not any(c.estimate.total <= limit for c in changes):
        combined = combined_change(arch, setup, capacity)
        if combined is not None:
            changes.insert(0, combined)
    return sorted(changes, key=lambda c: c.estimate.total > limit)


# Changes that alter what is trained (adapters, truncation) come after the others.
QUALITY_KINDS = ("LoRA", "QLoRA", "max_length")


def combined_change(arch: Architecture, setup: Setup, capacity: int) -> Change | None:
    """When no single change fits: changes applied one after another until it fits.

    Each round applies the candidate that saves most, among those that leave what is
    trained alone (checkpointing, 8-bit AdamW, smaller batch, sdpa, ZeRO); changes of
    method or length only once those are used up. None when nothing combined fits.
    """
    limit = capacity * (1 - HEADROOM)
    current, overrides, steps, used = setup, {}, [], set()
    for _ in range(8):
        options = [
            (estimate_memory(arch, changed), description, extra, changed)
            for description, extra, changed in candidate_changes(arch, current)
            if description.split(" ")[0] not in used
        ]
        gentle = [o for o in options if o[1].split(" ")[0] not in QUALITY_KINDS]
        pool = gentle or options
        if not pool:
            return None
        estimate, description, extra, changed = min(pool, key=lambda o: o[0].total)
        used.add(description.split(" ")[0])
        current, overrides = changed, {**overrides, **extra}
        steps.append(description)
        if estimate.total <= limit:
            return Change(" + ".join(steps), tuple(overrides.items()), estimate)
    return None
