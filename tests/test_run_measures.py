"""Every `recipe run` measures itself: run.json holds the peak memory of each process
beside the plan `recipe plan` makes for the same recipe, their ratio, the token slots
the forwards computed and the padding share; the end-of-run line says them. Real runs of
the tiny model on the CPU, padded and packed."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner
from conftest import tiny_recipe, write_recipe

from runner.cli import main
from runner.run.measures import gpu_peak_tflops, memory_record, utilisation
from runner.run.metrics import RunMeter
from runner.run.summary import summary_line

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """(folder, recipe path, finished process) of a padded and a packed run."""
    done = {}
    for name, packing in (("padded", False), ("packed", True)):
        folder = tmp_path_factory.mktemp(name)
        recipe = tiny_recipe(tiny_model_dir, packing=packing)
        path = write_recipe(folder / "r.yaml", recipe)
        result = subprocess.run(
            ["recipe", "run", str(path)], cwd=folder, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        done[name] = (folder, path, result)
    return done


@pytest.mark.parametrize("name", ["padded", "packed"])
def test_run_json_holds_the_plan_recipe_plan_prints_for_the_same_recipe(runs, name):
    folder, path, _ = runs[name]
    record = json.loads((folder / "run" / "run.json").read_text())
    printed = CliRunner().invoke(main, ["plan", str(path), "--format", "json"])
    plan = json.loads(printed.stdout)
    assert record["plan"]["total_bytes"] == plan["total_bytes"]
    assert record["plan"]["reserved_bytes"] == plan["reserved_bytes"]
    assert record["plan"]["allocated_bytes"] == plan["allocated_bytes"]
    assert record["plan"]["flops_per_token"] > 0


@pytest.mark.parametrize("name", ["padded", "packed"])
def test_run_json_holds_each_processs_peak_memory_and_its_ratio_to_the_plan(runs, name):
    folder, _, result = runs[name]
    record = json.loads((folder / "run" / "run.json").read_text())
    memory = record["memory"]
    assert memory["device"] == {"type": "cpu"}
    (process,) = memory["processes"]
    assert process["rank"] == 0 and process["peak_rss"] > 50 * 1024**2
    assert memory["measured"] == "peak_rss" and memory["peak_bytes"] == process["peak_rss"]
    assert memory["plan_figure"] == "allocated_bytes"
    assert memory["plan_bytes"] == record["plan"]["allocated_bytes"]
    assert memory["peak_over_plan"] == round(memory["peak_bytes"] / memory["plan_bytes"], 3)
    gib = 1024**3
    line = result.stdout.strip().splitlines()[-1]
    expected = (
        f"peak {memory['peak_bytes'] / gib:.1f} GiB RSS (plan {memory['plan_bytes'] / gib:.1f} GiB)"
    )
    assert expected in line


def test_padded_batches_report_their_padding_and_packed_ones_none(runs):
    padded = json.loads((runs["padded"][0] / "run" / "run.json").read_text())["metrics"]
    packed = json.loads((runs["packed"][0] / "run" / "run.json").read_text())["metrics"]
    assert padded["token_slots"] > padded["tokens"] > 0
    assert 0 < padded["padding_share"] < 1
    assert padded["padding_share"] == round(1 - padded["tokens"] / padded["token_slots"], 4)
    assert packed["token_slots"] == packed["tokens"] and packed["padding_share"] == 0
    assert packed["mfu"] is None and padded["mfu"] is None  # no GPU: no utilisation
    assert f"padding {padded['padding_share']:.0%}" in runs["padded"][2].stdout
    assert packed["final_loss"] < packed["first_loss"]


def test_a_cuda_run_compares_reserved_with_the_plans_reserved_and_reports_mfu():
    meter = RunMeter()
    meter.device = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85 * 10**9}
    meter.processes = [
        {"rank": 0, "max_memory_allocated": 10 * 1024**3, "max_memory_reserved": 11 * 1024**3},
        {"rank": 1, "max_memory_allocated": 10 * 1024**3, "max_memory_reserved": 12 * 1024**3},
    ]
    plan = {"reserved_bytes": 12 * 1024**3, "allocated_bytes": 11 * 1024**3}
    memory = memory_record(plan, meter)
    assert memory["peak_bytes"] == 12 * 1024**3 and memory["peak_over_plan"] == 1.0
    assert memory["measured"] == "max_memory_reserved"
    record = {"name": "x", "status": "succeeded", "metrics": {}, "memory": memory}
    assert "peak 12.0 GiB (plan 12.0 GiB)" in summary_line(record)
    peak = gpu_peak_tflops(meter.device)
    assert peak == 989.0
    mfu = utilisation(1_000_000, 10.0, 6 * 1.2e9, 2, peak)
    assert mfu == pytest.approx(1e6 * 6 * 1.2e9 / (10 * 2 * 989e12))
