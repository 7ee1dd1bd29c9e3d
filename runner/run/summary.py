"""The line `recipe run` ends with, from the run's record (run.json): steps, rows
trained, tokens, time, losses, padding, MFU, peak memory beside the plan, held-out exact
match, and where the model is. Every figure is read from the record, never recomputed.
"""

from __future__ import annotations

from typing import Any


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_line(record: dict[str, Any]) -> str:
    """One line a user reads at the end of `recipe run`."""
    m = record.get("metrics") or {}
    parts = [
        f"{record.get('name', 'run')} {record.get('status', '?')}",
        f"{m.get('steps', 0)} steps",
        *rows_phrase(record.get("rows") or {}),
        f"{m.get('tokens', 0):,} tokens",
        f"{_fmt(m.get('train_seconds'), '.1f')} s",
        f"{_fmt(m.get('tokens_per_second'), ',.0f')} tokens/s",
        f"train loss {_fmt(m.get('first_loss'))} -> {_fmt(m.get('final_loss'))}",
        eval_phrase(record),
    ]
    if m.get("padding_share") is not None:
        parts.append(f"padding {m['padding_share']:.0%}")
    if m.get("mfu") is not None:
        parts.append(f"MFU {m['mfu']:.0%}")
    memory = record.get("memory") or {}
    if memory.get("peak_bytes"):
        parts.append(memory_phrase(memory))
    match = record.get("exact_match") or {}
    if match.get("after"):
        before = match["before"]["accuracy"] if match.get("before") else None
        parts.append(
            f"held-out exact match {_fmt(before, '.0%')} -> {_fmt(match['after']['accuracy'], '.0%')}"
        )
    parts.append(f"model in {record.get('model_path', '?')}")
    return "; ".join(parts)


def rows_phrase(rows: dict[str, Any]) -> list[str]:
    """[`48 rows trained (16 dropped)`]: the rows the run trained on, never the rows read
    ([] for a run.json without them)."""
    if "train" not in rows:
        return []
    others = [f"{rows[k]} {k}" for k in ("dropped", "cut") if rows.get(k)]
    return [f"{rows['train']} rows trained" + (f" ({', '.join(others)})" if others else "")]


def eval_phrase(record: dict[str, Any]) -> str:
    """`eval loss 2.3145 -> 0.0412`: held-out loss before training (when measured) and
    after."""
    after = (record.get("metrics") or {}).get("eval_loss")
    before = (record.get("eval_before") or {}).get("loss")
    if before is None:
        return f"eval loss {_fmt(after)}"
    return f"eval loss {_fmt(before)} -> {_fmt(after)}"


def memory_phrase(memory: dict[str, Any]) -> str:
    """`peak 11.2 GiB (plan 11.9 GiB)`: the measured peak beside the plan's figure for the
    same thing (reserved on CUDA; on the CPU the process's peak RSS, said so)."""
    gib = 1024**3
    what = "" if memory.get("measured") == "max_memory_reserved" else " RSS"
    phrase = f"peak {memory['peak_bytes'] / gib:.1f} GiB{what}"
    if memory.get("plan_bytes"):
        phrase += f" (plan {memory['plan_bytes'] / gib:.1f} GiB)"
    return phrase
