"""The README's quickstart figures: `recipe run RECIPE` (the real-model recipe
smollm2-135m-lora-cpu by default, or demo-uppercase) from an empty folder, timed, with
the machine and its load at the time, since both swing the numbers.

    python bench/demo_run.py [--recipe demo-uppercase] [--set training.max_steps=100 ...]

Prints the machine (CPU model, cores, load average before and after, Python, torch),
the wall time of the whole command, and the run's own figures from run.json: steps,
tokens, training time, tokens/s, CPU time of the training loop, losses, exact match.
Tokens per CPU-second compares runs on a shared machine better than wall time does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from machine import cpu_model, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="smollm2-135m-lora-cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    from importlib.metadata import version

    print(f"machine     {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}")
    print(f"software    Python {platform.python_version()}, torch {version('torch')}, "
          f"recipe-runner {version('recipe-runner')}")  # fmt: skip
    print(f"load before {load()} (1, 5, 15 min averages)")
    with tempfile.TemporaryDirectory(prefix="recipe-demo-") as folder:
        command = ["recipe", "run", args.recipe]
        for value in args.overrides:
            command += ["--set", value]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        wall = time.perf_counter() - start
        print(f"load after  {load()}")
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        record = json.loads((Path(folder) / "outputs" / args.recipe / "run.json").read_text())
    m = record["metrics"]
    match = record.get("exact_match") or {}
    cpu_rate = m["tokens"] / m["train_cpu_seconds"] if m.get("train_cpu_seconds") else None
    print(f"command     {' '.join(command)}: {wall:.1f} s wall, all included")
    print(f"training    {m['steps']} steps, {m['tokens']:,} tokens in {m['train_seconds']:.1f} s "
          f"= {m['tokens_per_second']:,.0f} tokens/s")  # fmt: skip
    if cpu_rate:
        print(f"cpu         {m['train_cpu_seconds']:.1f} CPU-s in the loop = "
              f"{cpu_rate:,.0f} tokens per CPU-second")  # fmt: skip
    before = (record.get("eval_before") or {}).get("loss")
    print(
        f"loss        train {m['first_loss']} -> {m['final_loss']}, eval {before} -> {m['eval_loss']}"
    )
    if match.get("after"):
        before = match["before"]["accuracy"] if match.get("before") else None
        print(f"exact match {before} -> {match['after']['accuracy']} (held-out rows)")
    print(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
