"""`recipe run --cap-memory`: hold each training process to the recipe's card.

On a GPU bigger than the card a recipe names (`hardware.gpu`, runner.recipe.hardware),
`torch.cuda.set_per_process_memory_fraction` limits torch's allocator to what that card
would give it, so a run that fits here fits there: an out-of-memory error comes at the
same point it would on the smaller card. The allocator gets the card's memory less the
CUDA context the plan counts (runner.plan.estimate.CUDA_CONTEXT_BYTES), since the
context lives outside the allocator on the real card too.

`plan_memory_cap` is pure (the card and the device's memory give the cap);
`apply_memory_cap` is the training process's one call into torch, before the model
loads. On the CPU, or when the card is as big as the device or bigger, nothing is capped
and the reason says so. The cap is recorded in run.json's `memory.cap`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from runner.plan.estimate import CUDA_CONTEXT_BYTES
from runner.recipe.hardware import Card

GIB = 1024**3


@dataclass(frozen=True)
class MemoryCap:
    """What --cap-memory did in one training process."""

    applied: bool
    reason: str  # one line for the user
    card: str | None = None
    card_bytes: int | None = None
    cap_bytes: int | None = None  # what torch's allocator may hold: card less CUDA context
    device_bytes: int | None = None
    fraction: float | None = None  # set_per_process_memory_fraction's argument

    def record(self) -> dict[str, Any]:
        """The cap as run.json's memory.cap holds it."""
        return asdict(self)


def cap_fraction(cap_bytes: int, device_bytes: int) -> float | None:
    """The fraction of the device's memory that leaves torch's allocator `cap_bytes`;
    None when the device has no more than that (there is nothing to hold back)."""
    if device_bytes <= 0 or cap_bytes >= device_bytes:
        return None
    return cap_bytes / device_bytes


def plan_memory_cap(card: Card | None, device_bytes: int | None) -> MemoryCap:
    """The cap for a process on a device of `device_bytes` (None: the CPU) training a
    recipe made for `card`."""
    if device_bytes is None:
        return MemoryCap(
            False, "--cap-memory does nothing on the CPU: there is no CUDA memory to cap"
        )
    if card is None or card.name == "cpu" or card.memory_gib <= 0:
        return MemoryCap(
            False, "--cap-memory does nothing: the recipe's hardware names no GPU card"
        )
    card_bytes = int(card.memory_gib * GIB)
    cap_bytes = max(card_bytes - CUDA_CONTEXT_BYTES, 0)
    fraction = cap_fraction(cap_bytes, device_bytes)
    facts = {
        "card": card.name,
        "card_bytes": card_bytes,
        "cap_bytes": cap_bytes,
        "device_bytes": device_bytes,
    }
    if fraction is None:
        return MemoryCap(
            False,
            f"--cap-memory does nothing: this GPU ({device_bytes / GIB:.1f} GiB) is no bigger "
            f"than {card.label}",
            **facts,
        )
    return MemoryCap(
        True,
        f"memory capped to {card.label}: torch may allocate {cap_bytes / GIB:.2f} GiB of "
        f"this GPU's {device_bytes / GIB:.1f} GiB (the card less the CUDA context)",
        fraction=round(fraction, 6),
        **facts,
    )


def apply_memory_cap(card: Card | None, device: str) -> MemoryCap:
    """Cap this process's CUDA memory on `device` ("cuda:N" or "cpu") to `card`; call it
    before anything is allocated there."""
    if not device.startswith("cuda"):
        return plan_memory_cap(card, None)
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    cap = plan_memory_cap(card, total)
    if cap.applied:
        # the unrounded fraction: the cap in bytes is then exact
        torch.cuda.set_per_process_memory_fraction(cap.cap_bytes / total, device)
    return cap
