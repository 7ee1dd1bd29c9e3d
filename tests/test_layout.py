"""The layout the product card names: recipes/, schemas/ and templates/ at the top of the
checkout, the one source of what the wheel carries (as runner/shipped/<name>/).

From a checkout a shipped recipe runs in place (`recipe run recipes/x.yaml`), and a
recipe copied by hand lints: what no longer resolves from the copy's folder is named,
with the line to write instead. tests/test_package.py proves the built wheel.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

import runner
from runner import RECIPES_DIR, SCHEMAS_DIR, TEMPLATES_DIR
from runner.cli import main

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

SHIPPED = sorted(RECIPES_DIR.glob("*.yaml"))
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def lint_json(*args: str) -> dict:
    result = CliRunner().invoke(main, ["lint", "--format", "json", *args])
    assert "Traceback" not in result.output
    return json.loads(result.stdout)


def follow_hint(diagnostic: dict, line: str) -> str:
    """`line` rewritten as the hint says: it quotes the `key: value` (or the modeline)
    to write instead, which replaces the line from that key on."""
    written = re.search(r"`((?:# yaml-language-server: |source: )\S+)`", diagnostic["hint"])
    assert written, diagnostic["hint"]
    return line[: line.index(written.group(1)[:7])] + written.group(1)


def test_a_checkout_reads_the_top_level_folders_and_keeps_no_second_copy() -> None:
    assert RECIPES_DIR == REPO / "recipes"
    assert SCHEMAS_DIR == REPO / "schemas"
    assert TEMPLATES_DIR == REPO / "templates"
    inside = {p.name for p in (REPO / "runner" / "shipped").iterdir()}
    assert inside == {"constraints.txt"}  # the lock only; nothing shipped twice


def test_every_subpackage_of_runner_is_in_the_wheel() -> None:
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "runner").rglob("__init__.py")
    }
    missing = on_disk - set(SETUPTOOLS["packages"])
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"


@pytest.mark.parametrize("folder", ["recipes", "schemas", "templates"])
def test_every_shipped_file_is_mapped_into_the_wheel(folder: str) -> None:
    """Each file of the folder (schemas/source/ aside: gen_schema's inputs) matches a
    package-data pattern of the package pyproject.toml maps onto its folder."""
    folders = {
        Path(path): package
        for package, path in SETUPTOOLS["package-dir"].items()
        if Path(path).parts[0] == folder
    }
    assert Path(folder) in folders and folders[Path(folder)] == f"runner.shipped.{folder}"
    unshipped = []
    for path in sorted((REPO / folder).rglob("*")):
        relative = path.relative_to(REPO)
        if path.is_dir() or relative.parts[:2] == ("schemas", "source"):
            continue
        package = folders.get(relative.parent)
        patterns = SETUPTOOLS["package-data"].get(package, []) if package else []
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            unshipped.append(str(relative))
    assert not unshipped, f"not in the wheel: {unshipped}"


def test_a_shipped_recipe_lints_by_its_path_in_the_checkout(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    report = lint_json(*(f"recipes/{p.name}" for p in SHIPPED))
    for file in report["files"]:
        rules = {d["rule"] for d in file["diagnostics"]}
        # its demo data and its `$schema` modeline resolve from recipes/
        assert not rules & {"data-file-missing", "schema-modeline", "file-not-found"}, file


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_recipe_copied_by_hand_lints_once_its_hints_are_followed(path, tmp_path) -> None:
    copy = tmp_path / "mine.yaml"
    shutil.copy(path, copy)
    before = lint_json(str(copy))["files"][0]["diagnostics"]
    assert {d["rule"] for d in before} >= {"schema-modeline"}
    lines = copy.read_text().splitlines()
    for diagnostic in before:
        if diagnostic["rule"] in ("schema-modeline", "data-file-missing"):
            lines[diagnostic["line"] - 1] = follow_hint(diagnostic, lines[diagnostic["line"] - 1])
    copy.write_text("\n".join(lines) + "\n")
    after = lint_json(str(copy))["files"][0]["diagnostics"]
    assert not [d for d in after if d["severity"] == "error"], after
    assert not {d["rule"] for d in after} & {"schema-modeline", "data-file-missing"}


def test_a_hand_copy_of_the_demo_names_the_shipped_data_and_recipe_new(tmp_path) -> None:
    copy = tmp_path / "mine.yaml"
    shutil.copy(RECIPES_DIR / "demo-uppercase.yaml", copy)
    result = CliRunner().invoke(main, ["lint", str(copy)])
    assert result.exit_code == 1
    line = next(x for x in result.stderr.splitlines() if "[data-file-missing]" in x)
    shipped = (RECIPES_DIR / "data" / "uppercase-train.jsonl").resolve().as_posix()
    assert f"write `source: {shipped}`" in line
    assert "`recipe new mine.yaml --from demo-uppercase`" in line
    modeline = next(x for x in result.stderr.splitlines() if "[schema-modeline]" in x)
    assert f"$schema={(SCHEMAS_DIR / 'recipe-v1.schema.json').resolve().as_posix()}" in modeline


@pytest.mark.slow
def test_recipe_run_runs_a_shipped_recipe_in_place_from_the_checkout(tmp_path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "runner.cli", "run", "recipes/demo-uppercase.yaml",
         "--set", f"output_dir={out}", "--set", "training.max_steps=3"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(runner.__file__).parents[1])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "demo-uppercase succeeded; 3 steps" in done.stdout
    record = json.loads((out / "run.json").read_text())
    assert record["recipe_path"] == str(RECIPES_DIR / "demo-uppercase.yaml")


def test_no_function_in_runner_is_over_60_lines():
    """STYLE: a function a reader takes in at once; a longer one is split by what it does."""
    import ast

    long = []
    for path in sorted((REPO / "runner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length})")
    assert not long, long
