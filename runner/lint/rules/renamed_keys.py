"""Keys that transformers 5 / TRL 1.x renamed or removed, and keys the recipe owns elsewhere.

KEY_FIXES is the single table: the schema generator leaves the `moved` training fields
out of `$defs.sft_config`, and the schema-error mapper stays silent about every key
listed here, because the rules below say something more useful about them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING

RENAMED, REMOVED, MOVED, DEPRECATED = "renamed", "removed", "moved", "deprecated"


@dataclass(frozen=True)
class KeyFix:
    kind: str  # renamed | removed | moved | deprecated
    fix: str  # what to write instead, in words


def _t(**fixes: KeyFix) -> dict[tuple[str, str], KeyFix]:
    return {("training", key): fix for key, fix in fixes.items()}


KEY_FIXES: dict[tuple[str, str], KeyFix] = {
    # renamed or removed by transformers 5 / TRL 1.x
    **_t(
        evaluation_strategy=KeyFix(RENAMED, "use eval_strategy (same values: no, steps, epoch)"),
        warmup_ratio=KeyFix(
            RENAMED, "use warmup_steps with a float below 1, e.g. warmup_steps: 0.03 (a fraction)"
        ),
        max_seq_length=KeyFix(RENAMED, "use max_length"),
        overwrite_output_dir=KeyFix(
            REMOVED,
            "the runner never overwrites a non-empty output_dir: continue with "
            "`recipe run --resume`, or choose a new output_dir",
        ),
        torch_dtype=KeyFix(MOVED, "set model.dtype (bfloat16, float16 or float32)"),
        logging_dir=KeyFix(REMOVED, "logs are written under output_dir; delete this key"),
        no_cuda=KeyFix(RENAMED, "use use_cpu: true"),
        use_mps_device=KeyFix(REMOVED, "the device is picked automatically; delete this key"),
        per_gpu_train_batch_size=KeyFix(RENAMED, "use per_device_train_batch_size"),
        per_gpu_eval_batch_size=KeyFix(RENAMED, "use per_device_eval_batch_size"),
        group_by_length=KeyFix(RENAMED, "use train_sampling_strategy: group_by_length"),
        half_precision_backend=KeyFix(REMOVED, "delete this key; bf16/fp16 choose the precision"),
        fp16_backend=KeyFix(REMOVED, "delete this key; bf16/fp16 choose the precision"),
        save_safetensors=KeyFix(REMOVED, "checkpoints are always safetensors; delete this key"),
        push_to_hub_model_id=KeyFix(RENAMED, "use hub_model_id"),
        push_to_hub_organization=KeyFix(RENAMED, "use hub_model_id: org/name"),
        push_to_hub_token=KeyFix(MOVED, "log in with `hf auth login` or set HF_TOKEN"),
        dataset_batch_size=KeyFix(REMOVED, "delete this key (TRL 1.x tokenizes in one pass)"),
        num_of_sequences=KeyFix(REMOVED, "delete this key; packing uses max_length"),
        chars_per_token=KeyFix(REMOVED, "delete this key; packing uses max_length"),
        gradient_checkpointing=KeyFix(
            DEPRECATED, "use activation_checkpointing (the old name goes away in transformers 6)"
        ),
        gradient_checkpointing_kwargs=KeyFix(DEPRECATED, "use activation_checkpointing_kwargs"),
    ),
    # SFTConfig fields the recipe owns elsewhere (left out of the generated schema)
    **_t(
        output_dir=KeyFix(MOVED, "set the top-level output_dir"),
        deepspeed=KeyFix(MOVED, "set launch.strategy: deepspeed and launch.deepspeed"),
        fsdp=KeyFix(MOVED, "set launch.strategy: fsdp and launch.fsdp"),
        fsdp_config=KeyFix(MOVED, "set launch.strategy: fsdp and launch.fsdp"),
        accelerator_config=KeyFix(MOVED, "set the launch block"),
        parallelism_config=KeyFix(MOVED, "set the launch block"),
        local_rank=KeyFix(MOVED, "accelerate sets it; delete this key"),
        hub_token=KeyFix(MOVED, "never put tokens in a recipe: log in with `hf auth login`"),
        model_init_kwargs=KeyFix(
            MOVED, "use the model block (dtype, attn_implementation, trust_remote_code, revision)"
        ),
        trust_remote_code=KeyFix(MOVED, "set model.trust_remote_code"),
        pad_token=KeyFix(MOVED, "set model.pad_token"),
        chat_template_path=KeyFix(MOVED, "set data.template"),
        dataset_text_field=KeyFix(
            MOVED, "set data.train[].format (and columns); the runner maps it"
        ),
        dataset_kwargs=KeyFix(MOVED, "set the data block; the runner prepares the dataset"),
        resume_from_checkpoint=KeyFix(MOVED, "run `recipe run RECIPE --resume`"),
        do_train=KeyFix(MOVED, "delete it; the runner always trains"),
        do_eval=KeyFix(MOVED, "delete it; evaluation follows data.eval and eval_strategy"),
        do_predict=KeyFix(MOVED, "delete it; use `recipe eval` after training"),
    ),
    ("lora", "base_model_name_or_path"): KeyFix(MOVED, "set model.id"),
    ("lora", "revision"): KeyFix(MOVED, "set model.revision"),
    ("lora", "inference_mode"): KeyFix(MOVED, "delete it; the runner trains the adapter"),
    ("lora", "peft_type"): KeyFix(MOVED, "delete it; method chooses LoRA"),
    ("model", "torch_dtype"): KeyFix(RENAMED, "use model.dtype"),
    ("model", "model_name_or_path"): KeyFix(RENAMED, "use model.id"),
    ("model", "load_in_4bit"): KeyFix(MOVED, "set quantization.load_in_4bit with method: qlora"),
    ("model", "load_in_8bit"): KeyFix(MOVED, "set quantization.load_in_8bit"),
    ("", "base_model"): KeyFix(RENAMED, "use model.id"),
    ("", "model_name_or_path"): KeyFix(RENAMED, "use model.id"),
    ("", "datasets"): KeyFix(RENAMED, "use data.train: a list of {source, format}"),
    ("", "dataset"): KeyFix(RENAMED, "use data.train: a list of {source, format}"),
    ("", "hyperparameters"): KeyFix(RENAMED, "use training (SFTConfig fields)"),
    ("", "torch_dtype"): KeyFix(MOVED, "set model.dtype"),
    ("", "deepspeed"): KeyFix(MOVED, "set launch.strategy: deepspeed and launch.deepspeed"),
    ("", "fsdp"): KeyFix(MOVED, "set launch.strategy: fsdp and launch.fsdp"),
}

MOVED_TRAINING_FIELDS = frozenset(
    key for (block, key), fix in KEY_FIXES.items() if block == "training" and fix.kind == MOVED
)


def _findings(ctx: RuleContext, kinds: tuple[str, ...]) -> Iterator[Finding]:
    for (block, key), fix in KEY_FIXES.items():
        if fix.kind not in kinds:
            continue
        container = ctx.data if block == "" else ctx.block(block)
        if key in container:
            path = (key,) if block == "" else (block, key)
            if block in ("training", "lora", "model"):
                what = f"was {fix.kind} in transformers 5 / TRL 1.x"
            else:
                what = "is not a recipe key (another tool's name)"
            yield Finding(path, {"key": ".".join(path), "fix": fix.fix, "what": what})


RULES = [
    Rule(
        "renamed-key",
        ERROR,
        "{key} {what}",
        "{fix}",
        lambda ctx: _findings(ctx, (RENAMED, REMOVED)),
    ),
    Rule(
        "misplaced-key",
        ERROR,
        "{key} does not belong here in a recipe",
        "{fix}",
        lambda ctx: _findings(ctx, (MOVED,)),
    ),
    Rule(
        "deprecated-key",
        WARNING,
        "{key} is a deprecated alias",
        "{fix}",
        lambda ctx: _findings(ctx, (DEPRECATED,)),
    ),
]
