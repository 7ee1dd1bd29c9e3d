"""What a run's generations stop at, shared by training (held-out exact match) and by
`recipe infer/chat/eval` (runner.after), which load a run's model with
`runner.after.load.load_target`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase, resolved: dict[str, Any]) -> list[int]:
    """Token ids generation stops at: the run's end-of-turn token, and the eos token."""
    from runner.data.templates import template_kind
    from runner.expand.tokenizer import end_of_turn_token

    kind = template_kind(resolved["data"].get("template", "chat"))
    tokens = [end_of_turn_token(tokenizer, kind), tokenizer.eos_token]
    ids = []
    for token in tokens:
        token_id = tokenizer.convert_tokens_to_ids(token) if token else None
        if token_id is not None and token_id not in ids:
            ids.append(token_id)
    return ids
