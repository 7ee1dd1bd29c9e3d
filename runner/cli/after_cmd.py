"""`recipe infer`, `recipe chat`, `recipe merge`, `recipe eval`: use what a run produced.

Each command finds its target (runner.after.target), loads it offline
(runner.after.load) and hands the work to runner.after; every user-fixable problem is an
AfterError printed as one message with exit code 1. Heavy libraries are imported inside
the commands, never at module top.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from runner.after.target import AfterError, Target, find_target, with_overrides

SET_OPTION = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of the run's recipe, e.g. --set model.id=PATH for a moved base model.",
)
BASE_4BIT_OPTION = click.option(
    "--base-4bit/--no-base-4bit",
    default=None,
    help="Load an adapter's base model in 4-bit (default: as trained, 4-bit for QLoRA).",
)


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(1)


def _guarded(work: Callable[[], None]) -> None:
    """Run a command's body; an AfterError becomes its message and exit code 1."""
    try:
        work()
    except AfterError as exc:
        _fail(str(exc))


def _target(reference: str, overrides: tuple[str, ...]) -> Target:
    return with_overrides(find_target(reference), overrides)


def _quiet_libraries() -> None:
    """Keep transformers' and datasets' progress bars and advice off the user's screen."""
    import warnings

    import datasets
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


# --- infer -------------------------------------------------------------------------------


@click.command()
@click.argument("run_or_model")
@click.option("--prompt", "prompt_text", help="One prompt (the user turn).")
@click.option(
    "--file",
    "prompts_file",
    type=click.Path(path_type=Path),
    help='A .jsonl file of prompts: {"prompt": ...}, {"instruction", "input"} or {"messages"}.',
)
@click.option("--max-new-tokens", default=256, show_default=True, type=click.IntRange(1))
@click.option(
    "--temperature", type=click.FloatRange(0, min_open=True), help="Sample (default: greedy)."
)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="Nucleus sampling.")
@click.option("--seed", type=int, help="Seed for sampling, for repeatable output.")
@click.option("--compare", is_flag=True, help="Also answer with the base model, side by side.")
@click.option("--out", type=click.Path(path_type=Path), help="Write results as JSONL to this file.")
@BASE_4BIT_OPTION
@SET_OPTION
def infer(
    run_or_model: str,
    prompt_text: str | None,
    prompts_file: Path | None,
    max_new_tokens: int,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
    compare: bool,
    out: Path | None,
    base_4bit: bool | None,
    overrides: tuple[str, ...],
) -> None:
    """Generate from a trained run (RUN = the recipe's output_dir) or a model directory.

    The prompt is formatted with the run's own template, exactly as in training, and
    generation stops at the run's end-of-turn token. Greedy unless --temperature is
    given. Output streams on a terminal; with --file (or --out) results are JSONL.
    """
    if (prompt_text is None) == (prompts_file is None):
        raise click.UsageError("give exactly one of --prompt TEXT or --file prompts.jsonl")
    if top_p is not None and temperature is None:
        raise click.UsageError("--top-p applies to sampling; give --temperature too")

    def work() -> None:
        from runner.after.generate import Sampling
        from runner.after.prompts import PromptRow, read_prompts

        target = _target(run_or_model, overrides)
        if compare and not (target.is_run or target.adapter):
            raise AfterError(
                f"error: --compare needs a run or an adapter (it compares with the base model); "
                f"{target.path} is a plain model"
            )
        rows = (
            read_prompts(prompts_file)
            if prompts_file is not None
            else [PromptRow(prompt_text or "", "", {"prompt": prompt_text})]
        )
        sampling = Sampling(max_new_tokens, temperature, top_p, seed)
        _infer(target, rows, sampling, compare, out, base_4bit, batch=prompts_file is not None)

    _guarded(work)


def _infer(
    target: Target,
    rows: list[Any],
    sampling: Any,
    compare: bool,
    out: Path | None,
    base_4bit: bool | None,
    *,
    batch: bool,
) -> None:
    from runner.after.compare import side_by_side
    from runner.after.generate import generate
    from runner.after.load import load_target
    from runner.after.prompts import format_prompt

    _quiet_libraries()
    loaded = load_target(target, base_4bit=base_4bit)
    prompts = [format_prompt(loaded.settings, loaded.tokenizer, r.prompt, r.input) for r in rows]
    stream = not batch and not compare and out is None and sys.stdout.isatty()
    answers = generate(
        loaded.model, loaded.tokenizer, prompts, sampling, loaded.stop_ids, stream=stream
    )
    base_answers = _base_answers(loaded, prompts, sampling) if compare else None
    records = []
    for index, (row, answer) in enumerate(zip(rows, answers, strict=True)):
        record = {**row.row, "generation": answer.text, "stopped": answer.stopped}
        if base_answers is not None:
            record["base_generation"] = base_answers[index].text
        records.append(record)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        click.echo(f"wrote {len(records)} result(s) to {out}", err=True)
        return
    if batch:
        for record in records:
            click.echo(json.dumps(record, ensure_ascii=False))
        return
    if base_answers is not None:
        width = min(shutil.get_terminal_size((100, 20)).columns, 160)
        click.echo(side_by_side("fine-tuned", answers[0].text, "base", base_answers[0].text, width))
    elif stream:
        pass  # already printed token by token
    else:
        click.echo(answers[0].text)
    if not answers[0].stopped:
        click.echo(
            f"(stopped at --max-new-tokens {sampling.max_new_tokens}, not at an end-of-turn token)",
            err=True,
        )


def _base_answers(loaded: Any, prompts: list[list[int]], sampling: Any) -> list[Any]:
    """The base model's answers: the adapter switched off, or the full run's start model."""
    from runner.after.generate import generate
    from runner.after.load import load_base_model

    if loaded.target.adapter:
        with loaded.model.disable_adapter():
            return generate(loaded.model, loaded.tokenizer, prompts, sampling, loaded.stop_ids)
    device = next(loaded.model.parameters()).device
    base = load_base_model(
        loaded.target, loaded.tokenizer, str(device), device.type == "cpu", quantize=False
    )
    return generate(base, loaded.tokenizer, prompts, sampling, loaded.stop_ids)


# --- chat --------------------------------------------------------------------------------


@click.command()
@click.argument("run_or_model")
@click.option("--max-new-tokens", default=512, show_default=True, type=click.IntRange(1))
@click.option(
    "--temperature", type=click.FloatRange(0, min_open=True), help="Sample (default: greedy)."
)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="Nucleus sampling.")
@click.option("--seed", type=int, help="Seed for sampling.")
@BASE_4BIT_OPTION
@SET_OPTION
def chat(
    run_or_model: str,
    max_new_tokens: int,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
    base_4bit: bool | None,
    overrides: tuple[str, ...],
) -> None:
    """Chat with a trained run (or a model directory) in the terminal.

    Multi-turn through the run's chat template; /reset clears the conversation, /exit
    or Ctrl-D ends it. Input may be piped in, one message per line.
    """

    def work() -> None:
        from runner.after.chat import HELP, chat_loop
        from runner.after.generate import Sampling, generate
        from runner.after.load import load_target, load_tokenizer
        from runner.after.prompts import format_prompt, has_chat_template

        target = _target(run_or_model, overrides)
        _quiet_libraries()
        if not has_chat_template(target.resolved, load_tokenizer(target)):
            template = (target.resolved or {}).get("data", {}).get("template", "none")
            raise AfterError(
                f"error: {target.path} has no chat template (its prompt template is "
                f"{template!r}), so it cannot hold a multi-turn conversation; send single "
                f'prompts with `recipe infer {run_or_model} --prompt "..."`'
            )
        loaded = load_target(target, base_4bit=base_4bit)
        sampling = Sampling(max_new_tokens, temperature, top_p, seed)
        interactive = sys.stdin.isatty()

        def read() -> str | None:
            if interactive:
                click.echo(click.style("you> ", bold=True), nl=False)
            line = sys.stdin.readline()
            return line if line else None

        def reply(history: list[dict[str, Any]]) -> str:
            ids = format_prompt(loaded.settings, loaded.tokenizer, history)
            stream = sys.stdout.isatty()
            if stream:
                click.echo(click.style("assistant> ", bold=True), nl=False)
            answer = generate(
                loaded.model, loaded.tokenizer, [ids], sampling, loaded.stop_ids, stream=stream
            )[0]
            if not stream:
                click.echo(f"assistant> {answer.text}")
            return answer.text

        if interactive:
            click.echo(HELP)
        chat_loop(read, reply, click.echo)

    _guarded(work)


# --- merge -------------------------------------------------------------------------------


@click.command()
@click.argument("run")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Directory for the merged model (default: RUN/merged); never overwritten.",
)
@click.option(
    "--dtype",
    type=click.Choice(["bfloat16", "float16", "float32"]),
    help="Dtype of the merged weights (default: the recipe's model.dtype).",
)
@SET_OPTION
def merge(run: str, out: Path | None, dtype: str | None, overrides: tuple[str, ...]) -> None:
    """Merge a LoRA/QLoRA run's adapter into its base model and save a standalone model.

    The result loads with plain AutoModelForCausalLM.from_pretrained and stops at the
    run's end-of-turn token. A full fine-tuning run needs no merge.
    """

    def work() -> None:
        from runner.after.merge import QLORA_NOTE, merge_adapter, merge_destination, merge_dtype

        target = _target(run, overrides)
        dest = merge_destination(target, str(out) if out else None)
        chosen = merge_dtype(target, dtype)
        _quiet_libraries()
        click.echo(f"merging {target.weights} into {target.base} in {chosen} ...", err=True)
        merged = merge_adapter(target, dest, chosen)
        click.echo(f"merged model saved to {merged.out} (eos_token_id {merged.stop_ids})")
        if merged.from_qlora:
            click.echo(QLORA_NOTE.format(dtype=chosen), err=True)

    _guarded(work)


# --- eval --------------------------------------------------------------------------------


@click.command(name="eval")
@click.argument("run")
@click.option("--data", "data", help="Evaluate on this source instead of the run's eval split.")
@click.option("--format", "fmt", help="Format of --data (default: the run's training format).")
@click.option("-n", "count", default=5, show_default=True, type=click.IntRange(0))
@click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(1))
@BASE_4BIT_OPTION
@SET_OPTION
def eval_(
    run: str,
    data: str | None,
    fmt: str | None,
    count: int,
    max_new_tokens: int,
    base_4bit: bool | None,
    overrides: tuple[str, ...],
) -> None:
    """Loss and perplexity of a trained run, plus N generations against references.

    Uses the run's eval split unless --data is given (any supported source and format).
    Results go into the run directory: eval.json and eval-generations.jsonl.
    """

    def work() -> None:
        from runner.after.evaluate import (
            eval_data,
            loss_metrics,
            reference_generations,
            save_results,
            summary,
        )
        from runner.after.load import load_target
        from runner.run.directory import now

        target = _target(run, overrides)
        _quiet_libraries()
        rows = eval_data(target, data, fmt)
        for note in rows.notes:
            click.echo(note, err=True)
        loaded = load_target(target, base_4bit=base_4bit)
        metrics = loss_metrics(loaded, rows)
        generations = reference_generations(loaded, rows, count, max_new_tokens)
        record = {
            "evaluated_at": now(),
            "data": rows.description,
            "skipped_rows": rows.skipped,
            "base_4bit": loaded.quantized,
            **summary(metrics, generations),
        }
        saved = save_results(target.path, record, generations)
        click.echo(_eval_report(record, saved))

    _guarded(work)


def _eval_report(record: dict[str, Any], saved: Path) -> str:
    lines = [
        f"data        {record['data']}: {record['rows']} rows",
        f"loss        {record['loss']:.4f}",
        f"perplexity  {record['perplexity']:.3f}",
    ]
    if record["generations"]:
        if record["exact_match"] is not None:
            lines.append(
                f"exact match {record['exact_match_count']}/{record['generations']} generations"
            )
        else:
            lines.append(f"generations {record['generations']} (long answers: compare them by eye)")
    lines.append(f"saved       {saved} and {saved.with_name('eval-generations.jsonl').name}")
    return "\n".join(lines)


__all__ = ["chat", "eval_", "infer", "merge"]
