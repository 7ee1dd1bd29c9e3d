"""`recipe infer RUN_OR_MODEL`: generate from a trained run or a model directory, with
the prompt formatted exactly as training formatted it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from runner.after.target import AfterError, Target
from runner.cli.options import quiet_libraries
from runner.cli.targets import BASE_4BIT_OPTION, SET_OPTION, TRUST_REMOTE_CODE_OPTION, target_of


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
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write results as JSONL to this file (never over an existing one without --force).",
)
@click.option("--force", is_flag=True, help="Let --out replace an existing file.")
@BASE_4BIT_OPTION
@SET_OPTION
@TRUST_REMOTE_CODE_OPTION
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
    force: bool,
    base_4bit: bool | None,
    overrides: tuple[str, ...],
    trust_remote_code: bool,
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
    if out is not None and out.exists() and not force:
        raise AfterError(
            f"{out} exists; recipe infer never overwrites a file (choose another --out, or "
            "add --force to replace it)"
        )

    from runner.after.prompts import PromptRow, read_prompts
    from runner.generation import Sampling

    target = target_of(run_or_model, overrides, trust_remote_code)
    if compare and not (target.is_run or target.adapter):
        raise AfterError(
            f"--compare needs a run or an adapter (it compares with the base model); "
            f"{target.path} is a plain model"
        )
    rows = (
        read_prompts(prompts_file)
        if prompts_file is not None
        else [PromptRow(prompt_text or "", "", {"prompt": prompt_text})]
    )
    sampling = Sampling(max_new_tokens, temperature, top_p, seed)
    _infer(target, rows, sampling, compare, out, base_4bit, batch=prompts_file is not None)


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
    from runner.after.load import load_target
    from runner.after.prompts import format_prompt
    from runner.generation import generate

    quiet_libraries()
    loaded = load_target(target, base_4bit=base_4bit)
    prompts = [format_prompt(loaded.fmt, loaded.tokenizer, r.prompt, r.input) for r in rows]
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
    from runner.after.load import load_base_model
    from runner.generation import generate

    if loaded.target.adapter:
        with loaded.model.disable_adapter():
            return generate(loaded.model, loaded.tokenizer, prompts, sampling, loaded.stop_ids)
    device = next(loaded.model.parameters()).device
    base = load_base_model(loaded.target, loaded.tokenizer, str(device), quantize=False)
    return generate(base, loaded.tokenizer, prompts, sampling, loaded.stop_ids)
