"""`recipe run --cap-memory` holds each training process to the recipe's card: the flag
reaches the training process's command line, the fraction is the card (less the CUDA
context) over the device, and on the CPU it says it does nothing."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner
from conftest import tiny_recipe, write_recipe

from runner.cli import main
from runner.expand.launch import launch_argv
from runner.expand.placement import Placement
from runner.plan.estimate import CUDA_CONTEXT_BYTES
from runner.recipe.hardware import CARDS
from runner.run.memory_cap import apply_memory_cap, cap_fraction, plan_memory_cap

GIB = 1024**3


def test_the_fraction_is_the_cap_over_the_device_and_none_when_the_device_is_no_bigger():
    assert cap_fraction(24 * GIB, 96 * GIB) == 0.25
    assert cap_fraction(24 * GIB, 24 * GIB) is None
    assert cap_fraction(80 * GIB, 24 * GIB) is None
    assert cap_fraction(1, 0) is None


def test_a_3090_recipe_on_an_h200_gets_the_3090s_memory_less_the_cuda_context():
    h200 = int(139.8 * GIB)
    cap = plan_memory_cap(CARDS["rtx-3090"], h200)
    assert cap.applied
    assert cap.card == "rtx-3090" and cap.card_bytes == 24 * GIB
    assert cap.cap_bytes == 24 * GIB - CUDA_CONTEXT_BYTES
    assert cap.device_bytes == h200
    assert cap.fraction == round((24 * GIB - CUDA_CONTEXT_BYTES) / h200, 6)
    assert "RTX 3090" in cap.reason
    assert cap.record()["fraction"] == cap.fraction


def test_a_card_as_big_as_the_gpu_or_no_card_caps_nothing_and_says_why():
    same = plan_memory_cap(CARDS["h100-80gb"], int(24 * GIB))
    assert not same.applied and same.fraction is None and "no bigger" in same.reason
    none = plan_memory_cap(None, 80 * GIB)
    assert not none.applied and "names no GPU" in none.reason
    cpu_card = plan_memory_cap(CARDS["cpu"], 80 * GIB)
    assert not cpu_card.applied


def test_on_the_cpu_the_cap_does_nothing_and_says_so():
    cap = apply_memory_cap(CARDS["rtx-3090"], Placement(cpu=True).device())
    assert not cap.applied and cap.fraction is None
    assert cap.reason == "--cap-memory does nothing on the CPU: there is no CUDA memory to cap"


def test_the_flag_reaches_the_training_process_command_line(tmp_path, tiny_model_dir):
    from conftest import settings_of

    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_model_dir))
    settings = settings_of(path)
    argv = launch_argv(settings, Placement(cpu=False), cap_memory=True)
    assert argv[-4:] == ["-m", "runner.train", str(settings.output_dir), "--cap-memory"]
    assert "--cap-memory" not in launch_argv(settings, Placement(cpu=False))


def test_dry_run_and_print_launch_show_the_cap(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_model_dir))
    dry = CliRunner().invoke(main, ["run", str(path), "--cap-memory", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    launch = dry.stdout.splitlines()[1]
    assert launch.endswith(f"-m runner.train {tmp_path / 'run'} --cpu --cap-memory")
    printed = CliRunner().invoke(main, ["run", str(path), "--cap-memory", "--print-launch"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.splitlines()[1] == f"recipe run {path} --cap-memory"
    assert printed.stdout.splitlines()[2].endswith("--cpu --cap-memory")


@pytest.mark.slow
def test_a_capped_run_on_the_cpu_says_the_cap_does_nothing_and_records_it(tmp_path, tiny_model_dir):
    import json

    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_model_dir, max_steps=2))
    result = subprocess.run(
        ["recipe", "run", str(path), "--cap-memory"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--cap-memory does nothing on the CPU" in result.stderr
    cap = json.loads((tmp_path / "run" / "run.json").read_text())["memory"]["cap"]
    assert cap["applied"] is False and cap["fraction"] is None


def test_print_launch_repeats_cpu_when_a_gpu_recipe_is_forced_onto_the_cpu(tmp_path, monkeypatch):
    # The printed `recipe run` is what a user copies to each machine: without --cpu a
    # GPU recipe would stop there on a machine with no GPU.
    monkeypatch.chdir(tmp_path)
    printed = CliRunner().invoke(main, ["run", "llama32-1b-full-3090", "--cpu", "--print-launch"])
    assert printed.exit_code == 0, printed.output
    lines = printed.stdout.splitlines()
    assert lines[1] == "recipe run llama32-1b-full-3090 --cpu"
    assert lines[2].endswith(
        "-m runner.train " + str(tmp_path / "outputs/llama32-1b-full-3090") + " --cpu"
    )
