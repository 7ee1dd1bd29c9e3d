"""Training entry point, started by `recipe run` as `accelerate launch -m runner.train RUN_DIR`.

Reads top to bottom like trl/scripts/sft.py: parse, load tokenizer and data, load model,
build the trainer, train, evaluate, save. Every decision lives in a pure function in
runner.expand / runner.data; this file only wires them together.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from runner.data.prepare import load_examples, to_trl_rows, uses_assistant_only_loss
from runner.data.templates import template_kind, use_training_chat_template
from runner.expand.library_kwargs import lora_kwargs
from runner.expand.model import load_model, process_device
from runner.expand.tokenizer import end_of_turn_token, load_tokenizer
from runner.expand.training import run_sft_kwargs
from runner.run.artifacts import end_of_turn_ids
from runner.run.directory import RunDirectory, now
from runner.run.exact_match import exact_match
from runner.run.metrics import MetricsFileCallback, plot_loss, read_metrics
from runner.run.outcome import final_metrics, user_error_message


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="runner.train", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    try:
        train(args.run_dir, args.resume)
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise  # a bug: keep the traceback
        print(f"error: {message}", file=sys.stderr)
        RunDirectory(args.run_dir).update_run(status="failed", error=message, finished_at=now())
        sys.exit(1)


def train(run_dir: Path, resume: bool) -> None:
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    run = RunDirectory(run_dir)
    resolved = run.read_resolved()
    device, use_cpu = process_device()
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run.tensorboard))

    # Tokenizer and data (checked again here: same seed, same rows as `recipe run` checked)
    tokenizer = load_tokenizer(resolved)
    kind = template_kind(resolved["data"].get("template", "chat"))
    end_of_turn = end_of_turn_token(tokenizer, kind)
    examples = load_examples(resolved)
    assistant_only = uses_assistant_only_loss(examples.shape)
    if assistant_only:
        use_training_chat_template(tokenizer)
    train_rows = to_trl_rows(examples.train, examples.shape, resolved, tokenizer, end_of_turn)
    eval_rows = (
        to_trl_rows(examples.eval, examples.shape, resolved, tokenizer, end_of_turn)
        if examples.eval
        else None
    )

    # Model, trainer
    model = load_model(resolved, tokenizer, device, use_cpu)
    config = SFTConfig(
        **run_sft_kwargs(
            resolved,
            use_cpu=use_cpu,
            end_of_turn=end_of_turn,
            assistant_only=assistant_only,
            has_eval=eval_rows is not None,
        )
    )
    callbacks = [MetricsFileCallback(run.metrics)]
    if "early_stopping" in resolved:
        stop = resolved["early_stopping"]
        callbacks.append(EarlyStoppingCallback(stop["patience"], stop["threshold"]))
    lora = lora_kwargs(resolved)
    if lora:
        from peft import LoraConfig

        lora = LoraConfig(**lora)
        if "config" in resolved["model"] and int(os.environ.get("RANK", "0")) == 0:
            # A random-weight base cannot be rebuilt bit for bit later: keep it beside the
            # adapter. Saved before SFTTrainer injects the LoRA layers into this very model
            # (saved afterwards, its q_proj etc. would be stored as `base_layer` weights that
            # `from_pretrained` does not load).
            model.save_pretrained(run.final / "base")
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=callbacks,
    )

    # Train, evaluate, save
    match_config = resolved["data"].get("exact_match")
    stop_ids = end_of_turn_ids(tokenizer, resolved)
    before = after = None
    if match_config is not None and trainer.is_world_process_zero():
        before = exact_match(
            trainer.model, tokenizer, resolved, examples.eval, stop_ids, **match_config
        )
    started, cpu_started = time.perf_counter(), time.process_time()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    eval_metrics = trainer.evaluate() if eval_rows is not None else {}
    if match_config is not None and trainer.is_world_process_zero():
        after = exact_match(
            trainer.model, tokenizer, resolved, examples.eval, stop_ids, **match_config
        )
    trainer.save_model(str(run.final))  # full model, or the adapter only for LoRA/QLoRA

    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(run.final)
        records = read_metrics(run.metrics)
        plot_loss(records, run.loss_plot, title=resolved.get("name", "run"))
        run.update_run(
            status="succeeded",
            finished_at=now(),
            metrics=final_metrics(
                records, result, eval_metrics, trainer.state, seconds, cpu_seconds
            ),
            exact_match={"before": before, "after": after} if match_config is not None else None,
            data={
                "shape": examples.shape,
                "skipped_rows": examples.skipped,
                "sources": examples.fingerprints,
            },
            model_path=str(run.final),
            end_of_turn_token=end_of_turn,
            pad_token=tokenizer.pad_token,
        )


if __name__ == "__main__":
    main()
