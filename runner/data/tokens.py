"""Which tokens of a TRL row are trained: the same tokenization SFTTrainer applies.

Used by `recipe preview` to show trained tokens without building a trainer or loading a
model. It mirrors TRL 1.16's SFTTrainer preparation (prompt-completion: the completion
starts where the tokenized prompt and prompt+completion diverge; conversations:
assistant masks from the chat template's generation markers; text: every token, with
the end-of-turn token appended); tests check it against SFTTrainer's own labels.
A row's `chat_template_kwargs` (the recipe's `data.template_variables`, e.g. Llama 3's
date_string) go to the chat template, as TRL passes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def _chat_ids(tokenizer: PreTrainedTokenizerBase, messages: list, **kwargs: Any) -> dict:
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def trained_tokens(
    tokenizer: PreTrainedTokenizerBase,
    row: dict[str, Any],
    end_of_turn: str,
) -> tuple[list[int], list[int]]:
    """(input ids, mask) of one TRL row; mask is 1 where the token is trained."""
    variables = row.get("chat_template_kwargs") or {}
    if "prompt" in row:
        if isinstance(row["prompt"], list):
            prompt_ids = _chat_ids(
                tokenizer, row["prompt"], add_generation_prompt=True, **variables
            )["input_ids"]
            ids = _chat_ids(tokenizer, row["prompt"] + row["completion"], **variables)["input_ids"]
        else:
            prompt_ids = tokenizer(text=row["prompt"])["input_ids"]
            completion = row["completion"]
            if not completion.endswith(end_of_turn):
                completion += end_of_turn
            ids = tokenizer(text=row["prompt"] + completion)["input_ids"]
        start = common_prefix_length(prompt_ids, ids)
        return list(ids), [0] * start + [1] * (len(ids) - start)
    if "messages" in row:
        out = _chat_ids(tokenizer, row["messages"], return_assistant_tokens_mask=True, **variables)
        return list(out["input_ids"]), list(out["assistant_masks"])
    text = row["text"] if row["text"].endswith(end_of_turn) else row["text"] + end_of_turn
    ids = tokenizer(text=text)["input_ids"]
    return list(ids), [1] * len(ids)
