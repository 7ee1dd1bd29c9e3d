"""JSON any parser reads: NaN and infinities (a diverged loss) are written as null.

Every JSON file the runner writes (run.json, metrics.jsonl, checkpoints' progress, the
prepared data's record) goes through `strict_json`.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None, so it is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def strict_json(value: Any, **kwargs: Any) -> str:
    """JSON text that any parser reads: no NaN or Infinity (they become null)."""
    return json.dumps(finite_or_none(value), allow_nan=False, default=str, **kwargs)
