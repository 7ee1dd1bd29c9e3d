"""End to end through the real CLI and a real `accelerate launch`, on CPU, with a tiny local
Llama: full fine-tuning, LoRA and QLoRA (bitsandbytes' CPU 4-bit path) each leave a
loadable model or adapter, a lower final loss than the first, run.json and the loss plot."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


def train(tmp_path, recipe, *args):
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = subprocess.run(
        ["recipe", "run", str(path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, tmp_path / "run"


def check_run(run_dir, summary: str, name: str) -> dict:
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert record["name"] == name and record["schema_version"] == 1
    assert record["content_hash"].startswith("sha256:")
    assert set(record["versions"]) >= {
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "datasets",
        "bitsandbytes",
    }
    assert record["data"]["sources"][0]["sha256"]
    assert record["started_at"] <= record["finished_at"]
    metrics = record["metrics"]
    assert metrics["final_loss"] < metrics["first_loss"]
    assert metrics["steps"] == 12 and metrics["tokens"] > 0
    assert (run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "recipe.yaml").is_file() and (run_dir / "recipe.resolved.yaml").is_file()
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in x for x in lines) == 12 and any("eval_loss" in x for x in lines)
    assert f"{name} succeeded; 12 steps" in summary and str(run_dir / "final") in summary
    return record


def generate(model, tokenizer) -> str:
    ids = tokenizer("Uppercase: abc\n", return_tensors="pt").input_ids
    out = model.generate(
        ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(out[0])


def test_full_finetune_leaves_a_loadable_model(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, run_dir = train(tmp_path, tiny_recipe(tiny_model_dir, report_to="tensorboard"))
    check_run(run_dir, result.stdout, "tiny-full")
    model = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "final")
    assert generate(model, tokenizer).startswith("Uppercase: abc\n")
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_lora_leaves_a_loadable_adapter(tmp_path, tiny_model_dir):
    from runner.after.load import load_target
    from runner.after.target import find_target

    result, run_dir = train(tmp_path, tiny_recipe(tiny_model_dir, "lora"))
    record = check_run(run_dir, result.stdout, "tiny-lora")
    # the modules PEFT adapted: q_proj and v_proj of both layers, as the recipe asked
    assert record["adapter"] == {"modules": {"q_proj": 2, "v_proj": 2}, "count": 4}
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()
    assert not (run_dir / "final" / "model.safetensors").exists()
    loaded = load_target(find_target(str(run_dir)), device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    assert type(model).__name__ == "PeftModelForCausalLM"
    assert generate(model, tokenizer).startswith("Uppercase: abc\n")


def test_qlora_on_the_cpu_4bit_path_leaves_a_loadable_adapter(tmp_path, tiny_model_dir):
    from runner.after.load import load_target
    from runner.after.target import find_target

    result, run_dir = train(tmp_path, tiny_recipe(tiny_model_dir, "qlora"))
    record = check_run(run_dir, result.stdout, "tiny-qlora")
    assert record["method"] == "qlora"
    assert (run_dir / "final" / "adapter_config.json").is_file()
    loaded = load_target(find_target(str(run_dir)), device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    assert model.get_base_model().is_loaded_in_4bit
    assert generate(model, tokenizer).startswith("Uppercase: abc\n")


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_model_dir):
    recipe = tiny_recipe(tiny_model_dir, save_strategy="steps", save_steps=6, max_steps=6)
    train(tmp_path, recipe)
    assert (tmp_path / "run" / "checkpoint-6").is_dir()
    _, run_dir = train(tmp_path, recipe, "--resume", "--set", "training.max_steps=12")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["metrics"]["steps"] == 12
    assert (run_dir / "checkpoint-12").is_dir()
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert 7 in steps and steps.count(1) == 1  # steps 1-6 logged once, then 7-12 after resuming
