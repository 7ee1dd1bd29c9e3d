"""A model's module names without loading it, and what a LoRA `target_modules` selects.

PEFT matches each name of a `target_modules` list against every module's full name
(`model.layers.0.self_attn.q_proj`): equal, or ending with `.` and the name; a string
is a regular expression the whole name must match; `all-linear` is every linear layer
but the output head (peft.tuners.tuners_utils.check_target_module_exists). A name that
matches nothing is silently left out when another name matches (the adapter lacks those
modules), or ends in PEFT's NoMatchingPeftModuleError after the model has loaded; a
name that matches a module LoRA cannot adapt (an attention block, a norm) fails in PEFT
too. `target_problems` finds both before anything loads.

The module names come from `llama_modules` (the Llama family from config.json fields,
as transformers 5 builds it: a test compares it with models built on the meta device),
for lint; or from a model built on the meta device (runner.expand.model.module_kinds)
when the architecture is another, for `recipe run`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from runner.plan.architecture import LAYER_LINEARS

# model_type -> extra norms inside its attention block; the rest of the layout is Llama's
LAYOUTS: dict[str, tuple[str, ...]] = {
    "llama": (),
    "mistral": (),
    "qwen2": (),
    "qwen3": ("q_norm", "k_norm"),
}
ADAPTABLE = ("linear", "embedding", "conv")  # what LoRA can wrap
ALL_LINEAR = "all-linear"


def llama_modules(config: dict[str, Any] | None) -> dict[str, str] | None:
    """{full module name: kind} of a Llama-family model (kind: linear, embedding or
    other), or None when the config is not one whose layout is known here."""
    if not config or config.get("model_type") not in LAYOUTS:
        return None
    layers = config.get("num_hidden_layers")
    if not isinstance(layers, int) or layers < 1:
        return None
    modules = {"model": "other", "model.embed_tokens": "embedding", "model.layers": "other"}
    attention = ("q_proj", "k_proj", "v_proj", "o_proj")
    for index in range(layers):
        layer = f"model.layers.{index}"
        modules[layer] = "other"
        modules[f"{layer}.self_attn"] = "other"
        for name in LAYER_LINEARS:
            block = "self_attn" if name in attention else "mlp"
            modules[f"{layer}.{block}.{name}"] = "linear"
        for norm in LAYOUTS[config["model_type"]]:
            modules[f"{layer}.self_attn.{norm}"] = "other"
        modules.update({f"{layer}.mlp": "other", f"{layer}.mlp.act_fn": "other"})
        modules.update({f"{layer}.input_layernorm": "other",
                        f"{layer}.post_attention_layernorm": "other"})  # fmt: skip
    modules.update({"model.norm": "other", "model.rotary_emb": "other", "lm_head": "linear"})
    return modules


@dataclass(frozen=True)
class TargetProblem:
    """One `target_modules` entry PEFT cannot use: its position in the list (None for a
    string), the name, and what is wrong."""

    index: int | None
    name: str
    matched: tuple[str, ...]  # the modules it matches (empty: none)
    suggestion: str | None
    adaptable: tuple[str, ...]  # short names of the modules LoRA can adapt

    @property
    def message(self) -> str:
        if not self.matched:
            return f"lora.target_modules names {self.name!r}, which matches no module of the model"
        unfit = ", ".join(self.matched[:2]) + (" ..." if len(self.matched) > 2 else "")
        return (
            f"lora.target_modules names {self.name!r}, which matches {unfit}: modules LoRA "
            "cannot adapt (only linear, embedding and convolution layers) in the model"
        )

    @property
    def hint(self) -> str:
        mean = f"did you mean {self.suggestion!r}? " if self.suggestion else ""
        return (
            f"{mean}the modules LoRA can adapt here: {', '.join(self.adaptable)} (or "
            f"target_modules: {ALL_LINEAR})"
        )


def short_names(modules: dict[str, str]) -> list[str]:
    """The last part of each adaptable module's name, once each, in model order."""
    seen: dict[str, None] = {}
    for name, kind in modules.items():
        if kind in ADAPTABLE and name:
            seen.setdefault(name.rsplit(".", 1)[-1], None)
    return list(seen)


def matches(target: str, name: str, pattern: bool) -> bool:
    """Whether PEFT's `target_modules` entry selects the module `name`."""
    if pattern:
        return re.fullmatch(target, name) is not None
    return name == target or name.endswith("." + target)


def target_problems(targets: Any, modules: dict[str, str]) -> list[TargetProblem]:
    """The entries of `target_modules` that match no module, or match one LoRA cannot
    adapt; [] for `all-linear`, null (PEFT's default for the model type) and names that
    select adaptable modules only."""
    if targets is None or targets == ALL_LINEAR:
        return []
    pattern = isinstance(targets, str)
    entries = [(None, targets)] if pattern else list(enumerate(targets))
    adaptable = short_names(modules)
    problems = []
    for index, target in entries:
        hits = [name for name in modules if name and matches(target, name, pattern)]
        unfit = tuple(name for name in hits if modules[name] not in ADAPTABLE)
        if hits and not unfit:
            continue
        near = difflib.get_close_matches(target.rsplit(".", 1)[-1], adaptable, n=1)
        suggestion = near[0] if near and not hits and not pattern else None
        problems.append(TargetProblem(index, target, unfit, suggestion, tuple(adaptable)))
    return problems
