"""`recipe merge RUN`: fold a LoRA/QLoRA adapter into its base and save a standalone model."""

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
    "--out",
    type=click.Path(path_type=Path),
    help="Directory for the merged model (default: RUN/merged); never overwritten.",
)
@click.option(
    "--dtype",
    type=click.Choice(["bfloat16", "float16", "float32"]),
    help="Dtype of the merged weights (default: the recipe's model.dtype).",
)
@QLORA_BASE_OPTION
@SET_OPTION
@TRUST_REMOTE_CODE_OPTION
def merge(
    run: str,
    out: Path | None,
    dtype: str | None,
    qlora_base: str,
    overrides: tuple[str, ...],
    trust_remote_code: bool,
) -> None:
    """Merge a LoRA/QLoRA run's adapter into its base model and save a standalone model.

    The result loads with plain AutoModelForCausalLM.from_pretrained and stops at the
    run's end-of-turn token. A full fine-tuning run needs no merge.
    """

    from runner.after.merge import merge_adapter, merge_destination, merge_dtype, qlora_note

    target = target_of(run, overrides, trust_remote_code)
    dest = merge_destination(target, str(out) if out else None)
    chosen = merge_dtype(target, dtype)
    quiet_libraries()
    click.echo(f"merging {target.weights} into {target.base} in {chosen} ...", err=True)
    merged = merge_adapter(target, dest, chosen, qlora_base)
    click.echo(f"merged model saved to {merged.out} (eos_token_id {merged.stop_ids})")
    note = qlora_note(merged)
    if note:
        click.echo(note, err=True)
