"""Wall time of `recipe lint` on the shipped recipes in a fresh process, next to
`python -c "import trl"`, with the machine and its load (both swing the figures).

    python bench/lint_speed.py [--repeat 5]

Each runs as a fresh subprocess (interpreter start-up included), so the figures are what
a user or a CI job waits for. Prints the median and min of each, and the ratios.
`import trl` alone is lazy in TRL 1.x (it loads almost nothing); `from trl import
SFTTrainer` is what any command that trains pays, so both are shown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model, load

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} logical cores"


def wall_times(argv: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    recipe = shutil.which("recipe")
    lint = (
        [recipe, "lint", "recipes/"]
        if recipe
        else [sys.executable, "-m", "runner.cli", "lint", "recipes/"]
    )
    cases = {
        "recipe lint recipes/": lint,
        'python -c "import trl"': [sys.executable, "-c", "import trl"],
        "from trl import SFTTrainer": [sys.executable, "-c", "from trl import SFTTrainer"],
        'python -c "pass"': [sys.executable, "-c", "pass"],
    }
    print(f"machine {machine()}; load average before {load()} (1, 5, 15 min)")
    results = {name: wall_times(argv, args.repeat) for name, argv in cases.items()}
    print(f"load average after {load()}")
    print(f"{'command':38} {'median s':>9} {'min s':>7}   ({args.repeat} runs each)")
    for name, times in results.items():
        print(f"{name:38} {statistics.median(times):9.3f} {min(times):7.3f}")
    lint_median = statistics.median(results["recipe lint recipes/"])
    trl_median = statistics.median(results['python -c "import trl"'])
    sft_median = statistics.median(results["from trl import SFTTrainer"])
    print(f"lint / import trl = {lint_median / trl_median:.3f}")
    print(f"lint / from trl import SFTTrainer = {lint_median / sft_median:.3f}")


if __name__ == "__main__":
    main()
