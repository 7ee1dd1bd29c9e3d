"""Rules about optional packages: a recipe that uses an accelerator feature whose package
is not installed here is told which extra of recipe-runner brings it.

The table `EXTRAS` is the one place that says which recipe setting needs which extra
(pyproject.toml's [project.optional-dependencies]). Whether the package is installed is
asked of the import system without importing it (no torch, no CUDA at lint time). A
warning, not an error: a recipe is often linted on a laptop and run on the cluster.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import WARNING, KeyPath
from runner.recipe.settings import Settings


@dataclass(frozen=True)
class Extra:
    """An optional feature: its extra's name, the module it installs, when a recipe
    needs it, and the key that asks for it."""

    name: str
    module: str
    needed: Callable[[Settings], bool]
    key: KeyPath
    feature: str


EXTRAS = (
    Extra(
        "gguf",
        "gguf",
        lambda s: s.gguf_path is not None,
        ("model", "id"),
        "a GGUF model (model.id)",
    ),
    Extra(
        "deepspeed",
        "deepspeed",
        lambda s: s.strategy == "deepspeed",
        ("launch", "strategy"),
        "launch.strategy: deepspeed",
    ),
    Extra(
        "liger",
        "liger_kernel",
        lambda s: s.training["use_liger_kernel"] is True,
        ("training", "use_liger_kernel"),
        "training.use_liger_kernel",
    ),
    Extra(
        "flash-attn",
        "flash_attn",
        lambda s: s.model["attn_implementation"] == "flash_attention_2",
        ("model", "attn_implementation"),
        "model.attn_implementation: flash_attention_2",
    ),
)


def installed(module: str) -> bool:
    """Whether a top-level module can be imported here (it is not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _extra_not_installed(ctx: RuleContext) -> Iterator[Finding]:
    for extra in EXTRAS:
        if extra.needed(ctx.s) and not installed(extra.module):
            yield Finding(
                ctx.nearest(*extra.key),
                {"feature": extra.feature, "module": extra.module, "extra": extra.name},
            )


RULES = [
    Rule(
        "extra-not-installed",
        WARNING,
        "{feature} needs the {module} package, which is not installed here",
        "install it with `pip install 'recipe-runner[{extra}]'` where the recipe runs",
        _extra_not_installed,
    ),
]
