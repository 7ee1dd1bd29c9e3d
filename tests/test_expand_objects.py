"""Every shipped recipe expands into library objects that the real libraries accept."""

from __future__ import annotations

import pytest
from conftest import settings_of as resolved

from runner.expand.library_kwargs import bnb_kwargs, lora_kwargs
from runner.expand.loss import LossSetup
from runner.expand.model import model_kwargs
from runner.expand.placement import Placement, cpu_has_native_bf16
from runner.expand.training import run_sft_kwargs
from runner.recipe.catalog import shipped_recipes

SHIPPED = [p.stem for p in shipped_recipes()]
CPU, GPU = Placement(cpu=True), Placement(cpu=False)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_builds_a_real_sftconfig_on_cpu(name, tmp_path):
    from trl import SFTConfig

    kwargs = run_sft_kwargs(
        resolved(name, f"output_dir={tmp_path}"),
        CPU,
        LossSetup("instruction", "</s>"),
        has_eval=True,
    )
    config = SFTConfig(**kwargs)
    settings = resolved(name)
    # bf16 autocast stays on only for a recipe made for the CPU, on a CPU with native bf16
    native = settings.cpu_only and settings.training["bf16"] is True and cpu_has_native_bf16()
    assert config.bf16 is native and config.fp16 is False and config.use_cpu is True
    assert config.eos_token == "</s>"
    assert config.output_dir == str(tmp_path)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_builds_real_lora_and_bnb_configs(name):
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    settings = resolved(name)
    lora, bnb = lora_kwargs(settings), bnb_kwargs(settings)
    if settings.method == "full":
        assert lora is None and bnb is None
        return
    assert LoraConfig(**lora).r == settings.lora_config["r"]
    if settings.method == "qlora":
        config = BitsAndBytesConfig(**bnb)
        assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"


@pytest.mark.parametrize("name", SHIPPED)
def test_model_is_loaded_with_an_explicit_dtype_on_one_device(name):
    kwargs = model_kwargs(resolved(name), GPU, "cuda:0")
    assert kwargs["dtype"] in ("bfloat16", "float16", "float32")
    assert kwargs["attn_implementation"] == "sdpa"
    # never "auto": a model that does not fit must fail, not spill onto the CPU
    assert kwargs["device_map"] == {"": "cuda:0"}


def test_qlora_recipe_loads_with_4bit_quantization():
    kwargs = model_kwargs(resolved("tinyllama-qlora-3070"), GPU, "cuda:0")
    assert kwargs["quantization_config"]["load_in_4bit"] is True
    assert kwargs["quantization_config"]["bnb_4bit_compute_dtype"] == "bfloat16"


def test_deepspeed_full_finetune_leaves_placement_to_deepspeed():
    settings = resolved(
        "llama32-1b-full-3090",
        "launch.strategy=deepspeed",
        "launch.num_processes=2",
        "hardware.count=2",
    )
    assert "device_map" not in model_kwargs(settings, GPU, "cuda:0")


def test_cpu_run_switches_precision_off_and_counts_tokens():
    kwargs = run_sft_kwargs(
        resolved("llama32-1b-full-3090"),
        CPU,
        LossSetup("messages", "<|eot_id|>"),
        has_eval=True,
        tokenized=False,
    )
    assert kwargs["bf16"] is False and kwargs["use_cpu"] is True
    assert kwargs["assistant_only_loss"] is True
    assert kwargs["include_num_input_tokens_seen"] == "non_padding"


def test_a_cpu_recipe_keeps_bf16_autocast_only_where_the_cpu_computes_bf16(monkeypatch):
    from runner.expand import placement

    settings = resolved("smollm2-135m-lora-cpu", "training.bf16=true")
    for native in (True, False):
        monkeypatch.setattr(placement, "cpu_has_native_bf16", lambda native=native: native)
        kwargs = run_sft_kwargs(
            settings, CPU, LossSetup("instruction", "<|im_end|>"), has_eval=True
        )
        assert kwargs["bf16"] is native and kwargs["fp16"] is False
        assert placement.mixed_precision(settings, CPU) == ("bf16" if native else "no")
    fp32 = resolved("smollm2-135m-lora-cpu", "training.bf16=false")
    assert placement.mixed_precision(fp32, CPU) == "no"


def test_report_to_none_becomes_an_empty_list():
    kwargs = run_sft_kwargs(
        resolved("demo-uppercase"), CPU, LossSetup("instruction", "</s>"), has_eval=True
    )
    assert kwargs["report_to"] == []
