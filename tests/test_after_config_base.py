"""A LoRA run on a `model.config` base (random weights, like the demo): the exact initial
weights `recipe run` saves in the run's base/ are what the adapter is applied to
afterwards, so `recipe eval` reproduces the run's own eval loss and the merged model
equals base + adapter. A QLoRA recipe on `model.config` really trains on 4-bit layers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DEMO_TRAIN, write_recipe

from runner.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config_lora_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("config-lora")
    recipe = {
        "schema_version": 1,
        "name": "config-lora",
        "model": {
            "config": {
                "model_type": "llama",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "max_position_embeddings": 128,
            },
            "tokenizer": "byte-level",
            "dtype": "float32",
        },
        "method": "lora",
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "data": {
            "train": [{"source": str(DEMO_TRAIN), "format": "prompt_completion", "rows": 48}],
            "eval": {"fraction": 0.25},
            "template": "plain",
        },
        "training": {
            "max_steps": 4,
            "learning_rate": 1.0e-2,
            "per_device_train_batch_size": 12,
            "per_device_eval_batch_size": 12,
            "max_length": 64,
            "eval_strategy": "no",
            "save_strategy": "no",
            "activation_checkpointing": False,
            "report_to": "none",
            "seed": 3,
        },
        "output_dir": "run",
    }
    path = write_recipe(folder / "config-lora.yaml", recipe)
    done = subprocess.run(
        ["recipe", "run", str(path)], cwd=folder, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder / "run"


def test_the_saved_base_holds_plain_weights_without_lora_layers(config_lora_run):
    from safetensors import safe_open

    with safe_open(str(config_lora_run / "base" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "model.layers.0.self_attn.q_proj.weight" in keys
    assert not [k for k in keys if "lora_" in k or "base_layer" in k]


def test_eval_on_the_saved_base_reproduces_the_runs_eval_loss(config_lora_run):
    result = CliRunner().invoke(main, ["eval", str(config_lora_run), "-n", "2"])
    assert result.exit_code == 0, result.output
    record = json.loads((config_lora_run / "eval.json").read_text())
    trained = json.loads((config_lora_run / "run.json").read_text())["metrics"]["eval_loss"]
    assert record["loss"] == pytest.approx(trained, rel=1e-5)


def test_merge_of_a_config_base_run_loads_and_equals_base_plus_adapter(config_lora_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from runner.after.load import load_target
    from runner.after.prompts import format_prompt
    from runner.after.target import find_target

    out = tmp_path / "merged"
    result = CliRunner().invoke(main, ["merge", str(config_lora_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    loaded = load_target(find_target(str(config_lora_run)), device="cpu")
    ids = torch.tensor([format_prompt(loaded.fmt, loaded.tokenizer, "Uppercase: abc\n")])
    merged = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, loaded.model(ids).logits, atol=1e-4)


def test_a_qlora_recipe_on_model_config_loads_4bit_linear_layers(tmp_path):
    import bitsandbytes as bnb
    from conftest import settings_of

    from runner.expand.model import load_model, save_base_model
    from runner.expand.placement import Placement
    from runner.expand.tokenizer import load_tokenizer

    settings = settings_of(
        "demo-uppercase",
        "method=qlora",
        "lora={r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj]}",
        "quantization={load_in_4bit: true, bnb_4bit_quant_type: nf4}",
        "training.learning_rate=1.0e-3",
    )
    save_base_model(settings, tmp_path / "base")
    model = load_model(
        settings, Placement(cpu=True), load_tokenizer(settings), base_dir=tmp_path / "base"
    )
    linear = model.model.layers[0].self_attn.q_proj
    assert isinstance(linear, bnb.nn.Linear4bit)
    assert linear.weight.quant_state.quant_type == "nf4"
    assert getattr(model, "is_loaded_in_4bit", False)
