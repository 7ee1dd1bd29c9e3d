"""`recipe preview` rendering: trained tokens marked, and token-length statistics."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from runner.recipe.settings import Settings

OPEN, CLOSE = "[[", "]]"


def render_marked(
    tokenizer: PreTrainedTokenizerBase, ids: list[int], mask: list[int], colour: bool
) -> str:
    """The decoded example with trained spans in green (colour) or [[brackets]]."""
    out, span, trained = [], [], None
    for token_id, bit in [*zip(ids, mask, strict=True), (None, None)]:
        if bit != trained and span:
            text = tokenizer.decode(span)
            if trained:
                text = f"\x1b[32m{text}\x1b[0m" if colour else f"{OPEN}{text}{CLOSE}"
            out.append(text)
            span = []
        if token_id is not None:
            span.append(token_id)
            trained = bit
    return "".join(out)


def length_stats(lengths: list[int], max_length: int | None) -> str:
    """Token lengths (min/median/mean/p95/max) of the rows that train; what became of
    the others is `RowCounts.line` (runner.data.truncation)."""
    if not lengths:
        return "no examples"
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    text = (
        f"{len(lengths)} examples; tokens min {ordered[0]}, median {statistics.median(ordered):g}, "
        f"mean {statistics.fmean(ordered):.1f}, p95 {p95}, max {ordered[-1]}"
    )
    if max_length:
        text += f" (max_length {max_length})"
    return text


def template_values(settings: Settings, tokenizer: PreTrainedTokenizerBase) -> str:
    """The template variables the chat template in use reads, as `name='value'` (empty
    for a text template, or one that reads none of them)."""
    if not settings.template.uses_chat_template:
        return ""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    used = {k: v for k, v in settings.template_variables.items() if k in template}
    return ", ".join(f"{name}={value!r}" for name, value in used.items())
