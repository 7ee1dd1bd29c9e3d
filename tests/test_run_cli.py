"""`recipe run` and `recipe preview` through the real CLI, for what stops a run early."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, settings_of, tiny_recipe, write_recipe

from runner import RECIPES_DIR
from runner.expand.engines import cpu_threads
from runner.expand.launch import launch_argv
from runner.expand.placement import Placement, gpu_available, needs_gpu


def recipe_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["recipe", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_dry_run_prints_the_exact_launch_command_and_starts_nothing(tmp_path, tiny_model_dir):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_model_dir))
    result = recipe_cli(
        "run", str(path), "--dry-run", "--", "--num_cpu_threads_per_process", "2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "# launch command"
    threads = cpu_threads(Placement(cpu=True), 1)
    assert lines[1] == (
        f"accelerate launch --config_file {tmp_path / 'run' / 'accelerate.yaml'} --quiet "
        f"--mixed_precision no --num_cpu_threads_per_process {threads} "
        f"--num_cpu_threads_per_process 2 -m runner.train {tmp_path / 'run'} --cpu"
    )  # the user's arguments come last, so they win
    assert "# resolved recipe" in lines and "name: tiny-full" in result.stdout
    assert not (tmp_path / "run").exists()


def test_show_as_launch_prints_exactly_what_run_executes(tmp_path, tiny_model_dir):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_model_dir, max_steps=1))
    shown = recipe_cli("show", str(path), "--as", "launch", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    result = recipe_cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert shlex.split(shown.stdout.strip()) == record["command"]
    assert f"$ {shown.stdout.strip()}" in result.stderr


NO_GPU_NOTE = (
    "note: this machine has no CUDA GPU; this is what `recipe run` executes on the recipe's"
)


@pytest.mark.skipif(gpu_available(), reason="this machine has a GPU")
def test_a_gpu_recipe_on_a_machine_without_one_stops_before_reading_data(tmp_path):
    result = recipe_cli("run", "llama32-1b-full-3090", cwd=tmp_path)
    assert result.returncode == 1
    assert "has no CUDA GPU" in result.stderr and "--cpu" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()
    forced = recipe_cli("show", "llama32-1b-full-3090", "--as", "launch", "--cpu", cwd=tmp_path)
    assert forced.returncode == 0 and "--mixed_precision no" in forced.stdout
    assert NO_GPU_NOTE not in forced.stderr


GPU_RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml") if needs_gpu(settings_of(p.stem)))
STRATEGIES = {
    "ddp": ["launch.strategy=ddp"],
    "zero3": ["launch.strategy=deepspeed", "launch.deepspeed.zero_stage=3"],
    "fsdp": ["launch.strategy=fsdp"],
}


def planned(name: str, strategy: str) -> list[str]:
    """--set arguments: 4 GPUs with `strategy`; a QLoRA recipe sharded as lint asks."""
    values = ["hardware.count=4", "launch.num_processes=4", *STRATEGIES[strategy]]
    if strategy != "ddp" and settings_of(name).method == "qlora":
        values += ["quantization.bnb_4bit_quant_storage=bfloat16", "training.optim=adamw_torch"]
    return [part for value in values for part in ("--set", value)]


@pytest.mark.skipif(gpu_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("name", GPU_RECIPES)
def test_planning_a_gpu_recipe_on_a_machine_without_one_prints_its_gpu_command(
    tmp_path, name, strategy
):
    sets = planned(name, strategy)
    settings = settings_of(name, *sets[1::2], f"output_dir={tmp_path / 'outputs' / name}")
    gpu_command = shlex.join(launch_argv(settings, Placement(cpu=False)))
    assert "--mixed_precision no" not in gpu_command and not gpu_command.endswith("--cpu")
    shown = recipe_cli("show", name, "--as", "launch", *sets, cwd=tmp_path)
    dry = recipe_cli("run", name, "--dry-run", *sets, cwd=tmp_path)
    printed = recipe_cli("run", name, "--print-launch", *sets, cwd=tmp_path)
    for done in (shown, dry, printed):
        assert done.returncode == 0, done.stderr
        assert done.stderr.count(NO_GPU_NOTE) == 1  # one line says this machine has none
    assert shown.stdout == gpu_command + "\n"
    assert dry.stdout.splitlines()[:2] == ["# launch command", gpu_command]
    assert f"#   which runs: {gpu_command}" in printed.stdout.splitlines()
    assert not (tmp_path / "outputs").exists()  # planning starts and writes nothing


def test_lint_errors_stop_the_run_before_anything_loads(tmp_path, tiny_model_dir):
    recipe = tiny_recipe(tiny_model_dir)
    recipe["training"]["warmup_ratio"] = 0.1
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = recipe_cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "r.yaml:" in result.stderr and "warmup_ratio" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_bad_rows_are_reported_with_source_and_row_before_any_model_loads(tmp_path, tiny_model_dir):
    data = tmp_path / "data.jsonl"
    data.write_text(
        '{"prompt": "a", "completion": "A"}\n{"prompt": "b", "completion": ""}\n'
        '{"prompt": "c", "completion": 3}\n',
        encoding="utf-8",
    )
    recipe = tiny_recipe(tiny_model_dir)
    recipe["data"]["train"] = [{"source": "data.jsonl", "format": "prompt_completion"}]
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = recipe_cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "data.jsonl:2: empty response" in result.stderr
    assert "data.jsonl:3: 'completion' is int 3, expected text" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # stopped before the run directory or a model


def test_a_non_empty_output_dir_is_refused(tmp_path, tiny_model_dir):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.txt").write_text("keep me")
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_model_dir))
    result = recipe_cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "is not a run directory" in result.stderr and "precious.txt" in result.stderr
    # --overwrite replaces earlier runs only, never a folder that is not a run
    result = recipe_cli("run", str(path), "--overwrite", cwd=tmp_path)
    assert result.returncode == 1 and "is not a run directory" in result.stderr
    assert (tmp_path / "run" / "precious.txt").read_text() == "keep me"


def test_resume_without_a_checkpoint_says_so(tmp_path, tiny_model_dir):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_model_dir))
    result = recipe_cli("run", str(path), "--resume", cwd=tmp_path)
    assert result.returncode == 1 and "no checkpoint to resume from" in result.stderr


def test_preview_marks_trained_tokens_and_reports_lengths(tmp_path):
    result = recipe_cli("preview", "demo-uppercase", "-n", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("--- example") == 2
    assert "Uppercase: " in out and "[[" in out and "</s>]]" in out  # answer + eos trained
    assert "longer than max_length 64 would be truncated" in out
    assert "pad token '<pad>', end-of-turn token '</s>'" in out


def test_preview_shows_the_prompt_untrained(tmp_path):
    result = recipe_cli("preview", "demo-uppercase", "-n", "1", cwd=tmp_path)
    example = result.stdout.split("--- example 1")[1].splitlines()[1:3]
    first = "\n".join(example)
    assert first.startswith("Uppercase: ") and not first.startswith("[[")
    word = first.split("Uppercase: ")[1].split("\n")[0]
    assert f"[[{word.upper()}</s>]]" in result.stdout


def test_demo_data_is_reproducible(tmp_path):
    before = {p.name: p.read_bytes() for p in (RECIPES_DIR / "data").glob("uppercase-*.jsonl")}
    subprocess.run([sys.executable, str(REPO / "tools" / "make_demo_data.py")], check=True)
    after = {p.name: p.read_bytes() for p in (RECIPES_DIR / "data").glob("uppercase-*.jsonl")}
    assert before == after
    json.loads((RECIPES_DIR / "data" / "uppercase-eval.jsonl").read_text().splitlines()[0])


def test_a_model_that_cannot_be_found_fails_with_a_message_not_a_traceback(
    tmp_path, tiny_model_dir
):
    recipe = tiny_recipe(tiny_model_dir)
    recipe["model"]["id"] = "no-such-org/no-such-model"
    recipe["model"]["tokenizer"] = str(tiny_model_dir)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = recipe_cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "training failed: cannot load the model no-such-org/no-such-model (model.id)" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed" and record["exit_code"] == 1
