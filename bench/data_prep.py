"""Data preparation, first run against a cached rerun (runner.data.store / cache).

    python bench/data_prep.py [--rows 200000] [--tokenizer PATH]

Writes a synthetic Alpaca-style .jsonl (instruction, input, output; lengths drawn from
the Alpaca sample in ../shared/fixtures when it is there), then prepares it twice with a
fresh cache: the first time every row is read, checked, rendered and tokenized; the
second finds it by content. Then one row is edited and it is prepared again (a miss).
Prints the three times and the cached run's share of the first (target: under 5%).
The tokenizer is the Llama 2 one from ../shared/fixtures when present, else the runner's
byte-level one. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT.parent / "shared" / "fixtures"


def lengths_from_fixture() -> list[tuple[int, int, int]]:
    """(instruction, input, output) character lengths of the real Alpaca sample."""
    sample = next(FIXTURES.glob("data/*alpaca*"), None) if FIXTURES.is_dir() else None
    if sample is None:
        return [(60, 0, 300), (80, 120, 200), (40, 0, 600)]
    text = sample.read_text(encoding="utf-8")
    rows = json.loads(text) if text.lstrip().startswith("[") else [
        json.loads(line) for line in text.splitlines() if line.strip()
    ]  # fmt: skip
    return [(len(r["instruction"]), len(r.get("input", "")), len(r["output"])) for r in rows]


def write_rows(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    shapes = lengths_from_fixture()
    words = [
        "the",
        "a",
        "model",
        "data",
        "answer",
        "question",
        "train",
        "token",
        "recipe",
        "run",
        "learn",
    ]

    def text(n: int) -> str:
        out = []
        while sum(len(w) + 1 for w in out) < n:
            out.append(rng.choice(words))
        return " ".join(out)

    with path.open("w", encoding="utf-8") as handle:
        for _ in range(count):
            a, b, c = rng.choice(shapes)
            row = {"instruction": text(a) or "x", "input": text(b), "output": text(c) or "y"}
            handle.write(json.dumps(row) + "\n")


def recipe(path: Path, data: Path, tokenizer: str) -> Path:
    path.write_text(
        f"""schema_version: 1
name: bench-data-prep
model:
  config: {{model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
           num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 4096}}
  tokenizer: {tokenizer}
method: full
data:
  train: [{{source: {data}, format: alpaca}}]
  eval: {{fraction: 0.01}}
  template: alpaca
training: {{learning_rate: 1.0e-3, bf16: false, max_length: 2048, eval_strategy: steps,
           eval_steps: 100}}
output_dir: {path.parent / "run"}
""",
        encoding="utf-8",
    )
    return path


def timed_prepare(settings) -> tuple[float, bool]:
    from runner.data.store import stored_data

    started = time.perf_counter()
    prepared = stored_data(settings, use_cache=True, into=Path(tempfile.mkdtemp()))
    return time.perf_counter() - started, prepared.hit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--tokenizer", help="a local tokenizer directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-data-prep-"))
    os.environ["RECIPE_CACHE_DIR"] = str(work / "cache")
    tokenizer = args.tokenizer or (
        str(FIXTURES / "tokenizers" / "llama-2") if FIXTURES.is_dir() else "byte-level"
    )
    data = work / "alpaca.jsonl"
    write_rows(data, args.rows)
    from runner.check import check_recipe

    settings = check_recipe(recipe(work / "bench.yaml", data, tokenizer)).require()
    first, hit1 = timed_prepare(settings)
    cached, hit2 = timed_prepare(settings)
    lines = data.read_text(encoding="utf-8").splitlines()
    edited = json.loads(lines[len(lines) // 2])
    edited["output"] += " (edited)"
    lines[len(lines) // 2] = json.dumps(edited)
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    after_edit, hit3 = timed_prepare(settings)
    print(
        f"{args.rows:,} Alpaca-style rows, tokenizer {Path(tokenizer).name}, {os.cpu_count()} CPUs"
    )
    print(f"  first run    {first:8.2f} s  (cache {'hit' if hit1 else 'miss'})")
    print(f"  rerun        {cached:8.2f} s  (cache {'hit' if hit2 else 'miss'})  "
          f"{cached / first:.1%} of the first (target < 5%)")  # fmt: skip
    print(f"  one row edit {after_edit:8.2f} s  (cache {'hit' if hit3 else 'miss'})")


if __name__ == "__main__":
    main()
