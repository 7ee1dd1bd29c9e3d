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
from dataclasses import dataclass, replace
from pathlib import Path

from runner.errors import UserError
from runner.recipe.remote_code import require_permission
from runner.recipe.settings import Settings
from runner.run.directory import RunDirectory
from runner.run.provenance import recorded_code


class AfterError(UserError):
    """A trained run or model that cannot be used as asked; the message says why."""


@dataclass(frozen=True)
class Target:
    """A trained run or a model, as `recipe infer/chat/merge/eval` use it.

    `weights` is the directory with the trained model or adapter (and tokenizer);
    `base` the base model an adapter applies to (a directory or hub id), else None;
    `trust_remote_code`: the model's own code may run (set by `with_code_permission`).
    """

    path: Path
    settings: Settings | None  # the run's effective settings; None for a plain model
    weights: str
    adapter: bool
    base: str | None
    trust_remote_code: bool = False

    @property
    def is_run(self) -> bool:
        return self.settings is not None

    @property
    def method(self) -> str:
        """full, lora or qlora for a run; `model` or `adapter` for a plain directory."""
        if self.settings is not None:
            return self.settings.method
        return "adapter" if self.adapter else "model"

    @property
    def revision(self) -> str | None:
        return None if self.settings is None else self.settings.model.get("revision")


def missing_model_message(model_id: str, where: str = "") -> str:
    """The one-paragraph message for a base model that is not on this machine."""
    place = f" (needed by {where})" if where else ""
    return (
        f"the model {model_id!r}{place} is not on this machine: it is not a local "
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
                f"{path} has no config.json, so it is not a saved model (give the "
                "directory that `save_pretrained` wrote, or a run directory)"
            )
        return str(path)
    if _looks_like_path(reference):
        place = f" (needed by {where})" if where else ""
        raise AfterError(
            f"the model directory {reference}{place} does not exist on this machine; "
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
                f"{path}/adapter_config.json names no base model "
                "(base_model_name_or_path); load it from its run directory instead"
            )
        return Target(path=path, settings=None, weights=str(path), adapter=True, base=str(base))
    if path.is_dir() and not (path / "config.json").is_file():
        raise AfterError(
            f"{path} is neither a run directory (no run.json or recipe.resolved.yaml) "
            "nor a saved model (no config.json); give the recipe's output_dir or a model "
            "directory"
        )
    if not path.exists() and (_looks_like_path(reference) or not is_cached(reference)):
        raise AfterError(
            f"{reference}: no such run or model directory here, and no hub model of "
            "that id in the local Hugging Face cache. Give a run directory (the recipe's "
            "output_dir, e.g. outputs/NAME) or a saved model directory; for a hub model, "
            f"download it once with `huggingface-cli download {reference}` on a machine "
            "with network access"
        )
    weights = require_model(reference)
    return Target(path=Path(weights), settings=None, weights=weights, adapter=False, base=None)


def _run_target(run: RunDirectory) -> Target:
    if not run.resolved.is_file():
        raise AfterError(
            f"{run.path} has no {run.resolved.name}; it was not written by "
            "`recipe run` (give a run directory or a model directory)"
        )
    settings = Settings(run.read_resolved())
    status, record = _status_of(run)
    missing = missing_from_final(run, settings)
    if status != "succeeded" or missing:
        raise AfterError(not_trained_message(run, status, record, missing))
    return Target(
        path=run.path,
        settings=settings,
        weights=str(run.final),
        adapter=settings.adapter,
        base=_base_of(run, settings) if settings.adapter else None,
    )


# What a complete final/ holds: any one file of each group.
TOKENIZER_FILES = ("tokenizer_config.json",)
MODEL_FILES = {
    "config.json": ("config.json",),
    "the model weights": (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ),
}
ADAPTER_FILES = {
    "adapter_config.json": ("adapter_config.json",),
    "the adapter weights": ("adapter_model.safetensors", "adapter_model.bin"),
}


def missing_from_final(run: RunDirectory, settings: Settings) -> list[str]:
    """What a trained run's directory lacks for infer/eval/merge to use it: final/ with
    the model (or adapter), its weights and the tokenizer, and for a LoRA run on a
    `model.config` model the base/ weights the adapter applies to."""
    final = run.final
    if not final.is_dir():
        return [f"{final.name}/ (the trained {'adapter' if settings.adapter else 'model'})"]
    groups = dict(ADAPTER_FILES if settings.adapter else MODEL_FILES)
    groups["the tokenizer (tokenizer_config.json)"] = TOKENIZER_FILES
    missing = [
        f"{final.name}/{what}"
        for what, names in groups.items()
        if not any((final / name).is_file() for name in names)
    ]
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        missing += [f"{final.name}/{shard}" for shard in _missing_shards(final / index)]
    if settings.adapter and settings.builds_base and not (run.base / "config.json").is_file():
        missing.append(f"{run.base.name}/ (the initial weights the adapter applies to)")
    return missing


def _missing_shards(index: Path) -> list[str]:
    if not index.is_file():
        return []
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
    except (OSError, ValueError, AttributeError):
        return [index.name + " (unreadable)"]
    return sorted({str(f) for f in weight_map.values() if not (index.parent / str(f)).is_file()})


def _status_of(run: RunDirectory) -> tuple[str, dict]:
    """(status, run.json) as they are now; `unknown` for a missing or unreadable run.json."""
    try:
        record = run.read_run() if run.run_json.is_file() else {}
        return run.status(), record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return "unknown", {}


def not_trained_message(run: RunDirectory, status: str, record: dict, missing: list[str]) -> str:
    """Why a run cannot be used yet, and what to do, by its status."""
    checkpoints = run.checkpoints()
    newest = f" (newest checkpoint: {checkpoints[-1].name})" if checkpoints else ""
    resume = (
        f"continue it with `recipe run RECIPE --resume`{newest}, or start it again"
        if checkpoints
        else "start it again with `recipe run RECIPE` (it saved no checkpoint to resume from)"
    )
    where = f"{run.path} is not a trained run"
    if status == "running":
        pid = record.get("pid")
        return f"{where} yet: it is still training (pid {pid}); wait for it to finish"
    if status == "succeeded":
        return (
            f"{run.path} says it succeeded, but {', '.join(missing)} is missing (moved or "
            "deleted since); copy it back, or train the run again"
        )
    if status == "failed":
        error = str(record.get("error") or "see its logs").splitlines()[0]
        return f"{where}: it failed ({error}); fix the cause and {resume}"
    if status == "diverged":
        return (
            f"{where}: it diverged and was stopped before the final model was saved; "
            "lower training.learning_rate (or check the data) and start it again"
        )
    if status == "interrupted":
        return f"{where}: it was interrupted before the final model was saved; {resume}"
    if status == "stale":
        return (
            f"{where}: it stopped without finishing (its process is gone, status stale); {resume}"
        )
    return (
        f"{where}: its run.json is missing or unreadable (status {status}), so nothing says "
        f"it finished; {resume}"
    )


def _base_of(run: RunDirectory, settings: Settings) -> str:
    """What an adapter applies to: the base a model.config or GGUF run saved, else model.id."""
    return str(run.base) if settings.builds_base else str(settings.model["id"])


def with_overrides(target: Target, overrides: tuple[str, ...]) -> Target:
    """The target with `--set KEY=VALUE` applied to its run's resolved recipe (e.g.
    `--set model.id=PATH` when the base model lives elsewhere on this machine)."""
    if not overrides:
        return target
    if target.settings is None:
        raise AfterError(
            f"--set applies to a run's recipe; {target.path} is a model directory, not a run"
        )
    from runner.recipe.overrides import parse_override, set_path

    resolved = copy.deepcopy(target.settings.resolved)
    for argument in overrides:
        try:
            key, value = parse_override(argument)
            if key == ("model", "id") and Path(str(value)).expanduser().is_dir():
                value = str(Path(str(value)).expanduser().resolve())
            set_path(resolved, key, value)
        except (ValueError, KeyError) as exc:
            raise AfterError(f"--set {argument}: {exc}") from None
    settings = Settings(resolved)
    return Target(
        path=target.path,
        settings=settings,
        weights=target.weights,
        adapter=target.adapter,
        base=_base_of(RunDirectory(target.path), settings) if target.adapter else None,
    )


def with_code_permission(target: Target, allowed: bool) -> Target:
    """The target with the model's own Python code allowed where it may run
    (runner.recipe.remote_code). A run: only when its recipe asked for it
    (model.trust_remote_code) and the command line allowed it (--trust-remote-code), and
    only the code run.json recorded at training, in final/ and in the base model. A plain
    model or adapter directory has no recipe to ask: the command line decides."""
    if target.settings is None:
        return replace(target, trust_remote_code=allowed)
    code = require_permission(
        target.settings.model,
        allowed,
        subject=str(target.path),
        recorded=recorded_code(RunDirectory(target.path)),
        folders=[Path(target.weights)],
    )
    return replace(target, trust_remote_code=code is not None)


def _looks_like_path(reference: str) -> bool:
    return (
        reference.startswith((".", "/", "~"))
        or reference.count("/") > 1
        or reference.endswith((".json", ".yaml", ".yml", ".jsonl"))
    )
