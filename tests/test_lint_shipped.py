"""Every shipped recipe lints clean, quickly and without importing the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner import RECIPES_DIR
from runner.check import check_recipe
from runner.cli import main

SHIPPED = sorted(RECIPES_DIR.rglob("*.yaml"))
HEAVY = ("torch", "transformers", "trl", "datasets", "peft", "accelerate")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipe_has_no_errors(path: Path) -> None:
    result = check_recipe(path)
    assert result.ok, "\n".join(d.format() for d in result.diagnostics)
    assert result.resolved is not None


def test_lint_recipes_folder_exits_0() -> None:
    result = CliRunner().invoke(main, ["lint", str(RECIPES_DIR)])
    assert result.exit_code == 0, result.output
    assert f"{len(SHIPPED)} recipe(s) checked: 0 error(s)" in result.output


def test_lint_accepts_a_shipped_recipe_name() -> None:
    result = CliRunner().invoke(main, ["lint", "demo-uppercase"])
    assert result.exit_code == 0, result.output
    assert "1 recipe(s) checked: 0 error(s)" in result.output
    unknown = CliRunner().invoke(main, ["lint", "demo-uppercas"])
    assert unknown.exit_code == 1 and "demo-uppercase" in unknown.output  # did you mean


def test_json_output_has_the_documented_shape() -> None:
    result = CliRunner().invoke(main, ["lint", "--format", "json", "demo-uppercase"])
    document = json.loads(result.stdout)
    assert list(document) == ["files"]
    assert document["files"][0]["path"] == "demo-uppercase"
    assert document["files"][0]["diagnostics"] == []
    broken = Path(__file__).parent / "broken" / "fp16-and-bf16.yaml"
    result = CliRunner().invoke(main, ["lint", "--format", "json", str(broken)])
    (diagnostic,) = json.loads(result.stdout)["files"][0]["diagnostics"]
    assert set(diagnostic) == {"rule", "severity", "line", "column", "key", "message", "hint"}
    assert diagnostic["key"] == "training.fp16"


def test_set_override_is_checked_and_blamed_on_the_argument() -> None:
    result = CliRunner().invoke(
        main, ["lint", "demo-uppercase", "--set", "training.eval_strategy=sometimes"]
    )
    assert result.exit_code == 1
    assert "--set training.eval_strategy=sometimes: error[bad-value]" in result.stderr


def test_missing_file_is_an_error_not_a_traceback() -> None:
    result = CliRunner().invoke(main, ["lint", "no/such/recipe.yaml"])
    assert result.exit_code == 1
    assert "error[file-not-found]" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["lint"]).exit_code == 2
    assert CliRunner().invoke(main, ["lint", str(tmp_path)]).exit_code == 2
    assert CliRunner().invoke(main, ["lint", "--format", "xml", "x.yaml"]).exit_code == 2


def test_import_runner_lint_imports_no_heavy_library() -> None:
    code = (
        "import sys, runner.lint, runner.cli.lint_cmd, runner.cli.show_cmd, runner.cli.plan_cmd, runner.check, "
        "runner.expand.library_kwargs\n"
        "from runner.check import check_recipe\n"
        f"check_recipe({str(RECIPES_DIR / 'llama7b-qlora-3090.yaml')!r})\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_recipe_lint_command_in_a_fresh_process_imports_no_heavy_library() -> None:
    code = (
        "import sys\nfrom runner.cli import main\n"
        f"try:\n    main(['lint', {str(RECIPES_DIR)!r}])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
