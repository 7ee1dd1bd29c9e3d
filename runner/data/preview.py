"""`recipe preview` rendering: trained tokens marked, and token-length statistics."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

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
    """Token lengths (min/median/mean/p95/max) and the share `max_length` truncates."""
    if not lengths:
        return "no examples"
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    text = (
        f"{len(lengths)} examples; tokens min {ordered[0]}, median {statistics.median(ordered):g}, "
        f"mean {statistics.fmean(ordered):.1f}, p95 {p95}, max {ordered[-1]}"
    )
    if max_length:
        cut = sum(n > max_length for n in lengths)
        text += f"; {cut} ({cut / len(lengths):.1%}) longer than max_length {max_length} would be truncated"
    return text
