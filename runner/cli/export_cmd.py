"""`recipe export RUN --format gguf`: the trained model as a GGUF file for llama.cpp and
Ollama, with `--check` proving it answers as the run does."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.options import quiet_libraries
from runner.cli.targets import (
    QLORA_BASE_OPTION,
    SET_OPTION,
    TRUST_REMOTE_CODE_OPTION,
    target_of,
)


@click.command()
@click.argument("run")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["gguf"]),
    required=True,
    help="The file format: gguf (llama.cpp, Ollama, LM Studio).",
)
@click.option(
    "--type",
    "kind",
    type=click.Choice(["f16", "q8_0"]),
    default="f16",
    show_default=True,
    help="Weights: float16, or 8-bit blocks (Q8_0, about half the size).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="The .gguf file to write, or a folder for it (default: RUN/export/NAME-TYPE.gguf).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing file of that name.")
@click.option(
    "--check",
    is_flag=True,
    help="Then compare greedy answers of the file with the run as trained.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "llama.cpp", "transformers"]),
    default="auto",
    show_default=True,
    help="What runs the file for --check: llama.cpp (llama-cpp-python) when installed.",
)
@click.option(
    "--prompts",
    "count",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="How many prompts --check answers (half from the run's held-out data).",
)
@click.option(
    "--max-new-tokens",
    default=32,
    show_default=True,
    type=click.IntRange(1),
    help="The longest answer --check compares.",
)
@QLORA_BASE_OPTION
@SET_OPTION
@TRUST_REMOTE_CODE_OPTION
def export(
    run: str,
    fmt: str,
    kind: str,
    out: Path | None,
    overwrite: bool,
    check: bool,
    engine: str,
    count: int,
    max_new_tokens: int,
    qlora_base: str,
    overrides: tuple[str, ...],
    trust_remote_code: bool,
) -> None:
    """Write a trained run as one GGUF file (merging a LoRA/QLoRA adapter first).

    The file carries the run's tokenizer, chat template, special tokens and end-of-turn
    stop token; an Ollama Modelfile is written beside it. --check answers the run's
    prompts with the file and with the run as trained, and compares them token by token.
    The last line printed is the file's path.
    """
    from runner.after.export import (
        export_destination,
        export_gguf,
        require_gguf_package,
        save_record,
    )
    from runner.after.export_check import choose_engine

    require_gguf_package()
    target = target_of(run, overrides, trust_remote_code)
    destination = export_destination(target, kind, str(out) if out else None, overwrite)
    chosen = choose_engine(engine) if check else None
    quiet_libraries(cpu=True)
    what = "merging the adapter, then writing" if target.adapter else "writing"
    click.echo(f"{what} {destination.gguf.name} ({kind}) ...", err=True)
    exported = export_gguf(target, destination, kind, qlora_base)
    click.echo(
        f"wrote {destination.gguf} ({exported.record['bytes'] / 1e6:.1f} MB; tokenizer "
        f"{exported.record['tokenizer']}; stops at {', '.join(exported.stop_tokens)}) and "
        f"{destination.modelfile.name}",
        err=True,
    )
    passed = True
    if chosen is not None:
        passed = _check(target, exported, chosen, count, max_new_tokens)
    save_record(destination, exported.record)
    click.echo(str(destination.gguf))
    if not passed:
        raise click.exceptions.Exit(1)


def _check(target, exported, engine: str, count: int, max_new_tokens: int) -> bool:
    """Run the check, print it, keep it in the record; whether it passed."""
    from runner.after.export_check import report_lines, run_check
    from runner.after.load import load_tokenizer

    if engine == "transformers":
        click.echo(
            "checking with transformers re-loading the file (for llama.cpp itself: "
            "pip install 'recipe-runner[llama-cpp]', then --check again) ...",
            err=True,
        )
    else:
        click.echo("checking with llama.cpp (llama-cpp-python) ...", err=True)
    report = run_check(
        target, exported.destination.gguf, exported.kind, engine, count, max_new_tokens
    )
    tokenizer = load_tokenizer(target)
    for line in report_lines(report, tokenizer):
        click.echo(line)
    exported.record["check"] = report.record()
    return report.passed
