"""What `recipe run --resume` may change: the recipe must be the run's own, except the keys
that only say how long to train and how often to log, evaluate or save."""

from __future__ import annotations

from typing import Any

from runner.recipe.diagnostics import dotted

# Keys a resumed run may change without training a different model.
SAFE_ON_RESUME = (
    "description",
    "training.num_train_epochs",
    "training.max_steps",
    "training.logging_steps",
    "training.logging_strategy",
    "training.logging_first_step",
    "training.save_steps",
    "training.save_strategy",
    "training.save_total_limit",
    "training.eval_steps",
    "training.report_to",
    "training.disable_tqdm",
    "early_stopping.patience",
    "divergence.patience",
    "divergence.loss_spike",
)


def flatten(value: Any, prefix: tuple[str | int, ...] = ()) -> dict[str, Any]:
    """{dotted key: leaf value} of nested mappings (lists are compared whole)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, (*prefix, key)))
        return out
    return {dotted(prefix): value}


def resume_differences(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose resolved values differ and that a resume may not change."""
    old, new = flatten(previous), flatten(current)
    changed = [key for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    return [key for key in changed if not any(_under(key, safe) for safe in SAFE_ON_RESUME)]


def _under(key: str, safe: str) -> bool:
    return key == safe or key.startswith(safe + ".")
