"""Generation: settings, the keyword arguments for `model.generate`, and completions cut
at the first stop token.

`Sampling` and `generation_kwargs` are pure; `generate` runs a batch of prompts (left
padded) and returns one `Completion` each, optionally streaming a single prompt's tokens
to the terminal through transformers' TextStreamer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Sampling:
    """Greedy by default; a temperature (and optional top-p) switches to sampling."""

    max_new_tokens: int = 256
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return not self.temperature


def generation_kwargs(
    sampling: Sampling, stop_ids: list[int], pad_id: int | None
) -> dict[str, Any]:
    """Keyword arguments for `model.generate` (besides the inputs)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": sampling.max_new_tokens,
        "eos_token_id": list(stop_ids),
        "pad_token_id": pad_id if pad_id is not None else (stop_ids[0] if stop_ids else None),
        "do_sample": not sampling.greedy,
    }
    if sampling.greedy:
        # Neutralise sampling fields a model's generation_config may carry (Llama sets
        # temperature/top_p), so greedy means greedy and transformers does not warn.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    else:
        kwargs["temperature"] = sampling.temperature
        kwargs["top_p"] = sampling.top_p if sampling.top_p is not None else 1.0
        kwargs["top_k"] = None
    return kwargs


def cut_at_stop(ids: list[int], stop_ids: list[int]) -> tuple[list[int], bool]:
    """(the ids before the first stop token, whether a stop token was found)."""
    for index, token in enumerate(ids):
        if token in stop_ids:
            return ids[:index], True
    return ids, False


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int  # generated tokens before the stop token
    stopped: bool  # True: ended at a stop token; False: ran into max_new_tokens


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    sampling: Sampling,
    stop_ids: list[int],
    *,
    stream: bool = False,
    batch_size: int = 16,
) -> list[Completion]:
    """Completions of tokenized prompts; `stream` prints a single prompt's tokens as they
    come (the caller prints nothing more for it)."""
    import torch
    from transformers import TextStreamer, set_seed

    if sampling.seed is not None:
        set_seed(sampling.seed)
    kwargs = generation_kwargs(sampling, stop_ids, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    completions: list[Completion] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(len(p) for p in batch)
        pad = kwargs["pad_token_id"] or 0
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        streamer = (
            TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            if stream and len(prompts) == 1
            else None
        )
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids, attention_mask=mask, streamer=streamer, **kwargs
            )
        for ids in out[:, width:].tolist():
            kept, stopped = cut_at_stop(ids, stop_ids)
            text = tokenizer.decode(kept, skip_special_tokens=True)
            completions.append(Completion(text=text, tokens=len(kept), stopped=stopped))
    if was_training:
        model.train()
    return completions
