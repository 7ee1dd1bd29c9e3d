"""GPU truth in one command: every shipped GPU recipe through the real `recipe run`.

    python bench/gpu_suite.py --dry-run        # the points and exact commands; runs nothing
    python bench/gpu_suite.py                  # every point, on the GPU here
    python bench/gpu_suite.py --only tinyllama-qlora-3070 --steps 20
    python bench/gpu_suite.py --cpu            # the CPU path, tiny models (automatic without CUDA)

Points: each shipped recipe made for a GPU x {unpacked, packed}. For each point a derived
recipe is written into the work folder (default bench/out/gpu-suite/, ignored by git):

- the recipe's own hardware, method, LoRA, quantization and training settings (batch,
  accumulation, max_length, optimizer, checkpointing, dtype, attention);
- `model.config` = the real architecture from bench/configs/*.json instead of `model.id`
  (random weights built by `recipe run` itself: no download; QLoRA really quantizes
  them); the config's vocab_size is kept, so embeddings, LM head and logits are the real
  model's, while its special token ids are left to the tokenizer;
- the runner's byte-level tokenizer with the `plain` template: nothing to download or
  carry to the GPU machine, and one byte is one token, so every synthetic row is exactly
  `max_length` tokens (a 16-token prompt, the rest completion, all of it trained but the
  prompt). The chat template's text would be tokens of the same row length, so memory
  and speed per token are those of the recipe's real data at full length;
- `max_steps` --steps (default 30), eval off, no checkpoints, no tensorboard; packing
  on (`training.packing: true`) or off.

Each point runs `python -m runner.cli run DERIVED --cap-memory --overwrite --no-cache`
(with `--cpu` on the CPU) in its own process, so one point's memory or OOM never leaks
into the next; `--cap-memory` holds the process to the recipe's card. Its run.json
gives the peak memory (max_memory_allocated / max_memory_reserved), the plan's figure,
their ratio, tokens/s of real tokens (over every step, as the runner's clock counts it,
and after the warm-up: from the first logged step to the last, from metrics.jsonl), the
padding share and MFU (against the GPU present).

Writes bench/results/gpu-<YYYY-MM-DD>.json (machine facts and every point) and
bench/results/gpu-<YYYY-MM-DD>.md (a table for docs/memory.md). Without CUDA (or with
--cpu) the same code path runs on the CPU with tiny models of the same model_type
(2 layers x 64, max_length 128, bitsandbytes optimizers swapped for adamw_torch_fused) and
writes to the work folder instead: CPU figures, never GPU truth.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner import RECIPES_DIR  # noqa: E402  (the repository root on the path first)

CONFIGS = ROOT / "bench" / "configs"
CONFIG_OF = {
    "meta-llama/Llama-3.2-1B-Instruct": "llama-3.2-1b-instruct.json",
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": "tinyllama-1.1b-chat.json",
    "huggyllama/llama-7b": "llama-7b.json",
}
WORK = ROOT / "bench" / "out" / "gpu-suite"
RESULTS = ROOT / "bench" / "results"
PROMPT_TOKENS = 16
GPU_STEPS, CPU_STEPS = 30, 3
CPU_MAX_LENGTH = 128
# what a derived recipe drops: evaluation, checkpoints, epochs (max_steps instead)
DROPPED_TRAINING = (
    "num_train_epochs",
    "eval_steps",
    "save_steps",
    "save_total_limit",
    "load_best_model_at_end",
    "metric_for_best_model",
    "per_device_eval_batch_size",
)
CPU_OPTIMIZERS = {"adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"}
CPU_NOTICE = (
    "CPU figures of tiny models (2 layers x 64, max_length 128): they prove the suite's "
    "code path end to end and are NOT GPU truth; nothing here is a GPU measurement."
)


@dataclass
class Point:
    """One measurement: a shipped recipe, packed or not, as a derived recipe."""

    recipe: str  # the shipped recipe's name
    packing: bool
    derived: Path = field(default=Path())
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.recipe}/{'packed' if self.packing else 'unpacked'}"

    @property
    def folder(self) -> Path:
        return self.derived.parent


def gpu_recipes() -> list[Path]:
    """The shipped recipes made for a GPU (hardware.gpu other than cpu)."""
    found = []
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
        if (recipe.get("hardware") or {}).get("gpu", "cpu") != "cpu":
            found.append(path)
    return found


def tiny_config(config: dict[str, Any]) -> dict[str, Any]:
    """The same model_type cut to 2 layers x 64, keeping the ratio of query to key/value
    heads (GQA) and the rope settings; vocabulary = the tokenizer's."""
    heads = 4
    groups = config["num_attention_heads"] // config.get("num_key_value_heads", heads)
    tiny = {k: v for k, v in config.items() if k not in ("vocab_size", "torch_dtype")}
    tiny.update(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=max(heads // max(groups, 1), 1),
        head_dim=16,
    )
    return tiny


def derive_recipe(
    shipped: dict[str, Any], config: dict[str, Any], *, packing: bool, steps: int, cpu: bool
) -> tuple[dict[str, Any], list[str]]:
    """The recipe a point runs (see the module docstring) and notes on what the CPU path
    changed. Pure: the shipped recipe is not touched."""
    recipe = copy.deepcopy(shipped)
    notes: list[str] = []
    model_config = {
        k: v
        for k, v in config.items()
        if k not in ("bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "architectures")
    }
    if cpu:
        model_config = tiny_config(model_config)
    model = {k: v for k, v in recipe["model"].items() if k not in ("id", "revision", "tokenizer")}
    recipe["model"] = {"config": model_config, "tokenizer": "byte-level", **model}
    recipe["name"] = f"{shipped['name']}-{'packed' if packing else 'unpacked'}"
    recipe["description"] = f"bench/gpu_suite.py: {shipped['name']}, random weights, synthetic rows"
    recipe["data"] = {
        "train": [{"source": "rows.jsonl", "format": "prompt_completion"}],
        "template": "plain",
    }
    recipe.pop("early_stopping", None)
    training = {k: v for k, v in recipe["training"].items() if k not in DROPPED_TRAINING}
    if cpu:
        training["max_length"] = min(training.get("max_length") or 1024, CPU_MAX_LENGTH)
        if training.get("optim") in CPU_OPTIMIZERS:
            notes.append(
                f"optim {training['optim']} -> adamw_torch_fused (bitsandbytes' is CUDA-only)"
            )
            training["optim"] = "adamw_torch_fused"
    training.update(
        max_steps=steps,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=max(1, min(int(training.get("logging_steps") or 10), steps // 3 or 1)),
        report_to="none",
        packing=packing,
    )
    recipe["training"] = training
    recipe["output_dir"] = "run"
    return recipe, notes


def synthetic_rows(count: int, max_length: int, seed: int = 0) -> str:
    """prompt_completion JSON lines of exactly `max_length` byte-level tokens each under
    the plain template: prompt + completion bytes + the end-of-turn token."""
    import random

    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "token", "memory", "plan"]
    lines = []
    for _ in range(count):
        text = " ".join(rng.choice(words) for _ in range(max_length))
        prompt = text[:PROMPT_TOKENS]
        completion = text[PROMPT_TOKENS : max_length - 1]  # the end-of-turn token ends the row
        lines.append(json.dumps({"prompt": prompt, "completion": completion}))
    return "\n".join(lines) + "\n"


def command_of(point: Point, cpu: bool) -> list[str]:
    """The exact `recipe run` of a point, through this Python (no console script needed)."""
    argv = [sys.executable, "-m", "runner.cli", "run", str(point.derived)]
    argv += ["--cap-memory", "--overwrite", "--no-cache"]
    return argv + (["--cpu"] if cpu else [])


def write_points(
    work: Path, only: list[str], steps: int, cpu: bool, *, packings=(False, True)
) -> list[Point]:
    """Write every point's derived recipe and synthetic rows under `work`."""
    points = []
    for path in gpu_recipes():
        shipped = yaml.safe_load(path.read_text(encoding="utf-8"))
        config = json.loads((CONFIGS / CONFIG_OF[shipped["model"]["id"]]).read_text())
        for packing in packings:
            point = Point(shipped["name"], packing)
            if only and not any(o in (point.recipe, point.name) for o in only):
                continue
            recipe, point.notes = derive_recipe(
                shipped, config, packing=packing, steps=steps, cpu=cpu
            )
            folder = work / point.name.replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            point.derived = folder / "recipe.yaml"
            point.derived.write_text(
                f"# derived by bench/gpu_suite.py from {path.name}; rewritten on every run\n"
                + yaml.safe_dump(recipe, sort_keys=False),
                encoding="utf-8",
            )
            training = recipe["training"]
            per_step = training["per_device_train_batch_size"] * training.get(
                "gradient_accumulation_steps", 1
            )
            rows = per_step * steps * (recipe.get("launch") or {}).get("num_processes", 1)
            (folder / "rows.jsonl").write_text(
                synthetic_rows(rows + per_step, training["max_length"]), encoding="utf-8"
            )
            points.append(point)
    return points


def machine_facts(cpu: bool) -> dict[str, Any]:
    """What this measurement ran on: the GPU, its memory, the library versions."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    facts: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "device": "cpu" if cpu else "cuda",
        "python": platform.python_version(),
        "versions": versions,
        "cpu_count": os.cpu_count(),
    }
    if not cpu:
        properties = torch.cuda.get_device_properties(0)
        facts.update(gpu=properties.name, gpu_memory_bytes=properties.total_memory)
        facts["cuda"] = torch.version.cuda
    return facts


def tail(path: Path, lines: int = 12) -> list[str]:
    if not path.is_file():
        return []
    return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]


def run_point(point: Point, cpu: bool, timeout: float | None) -> dict[str, Any]:
    """Run one point in its own process; its figures from run.json."""
    argv = command_of(point, cpu)
    log = point.folder / "suite.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        try:
            code = subprocess.run(
                argv, cwd=point.folder, stdout=out, stderr=subprocess.STDOUT, env=env,
                timeout=timeout,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
    seconds = round(time.perf_counter() - started, 1)
    run_json = point.folder / "run" / "run.json"
    record = json.loads(run_json.read_text()) if run_json.is_file() else {}
    metrics_file = point.folder / "run" / "metrics.jsonl"
    logged = metrics_file.read_text(encoding="utf-8").splitlines() if metrics_file.is_file() else []
    steady = after_warmup([json.loads(line) for line in logged if line.strip()])
    return figures(point, argv, code, seconds, record, tail(log), steady)


def after_warmup(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Tokens/s from the first logged step to the last (the Trainer logs the tokens seen
    and its runtime at every logging step), so the steps before the first log - the
    warm-up: kernel selection, allocator growth - are left out; None with fewer than two
    such logs."""
    timed = [
        r for r in records
        if isinstance(r.get("num_input_tokens_seen"), int) and "train_runtime" in r and "loss" in r
    ]  # fmt: skip
    if len(timed) < 2:
        return None
    first, last = timed[0], timed[-1]
    seconds = last["train_runtime"] - first["train_runtime"]
    tokens = last["num_input_tokens_seen"] - first["num_input_tokens_seen"]
    if seconds <= 0 or tokens <= 0:
        return None
    return {
        "from_step": first["step"],
        "to_step": last["step"],
        "tokens_per_second": round(tokens / seconds, 1),
    }


def figures(
    point: Point,
    argv: list[str],
    code: int | None,
    seconds: float,
    record: dict[str, Any],
    log_tail: list[str],
    steady: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A point's row of the results from its run.json (pure)."""
    metrics = record.get("metrics") or {}
    memory = record.get("memory") or {}
    plan = record.get("plan") or {}
    processes = memory.get("processes") or [{}]
    error = record.get("error") or ""
    if code == 0 and record.get("status") == "succeeded":
        status = "succeeded"
    elif "out of GPU memory" in error or any("OutOfMemoryError" in line for line in log_tail):
        status = "out of memory"
    elif code is None:
        status = "timed out"
    else:
        status = "failed"

    def peak(key: str) -> int | None:
        values = [p[key] for p in processes if p.get(key) is not None]
        return max(values) if values else None

    return {
        "point": point.name,
        "recipe": point.recipe,
        "packing": point.packing,
        "derived_recipe": str(point.derived),
        "command": shlex.join(argv),
        "notes": point.notes,
        "status": status,
        "exit_code": code,
        "wall_seconds": seconds,
        "error": error or None,
        "last_lines": log_tail if status != "succeeded" else [],
        "card": plan.get("card"),
        "plan_verdict": plan.get("verdict"),
        "plan_total_bytes": plan.get("total_bytes"),
        "plan_reserved_bytes": plan.get("reserved_bytes"),
        "plan_allocated_bytes": plan.get("allocated_bytes"),
        "peak_allocated_bytes": peak("max_memory_allocated"),
        "peak_reserved_bytes": peak("max_memory_reserved"),
        "peak_rss_bytes": peak("peak_rss"),
        "measured": memory.get("measured"),
        "peak_bytes": memory.get("peak_bytes"),
        "plan_bytes": memory.get("plan_bytes"),
        "peak_over_plan": memory.get("peak_over_plan"),
        "cap": memory.get("cap"),
        "steps": metrics.get("steps"),
        "tokens": metrics.get("tokens"),
        "token_slots": metrics.get("token_slots"),
        "padding_share": metrics.get("padding_share"),
        "train_seconds": metrics.get("train_seconds"),
        "tokens_per_second": metrics.get("tokens_per_second"),
        "mfu": metrics.get("mfu"),
        "after_warmup": steady,
        "tokens_per_second_after_warmup": steady["tokens_per_second"] if steady else None,
        "mfu_after_warmup": scaled(metrics.get("mfu"), steady, metrics.get("tokens_per_second")),
    }


def scaled(mfu: float | None, steady: dict[str, Any] | None, overall: float | None):
    """MFU after the warm-up: the run's MFU scaled by the steady over the overall speed."""
    if mfu is None or not steady or not overall:
        return None
    return round(mfu * steady["tokens_per_second"] / overall, 4)


def gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024**3:.2f} GiB"


def markdown_table(facts: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The results as a table for docs/memory.md."""
    cpu = facts["device"] == "cpu"
    where = "CPU (tiny models)" if cpu else f"{facts['gpu']} ({gib(facts['gpu_memory_bytes'])})"
    versions = ", ".join(f"{k} {v}" for k, v in facts["versions"].items() if v)
    lines = [f"Measured {facts['date']} on {where} by bench/gpu_suite.py; {versions}.", ""]
    if cpu:
        lines += [f"**{CPU_NOTICE}**", ""]
    peak = "peak RSS" if cpu else "peak reserved"
    lines += [
        f"| point | card | plan | {peak} | peak allocated | peak / plan | tokens/s | "
        "tokens/s after warm-up | padding | MFU after warm-up | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mfu = "-" if row["mfu_after_warmup"] is None else f"{row['mfu_after_warmup']:.1%}"
        padding = "-" if row["padding_share"] is None else f"{row['padding_share']:.1%}"
        speed = "-" if row["tokens_per_second"] is None else f"{row['tokens_per_second']:,.0f}"
        steady = row["tokens_per_second_after_warmup"]
        steady = "-" if steady is None else f"{steady:,.0f}"
        ratio = "-" if row["peak_over_plan"] is None else f"{row['peak_over_plan']:.3f}"
        lines.append(
            f"| {row['point']} | {row['card'] or '-'} | {gib(row['plan_bytes'])} | "
            f"{gib(row['peak_bytes'])} | {gib(row['peak_allocated_bytes'])} | {ratio} | "
            f"{speed} | {steady} | {padding} | {mfu} | {row['status']} |"
        )
    plan_figure = "allocated_bytes (no allocator or CUDA context on the CPU)" if cpu else (
        "reserved_bytes, against torch.cuda.max_memory_reserved"
    )  # fmt: skip
    lines += [
        "",
        f"plan = the plan's {plan_figure}; tokens/s = real (non-padding) tokens over every "
        "step; after warm-up = from the first logged step to the last; MFU against the GPU "
        "present, not the recipe's card. "
        + (
            "`--cap-memory` was passed but caps nothing on the CPU. "
            if cpu
            else "Memory capped to each recipe's card with `recipe run --cap-memory`. "
        )
        + "Paged "
        "optimizers' unified memory is outside torch's allocator and not in these peaks.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="list points and commands only")
    parser.add_argument("--only", nargs="+", default=[], help="recipe names or NAME/packed")
    parser.add_argument("--steps", type=int, help=f"optimizer steps ({GPU_STEPS}; CPU {CPU_STEPS})")
    parser.add_argument("--cpu", action="store_true", help="the CPU path even with CUDA here")
    parser.add_argument(
        "--gpu", action="store_true", help="with --dry-run: the GPU points, even without CUDA"
    )
    parser.add_argument("--work", type=Path, default=WORK, help="where derived recipes go")
    parser.add_argument("--timeout", type=float, help="seconds per point before it is stopped")
    args = parser.parse_args(argv)
    if args.gpu and not args.dry_run:
        parser.error("--gpu only shows the GPU points (--dry-run); running them needs CUDA here")

    cpu = not args.gpu and (args.cpu or not cuda_here())
    steps = args.steps or (CPU_STEPS if cpu else GPU_STEPS)
    points = write_points(args.work.resolve(), args.only, steps, cpu)
    if not points:
        parser.error(f"no point matches --only {' '.join(args.only)}")
    if cpu:
        print(f"NO CUDA GPU IN USE: {CPU_NOTICE}", file=sys.stderr)
    if args.dry_run:
        for point in points:
            print(f"# {point.name}: {point.derived}")
            for note in point.notes:
                print(f"#   {note}")
            print(shlex.join(command_of(point, cpu)))
        return 0

    facts = machine_facts(cpu)
    rows = []
    for point in points:
        print(f"{point.name}: {shlex.join(command_of(point, cpu))}", file=sys.stderr, flush=True)
        row = run_point(point, cpu, args.timeout)
        rows.append(row)
        print(f"  {summary(row)}", file=sys.stderr, flush=True)
    folder = args.work.resolve() if cpu else RESULTS
    stem = f"{'cpu' if cpu else 'gpu'}-{facts['date']}"
    folder.mkdir(parents=True, exist_ok=True)
    result = {"machine": facts, "steps": steps, "cpu_figures_not_gpu_truth": cpu, "points": rows}
    if cpu:
        result["notice"] = CPU_NOTICE
    (folder / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (folder / f"{stem}.md").write_text(markdown_table(facts, rows), encoding="utf-8")
    print(markdown_table(facts, rows))
    print(f"wrote {folder / stem}.json and .md")
    if cpu:
        print(f"NOTE: {CPU_NOTICE}")
    return 0 if all(r["status"] == "succeeded" for r in rows) else 1


def summary(row: dict[str, Any]) -> str:
    if row["status"] != "succeeded":
        return (
            f"{row['status']} ({row['wall_seconds']} s): {row['error'] or row['last_lines'][-1:]}"
        )
    return (
        f"succeeded in {row['wall_seconds']} s: peak {gib(row['peak_bytes'])} "
        f"({row['measured']}) vs plan {gib(row['plan_bytes'])}, {row['tokens_per_second']} tokens/s"
    )


def cuda_here() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
