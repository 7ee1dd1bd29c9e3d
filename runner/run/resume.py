"""What `recipe run --resume` may change: the recipe must be the run's own, except the keys
that only say how long to train and how often to log, evaluate or save."""

from __future__ import annotations

from typing import Any

from runner.data.sources import display_source
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


# --- the data a resumed run continues on ----------------------------------------------
#
# run.json's `data_history` lists the content each stretch of steps trained on: one entry
# at the start, {"from_step": 0, "at", "sources": [{role, source, sha256 | fingerprint,
# rows}]}, and one more each time `--resume --allow-data-change` continues on data that
# changed. A resume compares the data it prepared with the last entry and refuses a
# change unless allowed (`data_changes`, `data_history`). The entries carry their
# from_step so a run's list of sessions can take them over.


def data_fingerprints(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What identifies each source's content (runner.data.sources' record): a local
    file's sha256, else datasets' fingerprint, and the rows it has."""
    out = []
    for source in sources:
        entry = {"role": source.get("role"), "source": source.get("source")}
        key = "sha256" if source.get("sha256") else "fingerprint"
        entry[key] = source.get(key)
        entry["rows"] = source.get("rows_available")
        out.append(entry)
    return out


def recorded_data(record: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The content the run last trained on: its data_history's last entry, else (a run
    from before data_history) the sources a finished session recorded, else None."""
    history = record.get("data_history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        return history[-1].get("sources")
    sources = (record.get("data") or {}).get("sources")
    return data_fingerprints(sources) if sources else None


def data_changes(recorded: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[str]:
    """Each source whose content differs from what was recorded, in words: the file,
    both short hashes and both row counts."""
    then = {(r.get("role"), r.get("source")): r for r in recorded}
    changes = []
    for now_ in data_fingerprints(current):
        before = then.get((now_["role"], now_["source"]))
        if before is None:
            continue
        key = "sha256" if "sha256" in now_ else "fingerprint"
        if before.get(key) != now_.get(key) or before.get("rows") != now_.get("rows"):
            shown = display_source({"source": now_["source"]})
            changes.append(
                f"the {now_['role']} data {shown} changed: {key} "
                f"{_short(before.get(key))} then, {_short(now_.get(key))} now; "
                f"{before.get('rows')} rows then, {now_.get('rows')} now"
            )
    return changes


def _short(value: Any) -> str:
    return str(value)[:12] if value else "unknown"


def data_history(
    earlier: dict[str, Any], sources: list[dict[str, Any]], from_step: int, at: str
) -> list[dict[str, Any]]:
    """run.json's data_history with this session's data: a new entry at the start, and
    on resume only when the content differs from the last entry's."""
    history = [h for h in earlier.get("data_history") or [] if isinstance(h, dict)]
    recorded = recorded_data(earlier)
    if not history and recorded:  # a run from before data_history: its start, as recorded
        history = [{"from_step": 0, "at": earlier.get("started_at"), "sources": recorded}]
    current = data_fingerprints(sources)
    if history and history[-1].get("sources") == current:
        return history
    return [*history, {"from_step": from_step, "at": at, "sources": current}]
