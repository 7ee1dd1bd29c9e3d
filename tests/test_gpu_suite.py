"""bench/gpu_suite.py: every shipped GPU recipe, packed and unpacked, through the real
`recipe run`; its dry run lists the points and exact commands on any machine, every
derived recipe lints clean, and on the CPU one tiny point runs end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from runner import RECIPES_DIR
from runner.cli import main

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "gpu_suite.py"
GPU_RECIPES = sorted(
    p.stem
    for p in RECIPES_DIR.glob("*.yaml")
    if yaml.safe_load(p.read_text())["hardware"].get("gpu") != "cpu"
)


def suite_module():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def suite(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SUITE), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def listed(stdout: str) -> dict[str, tuple[Path, list[str]]]:
    """point name -> (derived recipe, command) from a dry run's output."""
    lines = [line for line in stdout.splitlines() if not line.startswith("#   ")]
    points = {}
    for header, command in zip(lines[::2], lines[1::2], strict=True):
        name, derived = header.removeprefix("# ").split(": ")
        points[name] = (Path(derived), shlex.split(command))
    return points


def test_dry_run_lists_every_gpu_recipe_packed_and_unpacked_with_commands_that_lint_clean(
    tmp_path,
):
    assert len(GPU_RECIPES) == 3
    result = suite("--dry-run", "--gpu", "--work", str(tmp_path))
    assert result.returncode == 0, result.stderr
    points = listed(result.stdout)
    assert sorted(points) == sorted(f"{r}/{p}" for r in GPU_RECIPES for p in ("packed", "unpacked"))
    for derived, command in points.values():
        assert command == [
            sys.executable, "-m", "runner.cli", "run", str(derived),
            "--cap-memory", "--overwrite", "--no-cache",
        ]  # fmt: skip
        assert derived.is_file() and derived.parent.parent == tmp_path
    assert not list(tmp_path.glob("*/run"))  # nothing ran
    linted = CliRunner().invoke(main, ["lint", *(str(d) for d, _ in points.values())])
    assert linted.exit_code == 0, linted.output
    assert "0 error(s)" in linted.output


def test_a_derived_recipe_keeps_the_recipes_training_and_the_real_architecture(tmp_path):
    module = suite_module()
    (point,) = module.write_points(tmp_path, ["llama32-1b-full-3090/packed"], 30, cpu=False)
    derived = yaml.safe_load(point.derived.read_text())
    shipped = yaml.safe_load((RECIPES_DIR / "llama32-1b-full-3090.yaml").read_text())
    config = json.loads((ROOT / "bench" / "configs" / "llama-3.2-1b-instruct.json").read_text())
    assert derived["hardware"] == shipped["hardware"] and derived["method"] == "full"
    assert "id" not in derived["model"] and derived["model"]["tokenizer"] == "byte-level"
    assert derived["model"]["config"]["vocab_size"] == config["vocab_size"]
    assert derived["model"]["config"]["num_hidden_layers"] == config["num_hidden_layers"]
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_length"):
        assert derived["training"][key] == shipped["training"][key]
    assert derived["training"]["optim"] == shipped["training"]["optim"]
    assert derived["training"]["packing"] is True and derived["training"]["max_steps"] == 30
    assert derived["training"]["eval_strategy"] == "no"
    assert derived["training"]["save_strategy"] == "no"
    rows = (point.folder / "rows.jsonl").read_text().splitlines()
    first = json.loads(rows[0])
    # byte-level: one byte one token, plus the end-of-turn token
    assert len(first["prompt"]) + len(first["completion"]) + 1 == 1024


def test_without_cuda_the_dry_run_lists_the_cpu_commands_and_says_they_are_not_gpu_truth(
    tmp_path,
):
    result = suite("--dry-run", "--cpu", "--only", GPU_RECIPES[0], "--work", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "NOT GPU truth" in result.stderr
    for derived, command in listed(result.stdout).values():
        assert command[-1] == "--cpu"
        assert yaml.safe_load(derived.read_text())["training"]["max_length"] == 128


def test_an_out_of_memory_point_is_reported_as_such():
    module = suite_module()
    point = module.Point("r", packing=False, derived=Path("/x/recipe.yaml"))
    record = {"status": "failed", "error": "out of GPU memory (CUDA out of memory. Tried ...)"}
    row = module.figures(point, ["recipe"], 1, 3.0, record, ["last line"])
    assert row["status"] == "out of memory" and row["last_lines"] == ["last line"]
    assert module.figures(point, ["recipe"], 1, 3.0, {}, ["boom"])["status"] == "failed"


@pytest.mark.slow
def test_one_tiny_point_runs_on_the_cpu_and_writes_its_figures(tmp_path):
    pytest.importorskip("bitsandbytes")
    result = suite(
        "--cpu", "--only", "tinyllama-qlora-3070/packed", "--steps", "2", "--work", str(tmp_path),
        env={"CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "NOT GPU truth" in result.stdout
    (written,) = tmp_path.glob("cpu-*.json")
    data = json.loads(written.read_text())
    assert data["cpu_figures_not_gpu_truth"] is True and data["machine"]["device"] == "cpu"
    assert data["machine"]["versions"]["torch"]
    (row,) = data["points"]
    assert row["status"] == "succeeded" and row["steps"] == 2
    assert row["tokens"] == row["token_slots"] == 2 * 4 * 4 * 128  # rows at max_length
    assert row["padding_share"] == 0
    assert row["peak_rss_bytes"] > 0 and row["plan_bytes"] > 0 and row["peak_over_plan"] > 0
    assert row["tokens_per_second"] > 0 and row["tokens_per_second_after_warmup"] > 0
    assert row["mfu"] is None  # no GPU: no utilisation
    assert row["cap"]["applied"] is False and "CPU" in row["cap"]["reason"]
    table = (tmp_path / f"{written.stem}.md").read_text()
    assert "| tinyllama-qlora-3070/packed | rtx-3070 |" in table and "NOT GPU truth" in table
