"""The keyword arguments a recipe expands to, and that the libraries accept them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import bare_recipe, settings_of

from runner.expand.library_kwargs import bnb_kwargs, lora_kwargs, sft_kwargs


def test_sft_kwargs_are_the_training_block_plus_the_resolved_output_dir() -> None:
    settings = settings_of("llama32-1b-full-3090")
    kwargs = sft_kwargs(settings)
    assert kwargs["learning_rate"] == 1e-5
    assert kwargs["eval_steps"] == 200
    assert kwargs["output_dir"] == settings.resolved["output_dir"]
    assert kwargs["output_dir"].endswith("outputs/llama32-1b-full-3090")


def test_deprecated_gradient_checkpointing_is_passed_under_its_new_name() -> None:
    kwargs = sft_kwargs(settings_of("demo-uppercase", "training.gradient_checkpointing=true"))
    assert "gradient_checkpointing" not in kwargs
    assert kwargs["activation_checkpointing"] is False  # the recipe's own new name wins
    alone = sft_kwargs(
        settings_of(
            "demo-uppercase",
            "training={gradient_checkpointing: true, report_to: none, eval_strategy: epoch, "
            "max_length: 64}",
        )
    )
    assert alone["activation_checkpointing"] is True and "gradient_checkpointing" not in alone


def test_trl_defaults_for_precision_and_checkpointing_are_written_out(tmp_path) -> None:
    # TRL turns bf16 and activation checkpointing on when a recipe says nothing; the
    # resolved recipe says so, and the model loads in the matching dtype.
    path = bare_recipe(tmp_path / "bare.yaml")
    settings = settings_of(path)
    assert settings.resolved["training"]["bf16"] is True
    assert settings.resolved["training"]["activation_checkpointing"] is True
    assert settings.resolved["model"]["dtype"] == "bfloat16"
    assert settings.training["max_length"] == 1024  # TRL's default, read from the schema
    fp16 = settings_of(path, "training.fp16=true")
    assert fp16.resolved["training"]["bf16"] is False and fp16.mixed_precision == "fp16"
    assert fp16.model_dtype == "float16"


def test_lora_kwargs_are_none_for_full_and_default_the_task_type() -> None:
    assert lora_kwargs(settings_of("llama32-1b-full-3090")) is None
    kwargs = lora_kwargs(settings_of("tinyllama-qlora-3070", "lora.task_type=null"))
    assert kwargs["r"] == 16 and kwargs["lora_alpha"] == 32
    without = settings_of("tinyllama-qlora-3070", "lora={r: 16, lora_alpha: 32}")
    assert lora_kwargs(without)["task_type"] == "CAUSAL_LM"


def test_bnb_kwargs_default_the_compute_dtype_to_the_model_dtype() -> None:
    assert bnb_kwargs(settings_of("demo-uppercase")) is None
    settings = settings_of(
        "tinyllama-qlora-3070", "quantization={load_in_4bit: true, bnb_4bit_quant_type: nf4}"
    )
    assert bnb_kwargs(settings)["bnb_4bit_compute_dtype"] == "bfloat16"


def test_expansion_never_mutates_the_resolved_recipe() -> None:
    settings = settings_of("tinyllama-qlora-3070")
    before = repr(settings.resolved)
    sft_kwargs(settings), lora_kwargs(settings), bnb_kwargs(settings)
    assert repr(settings.resolved) == before


@pytest.mark.slow  # imports trl/peft/transformers (~15 s)
def test_shipped_recipes_expand_to_arguments_the_libraries_accept(tmp_path) -> None:
    # A fresh process, so that importing trl here does not slow the other tests.
    code = f"""
from runner.check import check_recipe
from runner.recipe.catalog import shipped_recipes
from runner.expand.library_kwargs import bnb_kwargs, lora_kwargs, sft_kwargs
import peft, transformers, trl
for path in shipped_recipes():
    s = check_recipe(path, ["training.use_cpu=true", "training.bf16=false",
                     "training.optim=adamw_torch", "output_dir={tmp_path}"]).settings
    trl.SFTConfig(**sft_kwargs(s))
    if lora_kwargs(s) is not None:
        peft.LoraConfig(**lora_kwargs(s))
    if bnb_kwargs(s) is not None:
        transformers.BitsAndBytesConfig(**bnb_kwargs(s))
    print("accepted", path.stem)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    from runner.recipe.catalog import shipped_recipes

    assert out.stdout.count("accepted") == len(shipped_recipes())
