"""`recipe plan` for packed batches and the throughput options, against what autograd
really keeps on the CPU, and the plan's terms for each option.

A packed micro-batch (TRL's padding-free collator: one flattened row, position ids
restarting at 0 for each example, no attention mask) under sdpa or eager gets a dense
block-diagonal mask over the whole row from transformers 5.23: the attention keeps
scores over every token of the micro-batch, not max_length. The estimate must follow
that within 10%, like the padded cases in tests/test_plan_calibration.py.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


from saved_tensors import TINY, saved_bytes

from runner.plan.activations import activation_bytes, attention_span
from runner.plan.architecture import architecture_from_config
from runner.plan.estimate import estimate_memory
from runner.plan.setup import Setup
from runner.recipe.models import KNOWN_CONFIGS

LLAMA32 = architecture_from_config(KNOWN_CONFIGS["meta-llama/Llama-3.2-1B-Instruct"])


def packed_batch(vocab: int, rows: int, seq: int):
    """`rows` packed rows of `seq` tokens, each holding two examples, flattened by TRL's
    padding-free collator into one row with restarting position ids."""
    import torch

    torch.manual_seed(1)
    ids = torch.randint(3, vocab, (1, rows * seq))
    half = seq // 2 + 3
    one_row = list(range(half)) + list(range(seq - half))
    positions = torch.tensor([one_row * rows])
    labels = ids.clone()
    labels[positions == 0] = -100
    return ids, positions, labels


def measure_packed_saved(model, vocab: int, rows: int, seq: int, checkpointing: bool) -> int:
    """Bytes autograd keeps for backward over one packed forward with TRL's fused head."""
    ids, positions, labels = packed_batch(vocab, rows, seq)

    def forward():
        out = model(input_ids=ids, position_ids=positions, labels=labels, fused_lm_head=True)
        return -out.log_probs.sum()

    return saved_bytes(model, forward, checkpointing=checkpointing)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["no-checkpointing", "checkpointing"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_activations_within_ten_percent_of_saved_tensors(attn, checkpointing):
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**TINY)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.train()
    rows, seq = 2, 64
    arch = architecture_from_config(TINY)
    setup = Setup(
        method="full",
        dtype="bfloat16",
        batch=rows,
        seq=seq,
        packing=True,
        padding_free=True,
        attn=attn,
        checkpointing=checkpointing,
    )
    measured = measure_packed_saved(model, arch.vocab, rows, seq, checkpointing)
    estimate, _ = activation_bytes(arch, setup)
    assert estimate == pytest.approx(measured, rel=0.10), (estimate, measured)


def test_a_packed_batch_under_sdpa_attends_over_the_whole_micro_batch():
    packed = Setup(batch=4, seq=1024, packing=True, padding_free=True, attn="sdpa")
    padded = Setup(batch=4, seq=1024)
    flash = packed.replace(attn="flash_attention_2")
    assert attention_span(padded, 4) == 1024
    assert attention_span(packed, 4) == 4096  # one flattened row: scores over all of it
    assert attention_span(flash, 4) == 1024  # varlen kernel: each example on its own
    sdpa, eager_free = (
        estimate_memory(LLAMA32, s.replace(checkpointing=False)) for s in (packed, flash)
    )
    assert sdpa.term("activations") > eager_free.term("activations")


def test_flash_attention_packing_drops_the_mask_memory():
    padded = estimate_memory(LLAMA32, Setup(batch=8, seq=2048, checkpointing=False))
    flash = estimate_memory(
        LLAMA32,
        Setup(
            batch=8,
            seq=2048,
            checkpointing=False,
            packing=True,
            padding_free=True,
            attn="flash_attention_2",
        ),
    )
    assert flash.total < padded.total


def test_liger_kernels_save_the_norms_float32_copies_and_the_silu_output():
    base = Setup(batch=4, seq=1024, checkpointing=False)
    liger = base.replace(liger=True)
    saved = activation_bytes(LLAMA32, base)[0] - activation_bytes(LLAMA32, liger)[0]
    tokens, a = 4 * 1024, 2
    per_layer = 2 * 4 * LLAMA32.hidden + a * LLAMA32.intermediate  # two norms' fp32 + SiLU
    final_norm = 4 * LLAMA32.hidden
    assert saved == tokens * (LLAMA32.layers * per_layer + final_norm)


def test_torch_compile_and_bucketing_leave_the_peak_as_planned():
    base = Setup(batch=4, seq=1024)
    for option in ({"compiled": True}, {"bucketing": True}):
        assert estimate_memory(LLAMA32, base.replace(**option)).total == (
            estimate_memory(LLAMA32, base).total
        )


def test_fused_adamw_has_no_foreach_scratch():
    fused = estimate_memory(LLAMA32, Setup(batch=1, optim="adamw_torch_fused"))
    foreach = estimate_memory(LLAMA32, Setup(batch=1, optim="adamw_torch"))
    assert fused.total <= foreach.total
