"""`recipe plan`: the terms, the verdict against the card, advice, and its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from runner.cli import main

SHIPPED = ("llama32-1b-full-3090", "tinyllama-qlora-3070", "llama7b-qlora-3090")


def plan(*args: str):
    return CliRunner().invoke(main, ["plan", *args])


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_recipe_fits_its_card_with_ten_percent_headroom(name):
    result = plan(name, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verdict"] == "fits"
    assert report["headroom"] >= 0.10
    assert report["total_bytes"] == sum(t["bytes"] for t in report["terms"])


def test_text_plan_lists_the_terms_the_card_and_the_verdict():
    result = plan("llama32-1b-full-3090")
    assert result.exit_code == 0
    for label in (
        "weights",
        "gradients",
        "optimizer states",
        "activations",
        "CUDA context",
        "total",
        "rtx-3090: 24.0 GiB",
        "FITS",
    ):
        assert label in result.output


def test_a_plan_that_does_not_fit_exits_1_and_lists_changes_that_fit():
    result = plan("llama32-1b-full-3090", "--gpu", "rtx-3070")
    assert result.exit_code == 1
    assert "DOES NOT FIT" in result.output
    assert "--set method=lora" in result.output
    report = json.loads(
        plan("llama32-1b-full-3090", "--gpu", "rtx-3070", "--format", "json").output
    )
    capacity = report["capacity_bytes"]
    fitting = [c for c in report["changes"] if c["total_bytes"] <= 0.9 * capacity]
    assert fitting, report["changes"]
    assert all(c["total_bytes"] < report["total_bytes"] for c in report["changes"])


def test_memory_gib_replaces_the_recipes_card():
    report = json.loads(
        plan("tinyllama-qlora-3070", "--memory-gib", "2", "--format", "json").output
    )
    assert report["capacity_bytes"] == 2 * 1024**3
    assert report["verdict"] == "does not fit"


def test_set_overrides_change_the_estimate():
    base = json.loads(plan("llama32-1b-full-3090", "--format", "json").output)
    longer = json.loads(
        plan(
            "llama32-1b-full-3090",
            "--set",
            "training.max_length=4096",
            "--set",
            "training.activation_checkpointing=false",
            "--format",
            "json",
        ).output
    )
    assert longer["total_bytes"] > base["total_bytes"]


def test_tokens_give_a_time_per_epoch_with_the_stated_utilisation():
    result = plan("llama32-1b-full-3090", "--tokens", "5000000")
    assert "time per epoch" in result.output
    assert "assumed 40% utilisation" in result.output


def test_gpu_and_memory_gib_together_is_a_usage_error():
    result = plan("llama32-1b-full-3090", "--gpu", "rtx-3090", "--memory-gib", "24")
    assert result.exit_code == 2
    assert "--gpu" in result.output and "--memory-gib" in result.output
    assert "Traceback" not in result.output


def test_lint_errors_stop_the_plan_with_diagnostics_and_no_traceback():
    result = plan("llama32-1b-full-3090", "--set", "training.bogus_key=1")
    assert result.exit_code == 1
    assert "error[" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_model_is_a_diagnostic_with_a_fix():
    result = plan("llama32-1b-full-3090", "--set", "model.id=someone/not-a-known-model")
    assert result.exit_code == 1
    assert "error[plan-model]" in result.output
    assert "config.json" in result.output
    assert "Traceback" not in result.output


def test_plan_imports_no_torch_or_training_library():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from runner.cli import main\n"
        "r = CliRunner().invoke(main, ['plan', 'llama7b-qlora-3090'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = {'torch', 'transformers', 'trl', 'datasets', 'peft', 'accelerate'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


UNCHECKPOINTED_EAGER = (
    "--set",
    "training.optim=adamw_torch",
    "--set",
    "training.activation_checkpointing=false",
    "--set",
    "model.attn_implementation=eager",
)


def set_args(overrides: dict) -> list[str]:
    out = []
    for key, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out += ["--set", f"{key}={text}"]
    return out


@pytest.mark.parametrize(
    "args",
    [
        ("llama32-1b-full-3090", "--gpu", "rtx-3070"),
        ("tinyllama-qlora-3070", "--memory-gib", "2.0"),
        (
            "llama32-1b-full-3090",
            "--memory-gib",
            "14",
            "--set",
            "training.optim=adamw_torch",
            "--set",
            "training.activation_checkpointing=false",
            "--set",
            "model.attn_implementation=eager",
        ),
        ("llama32-1b-full-3090", "--memory-gib", "10", *UNCHECKPOINTED_EAGER),
    ],
    ids=["full-on-8gb", "qlora-tight", "no-checkpointing-eager", "combined"],
)
def test_each_suggested_change_applied_with_its_set_arguments_gives_its_estimate(args):
    report = json.loads(plan(*args, "--format", "json").stdout)
    assert report["changes"]
    for change in report["changes"]:
        result = plan(*args, "--format", "json", *set_args(change["set"]))
        assert result.exit_code in (0, 1), result.output
        applied = json.loads(result.stdout)
        assert applied["total_bytes"] == change["total_bytes"], change["description"]


def test_when_no_single_change_fits_a_combination_that_fits_comes_first():
    result = plan(
        "llama32-1b-full-3090",
        "--memory-gib",
        "7",
        "--format",
        "json",
        "--set",
        "training.optim=adamw_torch",
        "--set",
        "training.activation_checkpointing=false",
        "--set",
        "model.attn_implementation=eager",
    )
    report = json.loads(result.stdout)  # warnings go to stderr
    first = report["changes"][0]
    assert " + " in first["description"]
    assert first["total_bytes"] <= 0.9 * report["capacity_bytes"]
