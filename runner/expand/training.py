"""SFTConfig keyword arguments at run time: the recipe's, plus what only the run knows.

`library_kwargs.sft_kwargs` gives the recipe's `training` block; `run_sft_kwargs` adds the
data-dependent and machine-dependent arguments on top, all in plain sight:
- the loss mask of the run's `LossSetup` (runner.expand.loss): `completion_only_loss`
  for prompt-completion rows, `assistant_only_loss` for multi-turn conversations;
- `eos_token` = the end-of-turn token (TRL appends it to every completion and mirrors it
  onto the model's generation config); the pad token is set on the tokenizer itself
  (TRL reads it from there; its `pad_token` argument is deprecated);
- on CPU: `use_cpu`, fp16 switched off, bf16 autocast only for a CPU recipe that asks
  for it (`placement.cpu_bf16`), else the model's dtype;
- `include_num_input_tokens_seen` so the summary can count tokens;
- `disable_tqdm`: the screen shows the runner's progress line (runner.run.progress);
- `logging_nan_inf_filter: false`, so a non-finite loss is logged as it is;
- under DeepSpeed the run's DeepSpeed JSON (`deepspeed`); under FSDP activation
  checkpointing is FSDP's own (accelerate's fsdp_config), not the Trainer's;
- `report_to: none` written as an empty list.
"""

from __future__ import annotations

from typing import Any

from runner.expand.engines import deepspeed_file
from runner.expand.library_kwargs import sft_kwargs
from runner.expand.loss import LossSetup
from runner.expand.placement import Placement, cpu_bf16
from runner.recipe.settings import Settings


def run_sft_kwargs(
    settings: Settings,
    placement: Placement,
    loss: LossSetup,
    *,
    has_eval: bool,
    tokenized: bool = True,
) -> dict[str, Any]:
    """Keyword arguments for `trl.SFTConfig` for this run on this machine, training (or
    `recipe eval` scoring) the tokens `loss` says (runner.expand.loss); `tokenized`: the
    rows carry their masks (prepared by the runner), else TRL finds them."""
    kwargs = sft_kwargs(settings)
    kwargs["eos_token"] = loss.end_of_turn
    if loss.assistant_only and not tokenized:
        kwargs["assistant_only_loss"] = True  # TRL refuses the flag for tokenized rows
    else:
        # said, not left to TRL: prepared rows are tokenized, so TRL cannot see their kind
        kwargs.setdefault("completion_only_loss", True if loss.completion_only else None)
    if placement.cpu:
        kwargs["use_cpu"] = True
        kwargs["bf16"] = cpu_bf16(settings, placement)
        kwargs["fp16"] = False
    kwargs.setdefault("include_num_input_tokens_seen", "non_padding")
    kwargs["disable_tqdm"] = True  # runner.run.progress writes the progress line
    # Log a non-finite loss as it is (the Trainer would average it away), so the logs and
    # the divergence guard (runner.run.guard) see it.
    kwargs.setdefault("logging_nan_inf_filter", False)
    report_to = settings.training["report_to"]
    if report_to == "none" or report_to == ["none"]:
        kwargs["report_to"] = []
    if not has_eval and settings.strategy_of("eval") != "no":
        kwargs["eval_strategy"] = "no"
    if settings.strategy == "deepspeed":
        kwargs["deepspeed"] = deepspeed_file(settings)  # "auto" values filled by transformers
    if settings.strategy == "fsdp":
        kwargs["activation_checkpointing"] = False  # FSDP checkpoints layers itself
    if settings.strategy == "ddp":
        # every trainable parameter gets a gradient each step (frozen LoRA bases do not
        # count); searching for unused ones costs a graph traversal per step
        kwargs.setdefault("ddp_find_unused_parameters", False)
    return kwargs
