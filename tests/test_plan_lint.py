"""Lint rules hardware-fit (error) and hardware-fit-headroom (warning)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from runner.check import check_recipe
from runner.cli import main
from runner.recipe.catalog import find_recipe

FULL = Path(find_recipe("llama32-1b-full-3090"))


def write_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = FULL.read_text()
    assert old in text
    path = tmp_path / "variant.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_a_full_finetune_of_a_1b_model_on_an_8gb_card_is_a_hardware_fit_error(tmp_path):
    path = write_variant(tmp_path, "gpu: rtx-3090", "gpu: rtx-3070")
    result = check_recipe(path)
    (diagnostic,) = [d for d in result.diagnostics if d.rule == "hardware-fit"]
    assert diagnostic.severity == "error"
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "gpu:" in text)
    assert diagnostic.line == line
    assert "exceeds the 8.0 GiB of rtx-3070" in diagnostic.message
    assert "recipe plan" in diagnostic.hint
    assert not result.ok


def test_under_ten_percent_headroom_is_a_warning_only(tmp_path):
    path = write_variant(tmp_path, "gpu: rtx-3090", "memory_gib: 13")
    result = check_recipe(path)
    rules = {d.rule: d.severity for d in result.diagnostics}
    assert rules.get("hardware-fit-headroom") == "warning"
    assert "hardware-fit" not in rules
    assert result.ok


def test_lint_judges_the_figure_recipe_plan_prints(tmp_path):
    # one plan, made once: lint's verdict quotes the total and the first change that fits
    # exactly as `recipe plan` computes them, so the two commands cannot disagree
    path = write_variant(tmp_path, "gpu: rtx-3090", "gpu: rtx-3070")
    (diagnostic,) = [d for d in check_recipe(path).diagnostics if d.rule == "hardware-fit"]
    plan = CliRunner().invoke(main, ["plan", str(path), "--format", "json"])
    report = json.loads(plan.stdout)
    assert f"estimated peak memory {report['total_bytes'] / 2**30:.1f} GiB" in diagnostic.message
    fitting = next(c for c in report["changes"] if c["total_bytes"] <= report["capacity_bytes"])
    assert f"({fitting['total_bytes'] / 2**30:.1f} GiB)" in diagnostic.hint


def test_a_recipe_without_a_card_is_not_checked(tmp_path):
    path = write_variant(tmp_path, "gpu: rtx-3090", "gpu: cpu")
    assert not [d for d in check_recipe(path).diagnostics if d.rule.startswith("hardware-fit")]
