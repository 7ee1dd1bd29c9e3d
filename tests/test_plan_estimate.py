"""The estimator's terms respond to each recipe setting the way the libraries do."""

from __future__ import annotations

import json

import pytest
from conftest import bare_recipe, settings_of

from runner.plan.architecture import architecture_from_config
from runner.plan.estimate import estimate_memory
from runner.plan.setup import Setup, resolve_lora_targets, setup_from_settings
from runner.plan.states import optimizer_bytes, quantized_bytes, weight_bytes
from runner.recipe.models import KNOWN_CONFIGS

LLAMA32 = architecture_from_config(KNOWN_CONFIGS["meta-llama/Llama-3.2-1B-Instruct"])
LLAMA7B = architecture_from_config(KNOWN_CONFIGS["huggyllama/llama-7b"])


def test_llama32_1b_has_its_published_parameter_count():
    assert LLAMA32.total_params() == 1_235_814_400
    assert LLAMA7B.total_params() == 6_738_415_616


def test_a_recipe_that_omits_them_gets_trl_defaults_checkpointing_and_bf16(tmp_path):
    path = bare_recipe(tmp_path / "bare.yaml")
    setup = setup_from_settings(settings_of(path))
    assert setup.checkpointing is True
    assert setup.mixed_precision == "bf16" and setup.dtype == "bfloat16"
    assert (setup.batch, setup.seq, setup.optim) == (8, 1024, "adamw_torch_fused")
    fp16 = setup_from_settings(settings_of(path, "training.fp16=true"))
    assert fp16.mixed_precision == "fp16" and fp16.dtype == "float16"


def test_max_length_null_is_planned_at_the_models_context_and_says_so():
    from click.testing import CliRunner

    from runner.cli import main

    def plan(*overrides: str) -> tuple[dict, str]:
        args = ["plan", "demo-uppercase", "--memory-gib", "8"]
        args += [part for o in overrides for part in ("--set", o)]
        as_json = CliRunner().invoke(main, [*args, "--format", "json"])
        return json.loads(as_json.stdout), CliRunner().invoke(main, args).stdout

    truncated, _ = plan()  # the demo truncates at 64; its model takes 128
    untruncated, text = plan("training.max_length=null")
    assert (truncated["row_tokens"], truncated["row_tokens_from"]) == (64, "max_length")
    assert (untruncated["row_tokens"], untruncated["row_tokens_from"]) == (128, "model context")
    assert untruncated["total_bytes"] > truncated["total_bytes"]
    assert "x 128 tokens (max_length null, no truncation: planned at the model's context)" in text


def test_max_length_null_with_no_known_context_is_not_planned_at_a_guess():
    from click.testing import CliRunner

    from runner.cli import main

    unknown = [
        "--set",
        "training.max_length=null",
        "--set",
        "model.config.max_position_embeddings=null",
    ]
    result = CliRunner().invoke(main, ["plan", "demo-uppercase", *unknown])
    assert result.exit_code == 1
    assert "error[plan-model]: training.max_length is null (no truncation)" in result.stderr
    assert "set training.max_length to the longest row you train on" in result.stderr


def test_all_linear_targets_every_decoder_linear_but_not_the_lm_head():
    assert resolve_lora_targets("all-linear") == (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    assert resolve_lora_targets(["model.layers.0.q_proj", "v_proj"]) == ("q_proj", "v_proj")


def test_activation_checkpointing_cuts_activation_memory():
    on = estimate_memory(LLAMA32, Setup(batch=4, checkpointing=True))
    off = estimate_memory(LLAMA32, Setup(batch=4, checkpointing=False))
    assert off.total - on.total > 5 * 1024**3


def test_eager_attention_grows_with_the_square_of_the_sequence():
    def activations(attn: str, seq: int) -> int:
        return estimate_memory(
            LLAMA32, Setup(batch=1, seq=seq, attn=attn, checkpointing=False)
        ).term("activations")

    sdpa_growth = activations("sdpa", 4096) / activations("sdpa", 2048)
    eager_growth = activations("eager", 4096) / activations("eager", 2048)
    assert sdpa_growth == pytest.approx(2, rel=0.05)
    assert eager_growth > 2.5


def test_8bit_adamw_keeps_about_a_quarter_of_adamw_states():
    adam, _ = optimizer_bytes(LLAMA7B, Setup(method="full", dtype="float32", optim="adamw_torch"))
    eight, _ = optimizer_bytes(
        LLAMA7B, Setup(method="full", dtype="float32", optim="adamw_bnb_8bit")
    )
    # embeddings stay 32 bit (transformers' Trainer override), the rest is 1 byte per state
    assert 0.25 < eight / adam < 0.30


def test_paged_optimizer_states_are_reported_as_paged():
    setup = Setup(
        method="qlora",
        lora_r=16,
        lora_targets=resolve_lora_targets("all-linear"),
        optim="paged_adamw_8bit",
    )
    total, paged = optimizer_bytes(LLAMA7B, setup)
    assert 0 < paged <= total


def test_nf4_weights_are_half_a_byte_plus_constants():
    numel = 4096 * 11008
    assert quantized_bytes(numel, double_quant=False) == numel // 2 + numel // 64 * 4 + 64
    assert quantized_bytes(numel, double_quant=True) < quantized_bytes(numel, double_quant=False)
    qlora = weight_bytes(LLAMA7B, Setup(method="qlora", double_quant=True))
    bf16 = weight_bytes(LLAMA7B, Setup(method="full"))
    assert 0.25 < qlora / bf16 < 0.30  # embeddings and LM head stay in bf16


@pytest.mark.parametrize(("strategy", "stage"), [("deepspeed", 2), ("deepspeed", 3), ("fsdp", 0)])
def test_sharding_strategies_divide_states_across_gpus(strategy, stage):
    single = estimate_memory(LLAMA7B, Setup(batch=1))
    sharded = estimate_memory(
        LLAMA7B, Setup(batch=1, strategy=strategy, zero_stage=stage, processes=8)
    )
    assert sharded.term("optimizer") < single.term("optimizer") / 2
    if stage == 3 or strategy == "fsdp":
        assert sharded.term("weights") < single.term("weights") / 2
    else:
        assert sharded.term("weights") == single.term("weights")


def test_ddp_keeps_a_full_copy_per_gpu_plus_gradient_buckets():
    single = estimate_memory(LLAMA32, Setup(batch=1))
    ddp = estimate_memory(LLAMA32, Setup(batch=1, strategy="ddp", processes=4))
    assert ddp.term("weights") == single.term("weights")
    assert ddp.term("ddp_buckets") > 0


def test_padding_free_batches_under_flash_attention_drop_the_attention_mask_memory():
    # under sdpa/eager a packed batch gets a block-diagonal mask instead (test_plan_packing)
    padded = estimate_memory(LLAMA32, Setup(batch=8, seq=2048, checkpointing=False))
    packed = estimate_memory(
        LLAMA32,
        Setup(batch=8, seq=2048, checkpointing=False, padding_free=True, attn="flash_attention_2"),
    )
    assert packed.total < padded.total


def test_terms_add_up_to_the_total_and_reserved_excludes_the_context():
    estimate = estimate_memory(LLAMA32, Setup())
    assert estimate.total == sum(t.bytes for t in estimate.terms)
    assert estimate.total - estimate.reserved == estimate.term("cuda_context")
