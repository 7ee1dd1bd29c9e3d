"""Known cards: memory, bfloat16 support and dense bf16 throughput.

Serves `hardware.gpu` in recipes, the bf16 lint rule and `recipe plan`. Memory is what
the card reports (GiB); bf16 TFLOPS are dense tensor-core figures from the vendors' data
sheets (no sparsity), used only for rough time estimates.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Card:
    name: str
    memory_gib: float
    bf16: bool
    bf16_tflops: float  # dense; fp16 tensor-core figure where bf16 is unsupported
    label: str


CARDS: dict[str, Card] = {
    card.name: card
    for card in (
        Card("cpu", 0.0, True, 0.0, "CPU only (no GPU)"),
        Card("rtx-3060", 12.0, True, 51.0, "NVIDIA GeForce RTX 3060 12 GB"),
        Card("rtx-3070", 8.0, True, 81.0, "NVIDIA GeForce RTX 3070 8 GB"),
        Card("rtx-3080", 10.0, True, 119.0, "NVIDIA GeForce RTX 3080 10 GB"),
        Card("rtx-3090", 24.0, True, 142.0, "NVIDIA GeForce RTX 3090 24 GB"),
        Card("rtx-4060-ti-16gb", 16.0, True, 88.0, "NVIDIA GeForce RTX 4060 Ti 16 GB"),
        Card("rtx-4070", 12.0, True, 117.0, "NVIDIA GeForce RTX 4070 12 GB"),
        Card("rtx-4080", 16.0, True, 195.0, "NVIDIA GeForce RTX 4080 16 GB"),
        Card("rtx-4090", 24.0, True, 330.0, "NVIDIA GeForce RTX 4090 24 GB"),
        Card("rtx-5090", 32.0, True, 419.0, "NVIDIA GeForce RTX 5090 32 GB"),
        Card("t4", 15.0, False, 65.0, "NVIDIA T4 16 GB (15 GiB usable)"),
        Card("v100-16gb", 16.0, False, 125.0, "NVIDIA V100 16 GB"),
        Card("v100-32gb", 32.0, False, 125.0, "NVIDIA V100 32 GB"),
        Card("a10g", 22.0, True, 125.0, "NVIDIA A10G 24 GB (22 GiB usable)"),
        Card("l4", 22.0, True, 121.0, "NVIDIA L4 24 GB (22 GiB usable)"),
        Card("l40s", 44.5, True, 362.0, "NVIDIA L40S 48 GB"),
        Card("a100-40gb", 40.0, True, 312.0, "NVIDIA A100 40 GB"),
        Card("a100-80gb", 80.0, True, 312.0, "NVIDIA A100 80 GB"),
        Card("h100-80gb", 79.6, True, 989.0, "NVIDIA H100 80 GB"),
        Card("h200", 139.8, True, 989.0, "NVIDIA H200 141 GB"),
    )
}


def card_for(hardware: dict | None) -> Card | None:
    """The card a recipe's `hardware` block describes, or None when it names none.

    `memory_gib` and `bf16` override the table (and describe cards not in it).
    """
    if not hardware:
        return None
    base = CARDS.get(hardware.get("gpu", ""))
    memory = hardware.get("memory_gib", base.memory_gib if base else None)
    if memory is None:
        return None
    bf16 = hardware.get("bf16", base.bf16 if base else True)
    return Card(
        name=base.name if base else "custom",
        memory_gib=float(memory),
        bf16=bool(bf16),
        bf16_tflops=base.bf16_tflops if base else 0.0,
        label=base.label if base else f"a {memory:g} GiB card",
    )
