"""Packing is correct: a packed batch trains exactly what its examples trained one by one.

`training.packing: true` hands TRL's best-fit-decreasing packing and its padding-free
collator the runner's tokenized rows (runner.expand.training builds the SFTConfig). On
the CPU, transformers 5.23 turns the packed `position_ids` (0 at each example's start)
into a block-diagonal causal mask for sdpa and eager, so no example sees another. These
tests prove it on a tiny Llama (GQA, so the repeated k/v path runs too):

- the summed loss and every gradient of one packed batch equal those of the same
  examples run one by one (float32; relative tolerance 1e-5, absolute 1e-6 on gradients);
- the loss masks survive packing: the packed labels are the examples' own labels
  (completion-only, or assistant-only), end to end, with only each example's first
  token masked (no token is trained to follow another example);
- perturbing one example's tokens leaves every other example's logits unchanged; the
  same check on a deliberately leaky batch (the packed row without its position_ids:
  one long causal sequence) sees the change, so the check can fail.
"""

from __future__ import annotations

import itertools
import random

import pytest
from conftest import save_tiny_llama, settings_of, tiny_recipe, write_recipe

ATTENTION = ["sdpa", "eager"]


def tokenized_rows(mask: str = "completion_mask", n: int = 6, seed: int = 0) -> list[dict]:
    """Rows as the runner prepares them (runner.data.store.tokenize): input ids and
    the mask TRL turns into labels, of varied lengths (some short, some long)."""
    rng = random.Random(seed)
    rows = []
    for index in range(n):
        prompt, answer = rng.randint(3, 14), rng.randint(2, 9)
        ids = [rng.randint(3, 250) for _ in range(prompt + answer)]
        if mask == "assistant_masks":  # two turns: only the assistant's tokens trained
            bits = [0] * prompt + [1] * answer
            bits[prompt // 2 : prompt // 2 + 2] = [1, 1] if index % 2 else [0, 0]
        else:
            bits = [0] * prompt + [1] * answer
        rows.append({"input_ids": ids, mask: bits})
    return rows


def trainers(tmp_path, tiny_model_dir, attn: str, rows: list[dict]):
    """(packed trainer, one-by-one trainer) over the same rows, each built from the
    runner's SFTConfig arguments for the recipe with and without packing."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from runner.expand.loss import LossSetup
    from runner.expand.placement import Placement
    from runner.expand.tokenizer import load_tokenizer
    from runner.expand.training import run_sft_kwargs

    built = []
    for packing in (True, False):
        recipe = tiny_recipe(tiny_model_dir, packing=packing, per_device_train_batch_size=1)
        recipe["model"]["attn_implementation"] = attn
        recipe["data"].pop("eval")
        recipe["training"]["eval_strategy"] = "no"
        recipe["output_dir"] = str(tmp_path / f"out-{packing}")
        settings = settings_of(write_recipe(tmp_path / f"packed-{packing}.yaml", recipe))
        tokenizer = load_tokenizer(settings)
        shape = "instruction" if "completion_mask" in rows[0] else "messages"
        loss = LossSetup(shape, tokenizer.eos_token)
        kwargs = run_sft_kwargs(settings, Placement(cpu=True), loss, has_eval=False)
        kwargs["shuffle_dataset"] = False
        model = AutoModelForCausalLM.from_pretrained(
            tiny_model_dir, dtype=torch.float32, attn_implementation=attn
        )
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**kwargs),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        built.append(trainer)
    return built


def summed_loss(trainer, batch):
    """The batch's loss summed over its trained tokens, as SFTTrainer computes it."""
    loss = trainer.compute_loss(trainer.model, dict(batch))
    return loss * (batch["labels"][:, 1:] != -100).sum()


@pytest.fixture(scope="module")
def gqa_model_dir(tmp_path_factory):
    """A tiny Llama with grouped-query attention (4 heads, 2 key/value heads)."""
    return save_tiny_llama(tmp_path_factory.mktemp("gqa-llama"), kv_heads=2)


@pytest.mark.parametrize("attn", ATTENTION)
def test_a_packed_batch_has_the_loss_and_gradients_of_its_examples_one_by_one(
    tmp_path, gqa_model_dir, attn
):
    import torch

    packed, single = trainers(tmp_path, gqa_model_dir, attn, tokenized_rows())
    assert len(packed.train_dataset) < len(single.train_dataset)  # rows were packed
    batch = packed.data_collator(list(packed.train_dataset))  # every packed row, flattened
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    assert int((batch["position_ids"] == 0).sum()) == len(single.train_dataset)

    packed.model.zero_grad()
    packed_loss = summed_loss(packed, batch)
    packed_loss.backward()
    single.model.zero_grad()
    single_loss = sum(
        summed_loss(single, single.data_collator([row])) for row in single.train_dataset
    )
    single_loss.backward()

    torch.testing.assert_close(packed_loss, single_loss, rtol=1e-5, atol=1e-6)
    grads = dict(single.model.named_parameters())
    for name, param in packed.model.named_parameters():
        torch.testing.assert_close(param.grad, grads[name].grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mask", ["completion_mask", "assistant_masks"])
def test_completion_and_assistant_masks_survive_packing(tmp_path, gqa_model_dir, mask):
    packed, single = trainers(tmp_path, gqa_model_dir, "sdpa", tokenized_rows(mask))
    batch = packed.data_collator(list(packed.train_dataset))
    labels, positions = batch["labels"][0].tolist(), batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    own = {tuple(row["input_ids"]): row["labels"] for row in single.train_dataset}
    ids = batch["input_ids"][0].tolist()
    for start, end in itertools.pairwise(starts):
        expected = own[tuple(ids[start:end])]  # this example, as trained unpacked
        assert labels[start] == -100  # its first token never learned from the one before
        assert labels[start + 1 : end] == expected[1:]
    assert sum(label != -100 for label in labels) == sum(
        sum(label != -100 for label in labels[1:]) for labels in own.values()
    )


def logits_of(model, ids, positions=None):
    import torch

    with torch.no_grad():
        kwargs = {"position_ids": positions} if positions is not None else {}
        return model(input_ids=ids, **kwargs).logits[0]


@pytest.mark.parametrize("attn", ATTENTION)
def test_no_example_sees_another_and_the_check_catches_a_leaky_batch(tmp_path, gqa_model_dir, attn):
    import torch

    packed, _ = trainers(tmp_path, gqa_model_dir, attn, tokenized_rows())
    batch = packed.data_collator(list(packed.train_dataset))
    ids, positions = batch["input_ids"], batch["position_ids"]
    starts = [*(positions[0] == 0).nonzero().flatten().tolist(), ids.shape[1]]
    first, rest = slice(starts[0], starts[1]), slice(starts[1], None)
    model = packed.model
    model.eval()

    perturbed = ids.clone()
    perturbed[0, first] = (perturbed[0, first] + 7) % 250 + 3  # only the first example
    before, after = logits_of(model, ids, positions), logits_of(model, perturbed, positions)
    assert not torch.allclose(before[first], after[first])  # it did change the example
    torch.testing.assert_close(before[rest], after[rest], rtol=0, atol=1e-6)

    # each example's logits are what it gets alone
    for start, end in itertools.pairwise(starts):
        alone = logits_of(model, ids[:, start:end])
        torch.testing.assert_close(before[start:end], alone, rtol=1e-5, atol=1e-5)

    # the control: the same row as one long sequence lets later examples see the first
    leaky_before, leaky_after = logits_of(model, ids), logits_of(model, perturbed)
    assert not torch.allclose(leaky_before[rest], leaky_after[rest], atol=1e-6)
