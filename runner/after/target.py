"""What RUN_OR_MODEL names, and whether everything it needs is on this machine.

A run directory (the recipe's output_dir, with run.json and recipe.resolved.yaml) is
used through its resolved recipe and `final/`; a model directory (config.json) or an
adapter directory (adapter_config.json) is used as it is; anything else is taken as a
hub id that must already be in the local Hugging Face cache. Nothing is downloaded:
a missing model is an `AfterError` that names it and says how to provide it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.run.directory import RunDirectory


class AfterError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Target:
    """A trained run or a model, as `recipe infer/chat/merge/eval` use it.

    `weights` is the directory with the trained model or adapter (and tokenizer);
    `base` the base model an adapter applies to (a directory or hub id), else None.
    """

    path: Path
    resolved: dict[str, Any] | None  # the run's resolved recipe; None for a plain model
    weights: str
    adapter: bool
    base: str | None

    @property
    def is_run(self) -> bool:
        return self.resolved is not None

    @property
    def method(self) -> str:
        """full, lora or qlora for a run; `model` or `adapter` for a plain directory."""
        if self.resolved is not None:
            return str(self.resolved.get("method", "full"))
        return "adapter" if self.adapter else "model"

    @property
    def revision(self) -> str | None:
        if self.resolved is None:
            return None
        return self.resolved["model"].get("revision")


def missing_model_message(model_id: str, where: str = "") -> str:
    """The one-paragraph message for a base model that is not on this machine."""
    place = f" (needed by {where})" if where else ""
    return (
        f"error: the model {model_id!r}{place} is not on this machine: it is not a local "
        "directory and not in the Hugging Face cache, and recipe never downloads during "
        "inference. Download it once on a machine with network access with "
        f"`huggingface-cli download {model_id}` (and copy ~/.cache/huggingface over if "
        "needed), or point model.id at a local copy of the model with "
        "`--set model.id=PATH`."
    )


def is_cached(model_id: str, revision: str | None = None) -> bool:
    """Whether a hub model's config.json is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def require_model(reference: str, revision: str | None = None, where: str = "") -> str:
    """`reference` when it is a model directory or a cached hub id; AfterError otherwise."""
    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise AfterError(
                f"error: {path} has no config.json, so it is not a saved model (give the "
                "directory that `save_pretrained` wrote, or a run directory)"
            )
        return str(path)
    if _looks_like_path(reference):
        place = f" (needed by {where})" if where else ""
        raise AfterError(
            f"error: the model directory {reference}{place} does not exist on this machine; "
            "if the model was moved, point model.id at it with `--set model.id=PATH`"
        )
    if not is_cached(reference, revision):
        raise AfterError(missing_model_message(reference, where))
    return reference


def find_target(reference: str) -> Target:
    """The run or model RUN_OR_MODEL names; AfterError when it cannot be used."""
    path = Path(reference).expanduser()
    run = RunDirectory(path)
    if path.is_dir() and run.is_run():
        return _run_target(run)
    if path.is_dir() and (path / "adapter_config.json").is_file():
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        base = config.get("base_model_name_or_path")
        if not base:
            raise AfterError(
                f"error: {path}/adapter_config.json names no base model "
                "(base_model_name_or_path); load it from its run directory instead"
            )
        return Target(path=path, resolved=None, weights=str(path), adapter=True, base=str(base))
    if path.is_dir() and not (path / "config.json").is_file():
        raise AfterError(
            f"error: {path} is neither a run directory (no run.json or recipe.resolved.yaml) "
            "nor a saved model (no config.json); give the recipe's output_dir or a model "
            "directory"
        )
    if not path.exists() and (_looks_like_path(reference) or not is_cached(reference)):
        raise AfterError(
            f"error: {reference}: no such run or model directory here, and no hub model of "
            "that id in the local Hugging Face cache. Give a run directory (the recipe's "
            "output_dir, e.g. outputs/NAME) or a saved model directory; for a hub model, "
            f"download it once with `huggingface-cli download {reference}` on a machine "
            "with network access"
        )
    weights = require_model(reference)
    return Target(path=Path(weights), resolved=None, weights=weights, adapter=False, base=None)


def _run_target(run: RunDirectory) -> Target:
    if not run.resolved.is_file():
        raise AfterError(
            f"error: {run.path} has no {run.resolved.name}; it was not written by "
            "`recipe run` (give a run directory or a model directory)"
        )
    resolved = run.read_resolved()
    final = run.final
    if not final.is_dir() or not any(final.iterdir()):
        status = run.read_run().get("status", "unknown") if run.run_json.is_file() else "unknown"
        raise AfterError(
            f"error: {run.path} has no trained model in {final.name}/ (run status: {status}); "
            "the run did not finish. Continue it with `recipe run RECIPE --resume`, or "
            "start it again"
        )
    adapter = (final / "adapter_config.json").is_file()
    base = None
    if adapter:
        saved_base = final / "base"
        base = str(saved_base) if saved_base.is_dir() else str(resolved["model"].get("id"))
    return Target(path=run.path, resolved=resolved, weights=str(final), adapter=adapter, base=base)


def with_overrides(target: Target, overrides: tuple[str, ...]) -> Target:
    """The target with `--set KEY=VALUE` applied to its run's resolved recipe (e.g.
    `--set model.id=PATH` when the base model lives elsewhere on this machine)."""
    if not overrides:
        return target
    if target.resolved is None:
        raise AfterError(
            f"error: --set applies to a run's recipe; {target.path} is a model directory, not a run"
        )
    from runner.recipe.overrides import parse_override, set_path

    resolved = copy.deepcopy(target.resolved)
    for argument in overrides:
        try:
            key, value = parse_override(argument)
            if key == ("model", "id") and Path(str(value)).expanduser().is_dir():
                value = str(Path(str(value)).expanduser().resolve())
            set_path(resolved, key, value)
        except (ValueError, KeyError) as exc:
            raise AfterError(f"error: --set {argument}: {exc}") from None
    base = target.base
    if target.adapter and not (Path(target.weights) / "base").is_dir():
        base = str(resolved["model"].get("id"))
    return Target(
        path=target.path,
        resolved=resolved,
        weights=target.weights,
        adapter=target.adapter,
        base=base,
    )


def _looks_like_path(reference: str) -> bool:
    return (
        reference.startswith((".", "/", "~"))
        or reference.count("/") > 1
        or reference.endswith((".json", ".yaml", ".yml", ".jsonl"))
    )
