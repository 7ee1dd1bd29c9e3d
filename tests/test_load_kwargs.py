"""Training and the after-training commands load a recipe's model with the same keyword
arguments (runner.expand.model.model_kwargs): same dtype, attention kernel, revision and
quantization, so `recipe infer/chat/eval/merge/export` see the model training saw."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import settings_of

from runner.after.load import base_kwargs, final_kwargs, wants_4bit
from runner.after.target import Target
from runner.expand.model import NF4, model_kwargs
from runner.expand.placement import Placement
from runner.expand.source import model_source
from runner.recipe.catalog import shipped_recipes

SHIPPED = [p.stem for p in shipped_recipes()]
CPU = Placement(cpu=True)
SAME = ("dtype", "attn_implementation", "trust_remote_code", "revision", "quantization_config")


def run_target(settings, path: Path) -> Target:
    """A run of `settings` in `path`, as runner.after.target.find_target makes it."""
    final = str(path / "final")
    return Target(path=path, settings=settings, weights=final, adapter=settings.adapter, base=None)


def training_kwargs(settings, run: Path) -> dict:
    """What runner.expand.model.load_model passes for this run on the CPU."""
    source = model_source(settings, run / "base")
    return model_kwargs(settings, CPU, "cpu", source=source)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_runs_base_loads_as_training_loaded_it(name, tmp_path):
    settings = settings_of(name)
    target = run_target(settings, tmp_path)
    reference, after = base_kwargs(target, "cpu", quantize=wants_4bit(target, None))
    trained = training_kwargs(settings, tmp_path)
    assert reference == model_source(settings, tmp_path / "base")
    assert {k: after.get(k) for k in SAME} == {k: trained.get(k) for k in SAME}
    assert after["device_map"] == {"": "cpu"}


def test_revision_pins_a_hub_id_in_training_and_after_it(tmp_path):
    settings = settings_of("tinyllama-qlora-3070", "model.revision=abc123")
    reference, after = base_kwargs(run_target(settings, tmp_path), "cpu", quantize=True)
    assert reference == "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    assert after["revision"] == training_kwargs(settings, tmp_path)["revision"] == "abc123"


def test_no_revision_for_a_local_model_directory(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    settings = settings_of("tinyllama-qlora-3070", f"model.id={model_dir}", "model.revision=abc123")
    _, after = base_kwargs(run_target(settings, tmp_path), "cpu", quantize=True)
    assert "revision" not in after and "revision" not in training_kwargs(settings, tmp_path)


def test_a_built_base_loads_from_the_runs_base_folder_without_revision(tmp_path):
    settings = settings_of("smollm2-135m-lora-cpu")  # a GGUF file's weights, made into base/
    assert settings.builds_base
    reference, after = base_kwargs(run_target(settings, tmp_path), "cpu", quantize=False)
    assert reference == str(tmp_path / "base")
    assert "revision" not in after
    assert (
        after["attn_implementation"] == training_kwargs(settings, tmp_path)["attn_implementation"]
    )


def test_a_qlora_base_loads_4bit_as_trained_unless_asked_not_to(tmp_path):
    settings = settings_of("tinyllama-qlora-3070")
    target = run_target(settings, tmp_path)
    _, trained_way = base_kwargs(target, "cpu", quantize=wants_4bit(target, None))
    _, plain = base_kwargs(target, "cpu", quantize=wants_4bit(target, False))
    assert trained_way["quantization_config"]["load_in_4bit"] is True
    assert trained_way["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    assert "quantization_config" not in plain


def test_a_lora_base_of_a_quantized_recipe_loads_quantized_as_trained(tmp_path):
    settings = settings_of("tinyllama-qlora-3070", "method=lora")  # lint: it is QLoRA
    target = run_target(settings, tmp_path)
    assert wants_4bit(target, None) and not wants_4bit(target, False)


def test_a_lora_base_asked_for_4bit_gets_nf4_in_the_runs_dtype(tmp_path):
    settings = settings_of("smollm2-135m-lora-cpu", "model.dtype=float16")
    _, after = base_kwargs(run_target(settings, tmp_path), "cpu", quantize=True)
    # float16 cannot compute on the CPU: float32 weights and compute there
    assert after["dtype"] == "float32"
    assert after["quantization_config"] == {**NF4, "bnb_4bit_compute_dtype": "float32"}
    _, on_gpu = base_kwargs(run_target(settings, tmp_path), "cuda:0", quantize=True)
    assert on_gpu["dtype"] == on_gpu["quantization_config"]["bnb_4bit_compute_dtype"] == "float16"


def test_a_full_runs_final_model_loads_whole_in_the_training_dtype(tmp_path):
    settings = settings_of("llama32-1b-full-3090", "model.revision=abc123")
    after = final_kwargs(run_target(settings, tmp_path), "cpu")
    trained = training_kwargs(settings, tmp_path)
    assert after["dtype"] == trained["dtype"] == "bfloat16"
    assert after["attn_implementation"] == trained["attn_implementation"]
    assert "revision" not in after and "quantization_config" not in after  # final/ is a folder


def test_merge_dtype_overrides_the_recipes(tmp_path):
    settings = settings_of("tinyllama-qlora-3070")
    _, after = base_kwargs(run_target(settings, tmp_path), "cpu", quantize=False, dtype="float16")
    assert after["dtype"] == "float16"  # merge --dtype is kept as asked, even on the CPU


def test_an_adapter_without_a_recipe_loads_its_base_as_saved(tmp_path):
    target = Target(path=tmp_path, settings=None, weights=str(tmp_path), adapter=True,
                    base="some/base")  # fmt: skip
    reference, kwargs = base_kwargs(target, "cpu", quantize=True)
    assert reference == "some/base" and kwargs["dtype"] == "auto"
    assert kwargs["quantization_config"] == {**NF4, "bnb_4bit_compute_dtype": "bfloat16"}
