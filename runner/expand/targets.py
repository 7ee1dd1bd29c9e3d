"""The adapter is what the recipe asked for: LoRA's target modules checked against the
model's own modules, and the modules PEFT adapted, counted.

Lint checks `lora.target_modules` wherever the model's modules are known without loading
it (runner.lint.rules.method, from runner.plan.modules.llama_modules). For any other
architecture `recipe run` builds the model on the meta device - its modules, no weight
loaded or allocated - and checks the same way before the data is prepared
(`check_before_loading`); the training process checks the loaded model once more before
PEFT wraps it (`require_targets`), so a name PEFT cannot use is one clear error, never a
PEFT traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.errors import UserError
from runner.plan.modules import TargetProblem, llama_modules, target_problems
from runner.recipe.models import model_config
from runner.recipe.settings import Settings

if TYPE_CHECKING:
    from torch import nn


class TargetModulesError(UserError):
    """`lora.target_modules` names modules the model lacks, or cannot adapt."""

    def __init__(self, problems: list[TargetProblem], model: str) -> None:
        lines = [f"{p.message} {model} ({p.hint})" for p in problems]
        super().__init__("\n".join(lines))


def module_kinds(model: nn.Module) -> dict[str, str]:
    """{full module name: linear, embedding, conv or other} of a built model, as PEFT
    sees them (transformers' Conv1D and bitsandbytes' layers are linear layers)."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    def kind(module: nn.Module) -> str:
        if isinstance(module, nn.Linear | Conv1D):
            return "linear"
        if isinstance(module, nn.Embedding):
            return "embedding"
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return "conv"
        return "other"

    return {name: kind(module) for name, module in model.named_modules() if name}


def require_targets(settings: Settings, modules: dict[str, str], model: str) -> None:
    """Raise TargetModulesError when an entry of lora.target_modules matches no module
    of `modules`, or one LoRA cannot adapt."""
    lora = settings.lora_config
    problems = target_problems(lora["target_modules"], modules) if lora else []
    if problems:
        raise TargetModulesError(problems, model)


def check_before_loading(settings: Settings) -> None:
    """`recipe run`, before the data is prepared: check lora.target_modules against the
    model built on the meta device, for an architecture lint could not check. Nothing
    is checked here when lint did, or when the config cannot be read without loading
    the model (the training process checks the loaded model)."""
    if settings.lora_config is None or llama_modules(_config(settings)) is not None:
        return  # full fine-tuning, or lint checked the names already
    modules = meta_modules(settings)
    if modules is not None:
        require_targets(settings, modules, f"{settings.model.get('id')} (built on the meta device)")


def _config(settings: Settings) -> dict[str, Any] | None:
    try:
        return model_config(settings.model)
    except (OSError, ValueError, TypeError):
        return None


def meta_modules(settings: Settings) -> dict[str, str] | None:
    """The module kinds of the recipe's model built on the meta device from its config
    (model.config, or the config.json of a local or cached model), or None when the
    config cannot be had without a download."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model = settings.model
    try:
        if settings.from_config:
            config = AutoConfig.for_model(**model["config"])
        elif settings.gguf_path is None:
            config = AutoConfig.from_pretrained(
                model["id"],
                revision=model.get("revision"),
                trust_remote_code=settings.trust_remote_code,
            )
        else:
            return None
        with torch.device("meta"):
            built = AutoModelForCausalLM.from_config(
                config, trust_remote_code=settings.trust_remote_code
            )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not on this machine, or not a causal LM transformers knows
    return module_kinds(built)


def adapted(model: nn.Module) -> dict[str, Any]:
    """The modules PEFT adapted, by short name, and their count (for run.json)."""
    from peft.tuners.lora import LoraLayer

    names = [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    counts: dict[str, int] = {}
    for name in names:
        short = name.rsplit(".", 1)[-1]
        counts[short] = counts.get(short, 0) + 1
    return {"modules": counts, "count": len(names)}
