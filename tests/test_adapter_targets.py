"""The adapter is what the recipe asked for: every lora.target_modules name is checked
against the model's modules - by lint where the architecture is known without loading
weights, by `recipe run` on the meta device otherwise - and a name that matches nothing is
an error at its line with a did-you-mean, never a PEFT traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_recipe, write_recipe

from runner.cli import main
from runner.plan.modules import LAYOUTS, llama_modules


def lint(path: Path, *args: str):
    result = CliRunner().invoke(main, ["lint", "--format", "json", str(path), *args])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)["files"][0]["diagnostics"]


def lora_recipe(tmp_path: Path, model_dir: Path, targets) -> Path:
    recipe = tiny_recipe(model_dir, "lora")
    recipe["lora"]["target_modules"] = targets
    return write_recipe(tmp_path / "r.yaml", recipe)


@pytest.mark.parametrize("model_type", sorted(LAYOUTS))
def test_lints_module_names_are_those_transformers_builds(model_type):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from runner.expand.targets import module_kinds

    fields = {"model_type": model_type, "hidden_size": 16, "intermediate_size": 32,
              "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
              "head_dim": 8, "vocab_size": 64}  # fmt: skip
    config = AutoConfig.for_model(**fields, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert llama_modules(fields) == module_kinds(model)


def test_a_misspelt_target_is_an_error_at_its_line_with_a_did_you_mean(tmp_path, tiny_model_dir):
    code, found = lint(lora_recipe(tmp_path, tiny_model_dir, ["q_projj", "v_proj"]))
    assert code == 1
    (diagnostic,) = [d for d in found if d["severity"] == "error"]
    assert diagnostic["rule"] == "lora-target-missing"
    assert diagnostic["key"] == "lora.target_modules.0"
    assert "'q_projj', which matches no module" in diagnostic["message"]
    assert diagnostic["hint"].startswith("did you mean 'q_proj'? the modules LoRA can adapt here:")
    assert "gate_proj" in diagnostic["hint"] and "all-linear" in diagnostic["hint"]
    text = (tmp_path / "r.yaml").read_text().splitlines()
    assert "q_projj" in text[diagnostic["line"] - 1]


def test_all_linear_and_real_names_lint_clean(tmp_path, tiny_model_dir):
    for targets in ("all-linear", ["q_proj", "self_attn.v_proj", "down_proj"], ".*\\.q_proj"):
        code, found = lint(lora_recipe(tmp_path, tiny_model_dir, targets))
        assert code == 0, found


def test_a_gguf_models_modules_are_known_from_its_header(tmp_path, smollm2_gguf):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"schema_version: 1\nname: g\nmodel: {{id: {smollm2_gguf}}}\nmethod: lora\n"
        "lora: {r: 4, target_modules: [q_projj]}\n"
        "data: {train: [{source: tatsu-lab/alpaca, format: alpaca}]}\n"
        "training: {use_cpu: true, bf16: false}\noutput_dir: out\n"
    )
    code, found = lint(recipe)
    assert code == 1
    assert [d["rule"] for d in found if d["severity"] == "error"] == ["lora-target-missing"]


def test_an_architecture_lint_cannot_see_is_checked_on_the_meta_device_before_the_data(
    tmp_path,
):
    from transformers import GPT2Config, GPT2LMHeadModel

    from runner.expand.tokenizer import build_byte_level_tokenizer

    model_dir = tmp_path / "gpt2"
    tokenizer = build_byte_level_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2,
                               n_positions=64)).save_pretrained(model_dir)  # fmt: skip
    tokenizer.save_pretrained(model_dir)
    recipe = lora_recipe(tmp_path, model_dir, ["q_proj"])
    assert lint(recipe)[0] == 0  # a GPT-2's modules are not known without building it
    done = subprocess.run(
        ["recipe", "run", str(recipe)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "lora.target_modules names 'q_proj', which matches no module of the model" in (
        done.stderr
    )
    assert "the modules LoRA can adapt here: wte, wpe, c_attn, c_proj, c_fc, lm_head" in done.stderr
    assert "data: prepared" not in done.stderr and not (tmp_path / "run").exists()
