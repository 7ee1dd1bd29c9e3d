"""The offline demo recipe, run as the README's first command: held-out accuracy rises."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_demo_uppercase_learns_the_task_on_held_out_words(demo_run):
    run_dir, result = demo_run
    record = json.loads((run_dir / "run.json").read_text())
    match = record["exact_match"]
    assert match["before"]["total"] == 200
    assert match["before"]["accuracy"] <= 0.05
    assert match["after"]["accuracy"] >= 0.8
    assert "held-out exact match 0% ->" in result.stdout
    assert record["metrics"]["final_loss"] < record["metrics"]["first_loss"]
