"""Where a recipe's model and tokenizer load from, and at which revision: one rule for
training (runner.expand.model, runner.expand.tokenizer) and for every command that
loads a run afterwards (runner.after.load).

model.revision pins model.id on the hub. A local directory has no revisions, and
neither has the `base/` a run builds (a `model.config` model's random weights, a GGUF
file's dequantized weights) nor a run's `final/`: for them no revision is passed.
"""

from __future__ import annotations

from pathlib import Path

from runner.recipe.settings import Settings


def model_source(settings: Settings, base_dir: Path | None = None) -> str:
    """Where a recipe's model loads from: the run's `base/` (`base_dir`) for a model the
    run builds (model.config, GGUF), else model.id (a hub id or a local directory)."""
    if settings.builds_base and base_dir is not None:
        return str(base_dir)
    return str(settings.model.get("id"))


def model_revision(settings: Settings, source: str) -> str | None:
    """The one revision rule: model.revision applies to model.id as a hub id only; a
    local directory, a run's `base/` or `final/` has no revisions."""
    revision = settings.model.get("revision")
    if not revision or source != str(settings.model.get("id")) or settings.builds_base:
        return None
    return None if Path(source).expanduser().is_dir() else str(revision)
