"""Several processes and machines for real, on the CPU: DDP over gloo, DeepSpeed ZeRO-2
and ZeRO-3, and two "machines" on 127.0.0.1, each through the real `recipe run`, each
ending in one loadable model that `recipe infer` answers from, with the losses of a
single process at the same global batch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import logged_step, session_processes, tiny_recipe, wait_for, write_recipe

from runner.cli import main

pytestmark = pytest.mark.slow

STEPS = 12
GLOBAL_BATCH = 8
# DDP averages the loss over the tokens of all processes, as one process does, so the
# losses agree to float rounding; sharded optimizers add a little more.
TOLERANCE = 2e-3


def recipe_for(model_dir: Path, *, processes: int, **launch) -> dict:
    recipe = tiny_recipe(
        model_dir,
        max_steps=STEPS,
        per_device_train_batch_size=GLOBAL_BATCH // processes,
        eval_strategy="no",
        logging_steps=1,
    )
    recipe["data"].pop("eval")
    recipe["launch"] = {"num_processes": processes, **launch}
    return recipe


def run(path: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["recipe", "run", str(path), *args, "--", "--num_cpu_threads_per_process", "1"],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


def answers(run_dir: Path) -> str:
    result = CliRunner().invoke(
        main, ["infer", str(run_dir), "--prompt", "Uppercase: abc\n", "--max-new-tokens", "4"]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("single")
    run(write_recipe(folder / "r.yaml", recipe_for(tiny_model_dir, processes=1)))
    return folder / "run"


@pytest.mark.parametrize(
    "launch",
    [
        {"strategy": "ddp"},
        {"strategy": "deepspeed", "deepspeed": {"zero_stage": 2}},
        {"strategy": "deepspeed", "deepspeed": {"zero_stage": 3}},
    ],
    ids=["ddp", "zero2", "zero3"],
)
def test_two_processes_train_like_one_and_leave_one_loadable_model(
    tmp_path, tiny_model_dir, single, launch
):
    from transformers import AutoModelForCausalLM

    path = write_recipe(tmp_path / "r.yaml", recipe_for(tiny_model_dir, processes=2, **launch))
    done = run(path)
    run_dir = tmp_path / "run"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["metrics"]["steps"] == STEPS
    assert "accelerate.yaml" in done.stderr  # launched with the run's own config
    got, want = losses(run_dir), losses(single)
    assert len(got) == len(want) == STEPS  # one writer: each step logged once
    assert got == pytest.approx(want, abs=TOLERANCE)
    assert (
        record["metrics"]["tokens"]
        == json.loads((single / "run.json").read_text())["metrics"]["tokens"]
    )
    model = AutoModelForCausalLM.from_pretrained(run_dir / "final")  # gathered, whole
    reference = AutoModelForCausalLM.from_pretrained(single / "final")
    for (name, mine), (_, theirs) in zip(
        model.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert mine.shape == theirs.shape and (mine - theirs).abs().max() < 1e-2, name
    assert answers(run_dir) == answers(single)


def test_a_killed_recipe_run_stops_both_ddp_processes_after_one_checkpoint(
    tmp_path, tiny_model_dir
):
    recipe = recipe_for(tiny_model_dir, processes=2, strategy="ddp", main_process_port=free_port())
    recipe["training"].update(max_steps=80, save_strategy="steps", save_steps=10)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    command = ["recipe", "run", str(path), "--", "--num_cpu_threads_per_process", "1"]
    with open(tmp_path / "first.log", "w") as log:  # what it printed, if this fails
        first = subprocess.Popen(
            command, cwd=tmp_path, stdout=log, stderr=log, start_new_session=True
        )
    run_dir = tmp_path / "run"
    wait_for(lambda: logged_step(run_dir) >= 12)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    session = json.loads((run_dir / "run.json").read_text())["sessions"][0]["id"]
    wait_for(lambda: not session_processes(session), timeout=10)  # both ranks, the launcher
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert record["stopped"]["reason"] == f"`recipe run` (pid {first.pid}) ended"
    step = record["stopped"]["step"]
    assert (run_dir / f"checkpoint-{step}" / "recipe-progress.json").is_file()  # all ranks

    resumed = run(path, "--resume")
    assert f"resuming from checkpoint-{step}" in resumed.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert [s["status"] for s in record["sessions"]] == ["interrupted", "succeeded"]
    assert record["sessions"][1]["from_step"] == step and record["metrics"]["steps"] == 80
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert sorted(r["step"] for r in map(json.loads, lines) if "loss" in r) == list(range(1, 81))


def test_fsdp_on_the_cpu_is_refused_before_anything_starts(tmp_path, tiny_model_dir):
    path = write_recipe(
        tmp_path / "r.yaml", recipe_for(tiny_model_dir, processes=2, strategy="fsdp")
    )
    done = subprocess.run(
        ["recipe", "run", str(path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1 and "fsdp needs CUDA GPUs" in done.stderr
    assert not (tmp_path / "run").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_machines_on_one_host_make_one_run_and_both_exit_0(tmp_path, tiny_model_dir, single):
    recipe = recipe_for(
        tiny_model_dir,
        processes=2,
        strategy="ddp",
        num_machines=2,
        main_process_ip="127.0.0.1",
        main_process_port=free_port(),
    )
    path = write_recipe(tmp_path / "r.yaml", recipe)
    printed = subprocess.run(
        ["recipe", "run", str(path), "--print-launch"], capture_output=True, text=True
    )
    assert printed.returncode == 0 and printed.stdout.count("--set launch.machine_rank=") == 2
    command = ["recipe", "run", str(path), "--", "--num_cpu_threads_per_process", "1"]
    other = subprocess.Popen(
        [*command[:3], "--set", "launch.machine_rank=1", *command[3:]],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = subprocess.run(
        [*command[:3], "--set", "launch.machine_rank=0", *command[3:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out, err = other.communicate(timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert other.returncode == 0, err[-3000:]
    assert "machine 1 of 2: done" in out
    run_dir = tmp_path / "run"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    # one preparation path: both machines read the data a one-machine run reads
    key = json.loads((single / "run.json").read_text())["data_cache"]["key"]
    node = json.loads((run_dir / ".recipe-node-1" / "prepared.json").read_text())
    assert record["data_cache"]["key"] == node["key"] == key
    rows = [line for line in first.stderr.splitlines() if line.startswith("rows: ")]
    assert len(rows) == 1 and rows == [
        line for line in err.splitlines() if line.startswith("rows: ")
    ]
    assert not (run_dir / ".recipe-node-1" / "run.json").exists()  # one record
    assert losses(run_dir) == pytest.approx(losses(single), abs=TOLERANCE)
    assert (run_dir / "final" / "model.safetensors").is_file()
