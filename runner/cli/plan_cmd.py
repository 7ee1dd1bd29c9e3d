"""`recipe plan RECIPE`: estimated peak GPU memory, term by term, against a card.

Pure and fast: lint + runner.plan, no torch import. Exit 0 when it fits (a tight fit
warns), 1 when it does not fit or the recipe has errors, 2 on usage errors.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from runner.cli.options import SET_OPTION, echo_diagnostics
from runner.plan.throughput import EpochTime
from runner.plan.verdict import Plan
from runner.recipe.hardware import CARDS, Card, card_for
from runner.recipe.settings import Settings

GIB = 1024**3
OWN_RULES = ("hardware-fit", "hardware-fit-headroom")


def _gib(n: int) -> str:
    return f"{n / GIB:6.2f} GiB"


def requested_card(gpu: str | None, memory_gib: float | None) -> Card | None:
    """The card of `--gpu NAME` or `--memory-gib N` (None: the recipe's own hardware)."""
    if gpu:
        return CARDS[gpu]
    if memory_gib:
        return card_for({"memory_gib": memory_gib})
    return None


@click.command()
@click.argument("recipe")
@SET_OPTION
@click.option("--gpu", type=click.Choice(sorted(CARDS)), help="Plan for this card instead.")
@click.option(
    "--memory-gib",
    type=click.FloatRange(min=0, min_open=True),
    help="Plan for a card with this much memory (GiB).",
)
@click.option(
    "--tokens", type=click.IntRange(min=1), help="Training tokens per epoch, for a time estimate."
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def plan(
    recipe: str,
    overrides: tuple[str, ...],
    gpu: str | None,
    memory_gib: float | None,
    tokens: int | None,
    fmt: str,
) -> None:
    """Estimate peak GPU memory of RECIPE, term by term, against its card."""
    from runner.check import check_recipe
    from runner.plan.verdict import plan_epoch

    if gpu and memory_gib:
        raise click.UsageError("give --gpu or --memory-gib, not both")
    checked = check_recipe(recipe, overrides, card=requested_card(gpu, memory_gib))
    shown = [d for d in checked.diagnostics if d.rule not in OWN_RULES]
    echo_diagnostics(shown)
    if checked.settings is None or any(d.severity != "warning" for d in shown):
        sys.exit(1)
    the_plan = checked.require_plan()  # the same plan the hardware-fit rules judged
    epoch = plan_epoch(the_plan, tokens) if tokens else None
    if fmt == "json":
        click.echo(json.dumps(plan_json(checked.settings, the_plan, epoch), indent=2))
    else:
        click.echo(plan_text(checked.settings, the_plan, epoch))
    sys.exit(1 if the_plan.verdict == "does not fit" else 0)


def plan_json(settings: Settings, plan: Plan, epoch: EpochTime | None) -> dict[str, Any]:
    """The plan as plain data (bytes are exact integers)."""
    est = plan.estimate
    return {
        "recipe": settings.name,
        "model": settings.model.get("id") or "model.config",
        "method": plan.setup.method,
        "total_params": est.total_params,
        "trainable_params": est.trainable_params,
        "strategy": plan.setup.strategy,
        "processes": plan.setup.processes,
        "row_tokens": plan.setup.seq,
        "row_tokens_from": "model context" if plan.setup.seq_is_context else "max_length",
        "peak_phase": est.phase,
        "terms": [
            {"key": t.key, "label": t.label, "bytes": t.bytes, "note": t.note} for t in est.terms
        ],
        "total_bytes": est.total,
        "allocated_bytes": est.allocated,
        "reserved_bytes": est.reserved,
        "card": plan.card.name if plan.card else None,
        "capacity_bytes": plan.capacity,
        "headroom": plan.headroom,
        "verdict": plan.verdict,
        "changes": [
            {
                "description": c.description,
                "set": dict(c.overrides),
                "total_bytes": c.estimate.total,
            }
            for c in plan.changes
        ],
        "epoch": None
        if epoch is None
        else {
            "tokens_per_gpu": epoch.tokens,
            "flops_per_token": epoch.flops_per_token,
            "card_bf16_tflops": epoch.tflops,
            "assumed_utilisation": epoch.utilisation,
            "seconds": epoch.seconds,
        },
    }


def _row(setup: Any) -> str:
    if not setup.seq_is_context:
        return ""
    return " (max_length null, no truncation: planned at the model's context)"


def _packing(setup: Any) -> str:
    if not setup.padding_free:
        return ""
    if setup.attn in ("sdpa", "eager"):
        return ", packed (one row: a block-diagonal mask over its tokens)"
    return ", packed (padding-free)"


def _options(setup: Any) -> str:
    named = [("liger", "Liger kernels"), ("compiled", "torch.compile (planned as eager)")]
    on = [label for field, label in named if getattr(setup, field)]
    return "".join(f", {label}" for label in on)


def plan_text(settings: Settings, plan: Plan, epoch: EpochTime | None) -> str:
    """The plan as a table a person reads."""
    s, est = plan.setup, plan.estimate
    model = settings.model.get("id") or "model.config"
    lines = [
        f"{settings.name}: {model}, {s.method}, "
        f"{est.total_params / 1e9:.2f}B parameters, {est.trainable_params / 1e6:,.1f}M trained",
        f"  micro-batch {s.batch} x {s.seq} tokens{_row(s)}{_packing(s)} "
        f"(accumulation {s.grad_accum}), "
        f"{s.optim}, checkpointing {'on' if s.checkpointing else 'off'}, {s.attn}, {s.dtype}"
        f"{_options(s)}",
    ]
    where = "on one GPU" if s.processes == 1 else f"per GPU, {s.processes} GPUs ({s.strategy})"
    lines.append(f"  peak memory {where}, reached during {est.phase}:")
    for t in est.terms:
        note = f"  {t.note}" if t.note else ""
        lines.append(f"    {t.label:<36}{_gib(t.bytes)}{note}")
    lines.append(f"    {'total':<36}{_gib(est.total)}")
    lines.append(
        f"    (torch.cuda.max_memory_reserved should peak at {est.reserved / GIB:.2f} GiB: the "
        "total without the CUDA context; `recipe run` records it beside this plan)"
    )
    if plan.capacity is None:
        lines.append(
            "  no GPU to compare with (hardware.gpu names none, or cpu): "
            "use --gpu NAME or --memory-gib N"
        )
    else:
        label = plan.card.name if plan.card.name != "custom" else plan.card.label
        free = plan.capacity - est.total
        lines.append(
            f"  {label}: {plan.capacity / GIB:.1f} GiB, headroom {free / GIB:.2f} GiB "
            f"({plan.headroom:.0%}) -> {plan.verdict.upper()}"
        )
    if plan.changes:
        lines.append("  changes that would give room (new estimate):")
        limit = plan.capacity * 0.9
        for c in plan.changes:
            mark = "fits" if c.estimate.total <= limit else "not enough"
            lines.append(f"    {c.estimate.total / GIB:6.2f} GiB ({mark})  {c.description}")
            lines.append(f"        {c.set_args()}")
    if epoch is not None:
        e = epoch
        lines.append(
            f"  time per epoch: {e.seconds / 3600:.1f} h for {e.tokens:,} tokens per GPU at "
            f"{e.flops_per_token / 1e9:.1f} GFLOP/token, {e.tflops:g} TFLOPS bf16, assumed "
            f"{e.utilisation:.0%} utilisation"
        )
    return "\n".join(lines)
