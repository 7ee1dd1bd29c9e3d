"""Load what a run produced: its tokenizer and trained model (full, or base + adapter).

For `recipe infer/chat/merge/eval`: everything is read from the run directory (the
resolved recipe and `final/`), so a run can be used without the original recipe file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.run.directory import RunDirectory

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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


def is_adapter(final: Path) -> bool:
    return (final / "adapter_config.json").is_file()


def load_trained(
    run_dir: str | Path, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """(model, tokenizer, resolved recipe) of a finished run, ready for generation.

    A full fine-tune loads from `final/`; a LoRA/QLoRA run loads the base model exactly as
    training did (`runner.expand.model.load_model`: QLoRA in 4-bit; a `model.config` base
    from `final/base/`, where its random initial weights were saved) and the adapter from
    `final/` on top. The tokenizer is the one saved with the run. `device` defaults to
    this process's device (cuda:<local rank>, else cpu).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runner.expand.model import load_model, process_device

    run = RunDirectory(Path(run_dir))
    resolved = run.read_resolved()
    if device is None:
        device, use_cpu = process_device()
    else:
        use_cpu = device == "cpu"
    tokenizer = AutoTokenizer.from_pretrained(run.final)
    if not is_adapter(run.final):
        dtype = resolved["model"].get("dtype", "float32")
        if use_cpu and dtype == "float16":
            dtype = "float32"
        model = AutoModelForCausalLM.from_pretrained(
            run.final, dtype=getattr(torch, dtype), device_map={"": device}
        )
        return model, tokenizer, resolved
    from peft import PeftModel

    # A `model.config` base has random weights; its exact initial weights are saved with
    # the adapter run in final/base (see runner.train), so the adapter finds its base.
    base_dir = run.final / "base"
    if base_dir.is_dir():
        base = AutoModelForCausalLM.from_pretrained(base_dir, device_map={"": device})
    else:
        base = load_model(resolved, tokenizer, device, use_cpu)
    model = PeftModel.from_pretrained(base, run.final)
    return model, tokenizer, resolved
