"""`recipe eval RUN`: loss, perplexity and generations against references, written into
the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from runner.cli.options import quiet_libraries
from runner.cli.targets import BASE_4BIT_OPTION, SET_OPTION, TRUST_REMOTE_CODE_OPTION, target_of
from runner.data.formats import FIELDS


@click.command(name="eval")
@click.argument("run")
@click.option("--data", "data", help="Evaluate on this source instead of the run's eval split.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FIELDS)),
    help="Format of --data (default: the run's training format).",
)
@click.option("-n", "count", default=5, show_default=True, type=click.IntRange(0))
@click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(1))
@BASE_4BIT_OPTION
@SET_OPTION
@TRUST_REMOTE_CODE_OPTION
def eval_(
    run: str,
    data: str | None,
    fmt: str | None,
    count: int,
    max_new_tokens: int,
    base_4bit: bool | None,
    overrides: tuple[str, ...],
    trust_remote_code: bool,
) -> None:
    """Loss and perplexity of a trained run, plus N generations against references.

    Uses the run's eval split unless --data is given (any supported source and format).
    Results go into the run directory: eval.json and eval-generations.jsonl.
    """

    from runner.after.evaluate import (
        eval_data,
        loss_metrics,
        reference_generations,
        save_results,
        summary,
    )
    from runner.after.load import load_target
    from runner.run.directory import now

    target = target_of(run, overrides, trust_remote_code)
    quiet_libraries()
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
