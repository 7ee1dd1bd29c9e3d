"""run.json's plan is the one plan the check made for the recipe: the plan `recipe plan`
prints and the hardware rules judge, made once, not remade by the run."""

from __future__ import annotations

import json

from click.testing import CliRunner

from runner.check import check_recipe
from runner.cli import main
from runner.run.record import plan_record


def test_the_run_records_the_plan_recipe_plan_prints_and_lint_judged(monkeypatch) -> None:
    import runner.plan.verdict

    made = []
    make_plan = runner.plan.verdict.make_plan
    monkeypatch.setattr(
        runner.plan.verdict, "make_plan", lambda *a, **k: made.append(1) or make_plan(*a, **k)
    )
    checked = check_recipe("tinyllama-qlora-3070")  # a card: the hardware rules plan it
    assert checked.ok and len(made) == 1
    record = plan_record(checked)
    assert len(made) == 1  # the run reads the check's plan, it does not plan again
    printed = json.loads(
        CliRunner().invoke(main, ["plan", "tinyllama-qlora-3070", "--format", "json"]).stdout
    )
    for key in ("total_bytes", "reserved_bytes", "allocated_bytes", "verdict", "card"):
        assert record[key] == printed[key]


def test_a_recipe_that_cannot_be_planned_records_why() -> None:
    overrides = ["training.max_length=null", "model.config.max_position_embeddings=null"]
    assert plan_record(check_recipe("demo-uppercase", overrides)) == {
        "error": "training.max_length is null (no truncation) and the model's context "
        "(max_position_embeddings) is unknown, so the longest row cannot be planned"
    }
