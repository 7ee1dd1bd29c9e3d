"""Held-out exact-match accuracy: greedy generation on eval rows, compared to the reference.

Asked for with `data.exact_match` in the recipe (short-answer tasks such as the demo);
measured before and after training, into the summary and run.json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.data.templates import prompt_token_ids, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def exact_match(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    resolved: dict[str, Any],
    examples: list[dict[str, Any]],
    stop_ids: list[int],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 64,
) -> dict[str, Any]:
    """{"accuracy", "correct", "total", "samples"} over instruction-shaped examples.

    Prompts are rendered with the same `render_prompt` as training; generation is greedy
    and stops at the end-of-turn token; the answer matches when it equals the reference
    after stripping surrounding whitespace.
    """
    import torch

    rows = [e for e in examples if "response" in e]
    was_training = model.training
    model.eval()
    correct, samples = 0, []
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        prompts = [
            prompt_token_ids(
                resolved,
                tokenizer,
                render_prompt(resolved, tokenizer, e["instruction"], e["input"]),
            )
            for e in batch
        ]
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_ids,
                pad_token_id=pad_id,
            )
        for example, ids in zip(batch, out[:, width:].tolist(), strict=True):
            answer = tokenizer.decode(_until_stop(ids, stop_ids), skip_special_tokens=True)
            hit = answer.strip() == example["response"].strip()
            correct += hit
            if len(samples) < 5:
                samples.append(
                    {
                        "prompt": example["instruction"],
                        "expected": example["response"],
                        "got": answer,
                    }
                )
    if was_training:
        model.train()
    total = len(rows)
    return {
        "accuracy": correct / total if total else None,
        "correct": correct,
        "total": total,
        "samples": samples,
    }


def _until_stop(ids: list[int], stop_ids: list[int]) -> list[int]:
    for index, token in enumerate(ids):
        if token in stop_ids:
            return ids[:index]
    return ids
