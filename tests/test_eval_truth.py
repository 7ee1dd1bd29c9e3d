"""Lint tells the truth about what the run will do with data.eval: for every rule of the
evaluation table, the recipe that breaks it is run, and the run does what the message
says - an error stops it before anything trains, a warning's evaluations happen exactly
when the message says (runner.recipe.settings decides when, for both)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import tiny_recipe, write_recipe

from runner.cli import main
from runner.lint.rules.evaluation import RULES


def evaluating(model_dir: Path, **training: Any) -> dict[str, Any]:
    recipe = tiny_recipe(model_dir, **{"max_steps": 3, **training})
    recipe["data"]["train"][0]["rows"] = 32  # 24 train rows, 8 held out: 3 steps an epoch
    recipe["data"]["eval"] = {"fraction": 0.25}
    recipe["training"] = {k: v for k, v in recipe["training"].items() if v is not None}
    return recipe


def without(recipe: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        recipe["training"].pop(key, None)
    return recipe


# rule -> (the recipe that breaks it, words of its message, the eval steps of the run: the
# steps metrics.jsonl logs an eval_loss at, the final evaluation included; None: refused)
CASES = {
    "eval-data-without-eval-strategy": (
        lambda m: without(evaluating(m), "eval_strategy", "eval_steps"),
        "data.eval is evaluated only before and after training, never during training",
        [3],
    ),
    "steps-never-reached": (
        lambda m: evaluating(m, eval_steps=100),
        "so it never evaluates during training: data.eval is evaluated only before and "
        "after training",
        [3],
    ),
    "steps-without-steps-strategy": (
        lambda m: evaluating(
            m, eval_strategy="epoch", eval_steps=1, max_steps=-1, num_train_epochs=2
        ),
        "training.eval_steps is ignored because eval_strategy is 'epoch' (data.eval is "
        "evaluated before training, at the end of each epoch and after training)",
        [3, 6],  # each epoch's end; the last is the final evaluation too
    ),
    "eval-strategy-without-eval-data": (
        lambda m: {**evaluating(m), "data": {**evaluating(m)["data"], "eval": None}},
        "training.eval_strategy is 'steps' but the recipe has no evaluation data",
        None,
    ),
    "load-best-needs-matching-strategies": (
        lambda m: evaluating(m, load_best_model_at_end=True),
        "load_best_model_at_end needs eval_strategy and save_strategy to be the same",
        None,
    ),
    "early-stopping-needs-eval": (
        lambda m: {
            **without(
                evaluating(
                    m,
                    load_best_model_at_end=True,
                    save_strategy="steps",
                    save_steps=1,
                    eval_steps=1,
                ),
                "eval_strategy",
            ),
            "early_stopping": {"patience": 1},
        },
        "early_stopping needs evaluation",
        None,
    ),
    "early-stopping-needs-load-best": (
        lambda m: {**evaluating(m), "early_stopping": {"patience": 1}},
        "early_stopping needs training.load_best_model_at_end: true",
        None,
    ),
}


def test_every_evaluation_rule_has_a_case() -> None:
    assert sorted(rule.id for rule in RULES) == sorted(CASES)


def write(tmp_path: Path, recipe: dict[str, Any]) -> Path:
    if recipe["data"].get("eval") is None:
        recipe["data"].pop("eval", None)
    return write_recipe(tmp_path / "r.yaml", recipe)


@pytest.mark.parametrize("rule", [r for r, case in CASES.items() if case[2] is None])
def test_an_evaluation_error_stops_the_run_before_anything_trains(tmp_path, tiny_model_dir, rule):
    make, words, _ = CASES[rule]
    recipe = write(tmp_path, make(tiny_model_dir))
    result = CliRunner().invoke(main, ["run", str(recipe)])
    assert result.exit_code == 1
    assert f"error[{rule}]: {words}" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("rule", [r for r, case in CASES.items() if case[2] is not None])
def test_a_run_evaluates_exactly_when_the_warning_says(tmp_path, tiny_model_dir, rule):
    make, words, eval_steps = CASES[rule]
    recipe = write(tmp_path, make(tiny_model_dir))
    lint = CliRunner().invoke(main, ["lint", str(recipe)])
    assert lint.exit_code == 0 and f"warning[{rule}]: " in lint.stderr and words in lint.stderr
    done = subprocess.run(
        ["recipe", "run", str(recipe)], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "eval_loss" in x] == eval_steps
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "before" in words and record["eval_before"]["step"] == 0  # one process: measured
    assert record["metrics"]["eval_loss"] == [x for x in lines if "eval_loss" in x][-1]["eval_loss"]
