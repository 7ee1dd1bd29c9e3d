"""Training entry point, started by `recipe run` as
`accelerate launch ... -m runner.train RUN_DIR [--cpu] [--cap-memory] [--trust-remote-code]
[--resume CHECKPOINT]`.

Reads top to bottom like trl/scripts/sft.py: join the run (its lock, its session, a watch
on `recipe run`: runner.run.session.join_run), settings, tokenizer and data, model,
trainer, train, evaluate, save. Every decision lives elsewhere (runner.recipe resolves
the recipe, runner.expand turns it into library arguments, runner.data prepares the
rows, runner.run keeps the record); this file only wires them together.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from runner.data.store import training_data
from runner.expand.library_kwargs import lora_kwargs
from runner.expand.model import load_model
from runner.expand.placement import Placement
from runner.expand.targets import adapted, module_kinds, require_targets
from runner.expand.tokenizer import load_tokenizer
from runner.expand.training import run_sft_kwargs
from runner.logs import log_file_of, quiet_libraries
from runner.recipe.settings import Settings
from runner.run.directory import RunDirectory, now
from runner.run.lifeline import SESSION, Lifeline
from runner.run.memory_cap import apply_memory_cap
from runner.run.provenance import record_imported_code, run_settings
from runner.run.record import (
    final_evaluation,
    record_baseline,
    record_early_stop,
    record_stop,
    record_success,
    translate_error,
)
from runner.run.safe_load import load_as_data, translate_unpickling
from runner.run.session import SUPERSEDED_EXIT, Superseded, close_session, join_run
from runner.run.template_copy import save_chat_template


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="runner.train", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--cpu", action="store_true", help="train on the CPU (decided by `recipe run`)"
    )
    parser.add_argument(
        "--cap-memory", action="store_true", help="hold CUDA memory to the recipe's card"
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="the command line allowed the model's own code (the recipe alone never does)",
    )
    parser.add_argument("--resume", type=Path, help="the complete checkpoint to continue from")
    args = parser.parse_args(argv)
    log_file = log_file_of(args.run_dir, "train")
    quiet_libraries(log_file, cpu=args.cpu)  # logs/train.log
    run = RunDirectory(args.run_dir)
    session = os.environ.get(SESSION)  # this process's run session (runner.run.session)
    main_rank = int(os.environ.get("RANK", "0")) == 0 and run.run_json.is_file()
    lifeline = join_run(  # exits here if a newer session owns the run
        run,
        log_file,
        (lambda why: record_early_stop(run, session, why, args.resume)) if main_rank else None,
    )
    placement = Placement(cpu=args.cpu)
    try:
        load_as_data(args.resume)  # every checkpoint and weights file, never code
        code = train(
            run,
            placement,
            args.resume,
            cap_memory=args.cap_memory,
            trust_remote_code=args.trust_remote_code,
            lifeline=lifeline,
        )
    except Superseded as exc:  # a newer session owns the run: write nothing more
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(SUPERSEDED_EXIT)
    except Exception as exc:
        error = translate_error(exc) or translate_unpickling(exc, args.resume)
        if error is None:
            raise  # a bug: keep the traceback
        print("\n".join(error.report()), file=sys.stderr)
        if main_rank:
            with contextlib.suppress(Superseded):
                first = str(error).splitlines()[0]
                close_session(
                    run, session, "failed", first, None, error=str(error), finished_at=now()
                )
        sys.exit(1)
    if lifeline.gone:  # nobody waits on a tidy shutdown: end now, the record written
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def train(
    run: RunDirectory,
    placement: Placement,
    resume: Path | None,
    *,
    cap_memory: bool = False,
    trust_remote_code: bool = False,
    lifeline: Lifeline | None = None,
) -> int:
    from runner.run.callbacks import run_callbacks

    settings, model_code = run_settings(run, trust_remote_code)  # and the model code allowed
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run.tensorboard))

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cap = apply_memory_cap(settings.card, placement.device(local_rank)) if cap_memory else None
    if cap is not None and local_rank == 0:
        print(cap.reason, file=sys.stderr)
    tokenizer = load_tokenizer(settings)
    data = training_data(settings, tokenizer, home=run.path)  # prepared by `recipe run`
    model = load_model(settings, placement, tokenizer, local_rank=local_rank, base_dir=run.base)
    require_targets(settings, module_kinds(model), str(settings.model.get("id")))  # before PEFT
    lora = lora_kwargs(settings)
    callbacks = run_callbacks(settings, run, tokenizer, data, resume, cap, lifeline)
    trainer = sft_trainer(settings, placement, model, tokenizer, data, callbacks)
    if model_code is not None:  # what this process imported is what was checked
        record_imported_code(run, model_code, write=trainer.is_world_process_zero())
    if lora and trainer.is_world_process_zero():  # the modules PEFT adapted, and how many
        run.update_run(adapter=adapted(trainer.model))

    if settings.eval_before and resume is None:  # when to evaluate: runner.recipe.settings
        record_baseline(run, trainer)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    code = 0
    if callbacks.guard.reason is not None:  # diverged, or interrupted after a checkpoint
        if trainer.is_world_process_zero():
            code = record_stop(run, settings, trainer, callbacks)
    else:
        save_final(run, settings, trainer, tokenizer, result, data, callbacks)
    leave_together(trainer)
    return code


def leave_together(trainer: Any) -> None:
    """On several processes, every one waits for the others (the main one writes the
    record last) and then leaves the process group: one left to the interpreter's exit
    can abort (SIGABRT, "terminate called without an active exception") while the main
    machine's store goes down, failing a run that had finished."""
    accelerator = trainer.accelerator
    if accelerator.num_processes > 1:
        accelerator.wait_for_everyone()
        accelerator.state.destroy_process_group()


def sft_trainer(
    settings: Settings, placement: Placement, model: Any, tokenizer: Any, data: Any, callbacks: Any
) -> Any:
    """TRL's SFTTrainer over the prepared data, with the run's callbacks; the screen gets
    the progress line (runner.run.progress), not TRL's raw log dicts."""
    from peft import LoraConfig
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    lora = lora_kwargs(settings)
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            **run_sft_kwargs(
                settings,
                placement,
                data.loss,
                has_eval=data.eval is not None,
                tokenized=data.tokenized,
            )
        ),
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=LoraConfig(**lora) if lora else None,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def save_final(
    run: RunDirectory, settings: Settings, trainer: Any, tokenizer: Any, result: Any, data: Any,
    callbacks: Any,
) -> None:  # fmt: skip
    """The final evaluation (when the recipe evaluates after training), then the model or
    adapter with its tokenizer and template into final/, and the run's record."""
    eval_metrics = final_evaluation(trainer, settings) if settings.eval_after else {}
    if trainer.is_fsdp_enabled:  # one whole model, however the checkpoints were sharded
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(run.final))  # the full model, or the adapter for LoRA/QLoRA
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(run.final)
        save_chat_template(run.path, tokenizer, settings.template)  # template/ in the run
        record_success(run, settings, trainer, result, eval_metrics, data, callbacks)


if __name__ == "__main__":
    main()
