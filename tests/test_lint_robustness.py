"""Lint never crashes: wrong types anywhere become diagnostics, not tracebacks."""

from __future__ import annotations

import pytest

from runner.check import check_recipe
from runner.lint.rules import Rule

WEIRD = ["text", 7, None, [1, "a"], {"x": {"y": 1}}]
TOP = ["model", "method", "lora", "quantization", "data", "training", "hardware", "launch",
       "early_stopping", "output_dir", "name"]  # fmt: skip
NESTED = [
    "training.bf16", "training.eval_strategy", "training.max_length", "training.learning_rate",
    "training.eval_steps", "training.save_steps", "training.load_best_model_at_end",
    "training.packing", "model.id", "model.config", "model.dtype", "data.train", "data.eval",
    "data.train.0", "data.train.0.source", "launch.deepspeed", "launch.strategy",
    "quantization.load_in_4bit", "hardware.gpu", "hardware.memory_gib", "lora.r",
]  # fmt: skip


def yaml_value(value) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize("key", TOP + NESTED)
def test_wrong_types_give_diagnostics_with_hints_and_never_crash_a_rule(key: str) -> None:
    for value in WEIRD:
        for recipe in ("tinyllama-qlora-3070", "demo-uppercase"):
            result = check_recipe(recipe, [f"{key}={yaml_value(value)}"])
            rules = {d.rule for d in result.diagnostics}
            assert "rule-crashed" not in rules, (key, value, result.diagnostics)
            assert all(d.hint for d in result.diagnostics), (key, value, result.diagnostics)


def test_a_crashing_rule_becomes_a_warning_and_the_others_still_run(monkeypatch) -> None:
    import runner.check
    from runner.lint.rules import settings_rules

    def explode(ctx):
        raise ZeroDivisionError("boom")

    bad = Rule("always-crashes", "error", "never shown", "", explode)
    monkeypatch.setattr(runner.check, "settings_rules", lambda: [bad, *settings_rules()])
    result = check_recipe("demo-uppercase", ["training.bf16=true", "training.fp16=true"])
    crashed = [d for d in result.diagnostics if d.rule == "rule-crashed"]
    assert len(crashed) == 1 and crashed[0].severity == "warning"
    assert "always-crashes" in crashed[0].message
    assert "fp16-and-bf16" in {d.rule for d in result.diagnostics}  # the others still ran
