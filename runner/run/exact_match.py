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
    from runner.after.generate import Sampling, generate

    rows = [e for e in examples if "response" in e]
    prompts = [
        prompt_token_ids(
            resolved, tokenizer, render_prompt(resolved, tokenizer, e["instruction"], e["input"])
        )
        for e in rows
    ]
    completions = generate(
        model,
        tokenizer,
        prompts,
        Sampling(max_new_tokens=max_new_tokens),
        stop_ids,
        batch_size=batch_size,
    )
    correct, samples = 0, []
    for example, completion in zip(rows, completions, strict=True):
        correct += completion.text.strip() == example["response"].strip()
        if len(samples) < 5:
            samples.append(
                {
                    "prompt": example["instruction"],
                    "expected": example["response"],
                    "got": completion.text,
                }
            )
    total = len(rows)
    return {
        "accuracy": correct / total if total else None,
        "correct": correct,
        "total": total,
        "samples": samples,
    }
