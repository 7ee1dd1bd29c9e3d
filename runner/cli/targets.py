"""The options and target lookup of the commands that use a trained run (`infer`,
`chat`, `merge`, `eval`)."""

from __future__ import annotations

import click

from runner.after.merge import DEFAULT_QLORA_BASE, QLORA_BASES
from runner.after.target import Target, find_target, with_code_permission, with_overrides
from runner.cli.options import TRUST_REMOTE_CODE_OPTION

__all__ = [
    "BASE_4BIT_OPTION",
    "QLORA_BASE_OPTION",
    "SET_OPTION",
    "TRUST_REMOTE_CODE_OPTION",
    "target_of",
]

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

QLORA_BASE_OPTION = click.option(
    "--qlora-base",
    type=click.Choice(QLORA_BASES),
    default=DEFAULT_QLORA_BASE,
    show_default=True,
    help="What a QLoRA adapter is merged into: the 4-bit weights it trained on, "
    "dequantized, or the original 16/32-bit base (see docs/export.md).",
)


def target_of(
    reference: str, overrides: tuple[str, ...], trust_remote_code: bool = False
) -> Target:
    """The run or model RUN_OR_MODEL names, with `--set` applied to a run's recipe, and
    the model's own code allowed only as runner.after.target.with_code_permission says
    (checked here, before anything loads)."""
    target = with_overrides(find_target(reference), overrides)
    return with_code_permission(target, trust_remote_code)
