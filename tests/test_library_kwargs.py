"""The keyword arguments a recipe expands to, and that the libraries accept them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runner.expand.library_kwargs import bnb_kwargs, lora_kwargs, sft_kwargs
from runner.lint import check_recipe


def resolved(name: str, *overrides: str) -> dict:
    result = check_recipe(name, overrides)
    assert result.ok
    return result.resolved


def test_sft_kwargs_are_the_training_block_plus_the_resolved_output_dir() -> None:
    recipe = resolved("llama32-1b-full-3090")
    kwargs = sft_kwargs(recipe)
    assert kwargs["learning_rate"] == 1e-5
    assert kwargs["eval_steps"] == 200
    assert kwargs["output_dir"] == recipe["output_dir"]
    assert kwargs["output_dir"].endswith("outputs/llama32-1b-full-3090")


def test_deprecated_gradient_checkpointing_is_passed_under_its_new_name() -> None:
    kwargs = sft_kwargs(resolved("demo-uppercase", "training.gradient_checkpointing=true"))
    assert "gradient_checkpointing" not in kwargs
    assert kwargs["activation_checkpointing"] is False  # the recipe's own new name wins


def test_lora_kwargs_are_none_for_full_and_default_the_task_type() -> None:
    assert lora_kwargs(resolved("llama32-1b-full-3090")) is None
    kwargs = lora_kwargs(resolved("tinyllama-qlora-3070", "lora.task_type=null"))
    assert kwargs["r"] == 16 and kwargs["lora_alpha"] == 32
    recipe = resolved("tinyllama-qlora-3070")
    recipe["lora"].pop("task_type")
    assert lora_kwargs(recipe)["task_type"] == "CAUSAL_LM"


def test_bnb_kwargs_default_the_compute_dtype_to_the_model_dtype() -> None:
    assert bnb_kwargs(resolved("demo-uppercase")) is None
    recipe = resolved("tinyllama-qlora-3070")
    recipe["quantization"].pop("bnb_4bit_compute_dtype")
    assert bnb_kwargs(recipe)["bnb_4bit_compute_dtype"] == "bfloat16"


def test_expansion_never_mutates_the_resolved_recipe() -> None:
    recipe = resolved("tinyllama-qlora-3070")
    before = repr(recipe)
    sft_kwargs(recipe), lora_kwargs(recipe), bnb_kwargs(recipe)
    assert repr(recipe) == before


@pytest.mark.slow  # imports trl/peft/transformers (~15 s)
def test_shipped_recipes_expand_to_arguments_the_libraries_accept(tmp_path) -> None:
    # A fresh process, so that importing trl here does not slow the other tests.
    code = f"""
from runner.lint import check_recipe
from runner.recipe.catalog import shipped_recipes
from runner.expand.library_kwargs import bnb_kwargs, lora_kwargs, sft_kwargs
import peft, transformers, trl
for path in shipped_recipes():
    r = check_recipe(path, ["training.use_cpu=true", "training.bf16=false",
                     "training.optim=adamw_torch", "output_dir={tmp_path}"]).resolved
    trl.SFTConfig(**sft_kwargs(r))
    if lora_kwargs(r) is not None:
        peft.LoraConfig(**lora_kwargs(r))
    if bnb_kwargs(r) is not None:
        transformers.BitsAndBytesConfig(**bnb_kwargs(r))
    print("accepted", path.stem)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    from runner.recipe.catalog import shipped_recipes

    assert out.stdout.count("accepted") == len(shipped_recipes())
