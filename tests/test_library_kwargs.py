"""The keyword arguments a recipe expands to, and that the libraries accept them."""

from __future__ import annotations

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
