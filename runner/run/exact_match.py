"""Held-out exact-match accuracy: greedy generation on eval rows, compared to the reference.

Asked for with `data.exact_match` in the recipe (short-answer tasks such as the demo);
`ExactMatchCallback` measures it when training begins and when it ends, for the
summary and run.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from runner.data.templates import PromptFormat, prompt_token_ids, render_prompt
from runner.expand.tokenizer import end_of_turn_ids
from runner.generation import Sampling, generate
from runner.recipe.settings import Settings

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def exact_match(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    examples: list[dict[str, Any]],
    stop_ids: list[int],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> dict[str, Any]:
    """{"accuracy", "correct", "total", "samples"} over instruction-shaped examples.

    Prompts are rendered with the same `render_prompt` as training; generation is greedy
    and stops at the end-of-turn token; the answer matches when it equals the reference
    after stripping surrounding whitespace.
    """
    rows = [e for e in examples if "response" in e]
    prompts = [
        prompt_token_ids(
            fmt, tokenizer, render_prompt(fmt, tokenizer, e["instruction"], e["input"])
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


class ExactMatchCallback(TrainerCallback):
    """Measures held-out exact match when training begins (unless `before` is already
    known, as on resume; `keep` records it at once) and when it ends: on the main
    process, or on every process when the weights are sharded."""

    def __init__(
        self,
        settings: Settings,
        tokenizer: PreTrainedTokenizerBase,
        examples: list[dict[str, Any]],
        before: dict[str, Any] | None = None,
        keep: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.fmt = PromptFormat.of(settings)
        self.options = dict(settings.exact_match or {})
        self.tokenizer = tokenizer
        self.examples = examples
        self.stop_ids = end_of_turn_ids(tokenizer, settings.template)
        self.before = before
        self.keep = keep
        # ZeRO-3 and FSDP gather each layer from every process as it runs: every rank
        # must generate too (transformers then keeps them in step); else rank 0 alone
        self.every_rank = settings.shards_weights
        self.after: dict[str, Any] | None = None

    def _measure(self, model: PreTrainedModel) -> dict[str, Any]:
        return exact_match(
            model, self.tokenizer, self.fmt, self.examples, self.stop_ids, **self.options
        )

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.before is None and (self.every_rank or state.is_world_process_zero):
            self.before = self._measure(model)
            if self.keep is not None and state.is_world_process_zero:
                self.keep(self.before)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.every_rank or state.is_world_process_zero:
            self.after = self._measure(model)

    def record(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after}
