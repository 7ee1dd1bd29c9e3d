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
# Each session in run.json's `sessions` (runner.run.session) records in `data` the content
# it trains on: per source {role, source, sha256 | fingerprint, rows}. With the session's
# from_step and step they say which steps trained on which content. A resume compares the
# data it prepared with the newest session's (`recorded_data`, `data_changes`) and refuses
# a change unless `--resume --allow-data-change`, whose session records the new content
# and, in `data_changed`, what changed (`session_data`).


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
    """The content the run last trained on: the newest session's `data`, else (a run from
    before sessions recorded it) the sources its finished run recorded, else None."""
    sessions = record.get("sessions")
    for session in reversed(sessions if isinstance(sessions, list) else []):
        if isinstance(session, dict) and isinstance(session.get("data"), list):
            return session["data"]
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


def session_data(earlier: dict[str, Any], sources: list[dict[str, Any]]) -> dict[str, Any]:
    """What a new session's entry records of its data: `data`, the content it trains on,
    and on a resume allowed onto changed data, `data_changed` (in words, as refused)."""
    changes = data_changes(recorded_data(earlier) or [], sources) if earlier else []
    return {"data": data_fingerprints(sources), **({"data_changed": changes} if changes else {})}
