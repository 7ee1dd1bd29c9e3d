"""Packing on the CPU: real (non-padding) tokens/s and the padding share of `recipe run`
with and without `training.packing`, for the demo model's architecture on rows whose
lengths follow real instruction data.

    python bench/throughput.py [--steps 40] [--repeats 3] [--batch 32]

The lengths: each row of the Alpaca fixture (../shared/fixtures/data/alpaca_sample.json)
rendered through the Alpaca prompt and tokenized with the Llama 2 tokenizer
(../shared/fixtures/tokenizers/llama-2), as the llama7b-qlora-3090 recipe trains it at
max_length 512; scaled by 128/512 to the demo model's context of 128, so the lengths
keep their shape relative to max_length (and so the padding share). Synthetic rows of
those lengths (prompt and completion apart) are written as prompt-completion JSON lines;
the runner's byte-level tokenizer makes one token per byte.

Three runs of the same recipe through the real `recipe run` (model: the demo's 4 layers
x 128, random weights from `model.config`; sdpa; float32; AdamW), each `--repeats`
times, alternating:

- padded: `--batch` rows per micro-batch, each batch padded to its longest row;
- packed: TRL's best-fit-decreasing packing into rows of max_length, with as many
  packed rows per micro-batch as hold about the same examples (`--batch` x mean length
  / max_length), so a step trains about the same data;
- packed, same rows: `--batch` packed rows per micro-batch, to show the cost of
  flattening: under sdpa (and eager) transformers turns the flattened micro-batch into
  one sequence with a block-diagonal mask, and attention scores every pair of its
  tokens (`recipe plan` counts that mask; `packing-dense-attention` warns about it).

It prints each run's real tokens/s, token slots and padding share (from run.json), the
medians, and whether packing wins by at least the padding share it removes (packed
tokens/s >= padded tokens/s x (1 + padding share), within 5% for noise). On a shared
CPU the figures swing with the other load: it prints the load average before and after.

Why 32 rows by default: a step of this 1M-parameter model is short next to the step's
fixed cost (AdamW, gradient clipping, the scheduler, the callbacks: about 14 ms on the
2-core Xeon below, a quarter of a packed step of 4 rows). With 16 padded rows (4 packed)
that fixed cost, not padding, decides the ratio; a GPU recipe's step is hundreds of ms of
compute and its fixed cost is small beside it. Measured 2026-12-02 on that machine
(Intel Xeon, 2 logical cores, otherwise idle: load 0.04 before), 30 steps x 3 repeats:
--batch 16: padded 6,921 tokens/s (56.0% padding), packed 4 rows 9,546: 1.38x (needs
1.56x: no); --batch 32: padded 5,130 (60.5% padding), packed 9 rows 8,855: 1.73x (needs
1.60x: yes); packing all 32 rows into one micro-batch: 0.90x (sdpa over 4,096 tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from machine import cpu_model, load

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
ALPACA = FIXTURES / "data" / "alpaca_sample.json"
LLAMA2_TOKENIZER = FIXTURES / "tokenizers" / "llama-2"
RECIPE_MAX_LENGTH = 512  # llama7b-qlora-3090: Alpaca at max_length 512
MAX_LENGTH = 128  # the demo model's context
ROWS = 3000


def alpaca_lengths() -> list[tuple[int, int]]:
    """(prompt, completion) token counts of each fixture row, as the Alpaca recipe
    tokenizes them (the Alpaca prompt; the completion with its end-of-turn token)."""
    from transformers import AutoTokenizer

    if not ALPACA.is_file() or not LLAMA2_TOKENIZER.is_dir():
        sys.exit(f"needs the real-data fixtures: {ALPACA} and {LLAMA2_TOKENIZER} (../shared)")
    template = json.loads((REPO / "templates" / "alpaca.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(LLAMA2_TOKENIZER)
    pairs = []
    for row in json.loads(ALPACA.read_text()):
        prompt = template["prompt_input" if row["input"] else "prompt_no_input"].format(**row)
        pairs.append(
            (len(tokenizer(prompt).input_ids), len(tokenizer(row["output"]).input_ids) + 1)
        )
    return pairs


def synthetic_rows(pairs: list[tuple[int, int]], path: Path, seed: int = 0) -> float:
    """Write ROWS rows whose lengths are drawn from `pairs`, scaled to MAX_LENGTH; the
    mean row length in tokens (byte-level: a byte each, plus the end-of-turn token)."""
    rng = random.Random(seed)
    scale = MAX_LENGTH / RECIPE_MAX_LENGTH
    total = 0
    with path.open("w", encoding="utf-8") as out:
        for _ in range(ROWS):
            prompt, completion = rng.choice(pairs)
            p = max(1, round(prompt * scale))
            c = max(1, round(completion * scale) - 1)  # the byte tokenizer adds end-of-turn
            row = {"prompt": text(rng, p), "completion": text(rng, c)}
            total += min(MAX_LENGTH, p + c + 1)
            out.write(json.dumps(row) + "\n")
    return total / ROWS


def text(rng: random.Random, length: int) -> str:
    """`length` bytes of lowercase words (never blank)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    chars = [rng.choice(letters)]
    while len(chars) < length:
        chars.append(" " if chars[-1] != " " and rng.random() < 0.2 else rng.choice(letters))
    return "".join(chars)


def recipe_text(data: Path, steps: int, batch: int, packing: bool) -> str:
    return textwrap.dedent(
        f"""\
        schema_version: 1
        name: bench-throughput
        hardware: {{gpu: cpu}}
        model:
          config: {{model_type: llama, hidden_size: 128, intermediate_size: 512,
                    num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 4,
                    max_position_embeddings: {MAX_LENGTH}, tie_word_embeddings: true}}
          tokenizer: byte-level
          dtype: float32
          attn_implementation: sdpa
        method: full
        data:
          train: [{{source: {data}, format: prompt_completion}}]
          template: plain
        training:
          max_steps: {steps}
          learning_rate: 1.0e-3
          per_device_train_batch_size: {batch}
          max_length: {MAX_LENGTH}
          packing: {str(packing).lower()}
          logging_steps: 10
          save_strategy: "no"
          report_to: none
          seed: 42
          activation_checkpointing: false
          bf16: false
          optim: adamw_torch
        output_dir: run
        """
    )


def run_once(work: Path, data: Path, steps: int, batch: int, packing: bool) -> dict:
    (work / "bench.yaml").write_text(recipe_text(data, steps, batch, packing), encoding="utf-8")
    done = subprocess.run(
        ["recipe", "run", "bench.yaml", "--overwrite"], cwd=work, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"recipe run failed:\n{done.stderr[-3000:]}")
    return json.loads((work / "run" / "run.json").read_text())["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="padded rows per micro-batch")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"machine     {cpu_model()}, {os.cpu_count()} logical cores")
    print(f"load before {load()} (1, 5, 15 min averages)")
    with tempfile.TemporaryDirectory(prefix="recipe-throughput-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("RECIPE_CACHE_DIR", str(work / "cache"))
        mean = synthetic_rows(alpaca_lengths(), work / "rows.jsonl")
        packed_batch = max(1, round(args.batch * mean / MAX_LENGTH))
        print(
            f"rows        {ROWS} synthetic rows, Alpaca fixture lengths x {MAX_LENGTH}/"
            f"{RECIPE_MAX_LENGTH}: mean {mean:.1f} tokens, max_length {MAX_LENGTH}"
        )
        variants = {
            "padded": (args.batch, False),
            f"packed ({packed_batch} rows)": (packed_batch, True),
            f"packed, same rows ({args.batch})": (args.batch, True),
        }
        results: dict[str, list[dict]] = {name: [] for name in variants}
        for repeat in range(args.repeats):
            order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
            for name in order:
                batch, packing = variants[name]
                m = run_once(work, work / "rows.jsonl", args.steps, batch, packing)
                results[name].append(m)
                print(
                    f"[{repeat + 1}] {name:<24} {m['tokens_per_second']:>8,.0f} tokens/s  "
                    f"{m['tokens']:>8,} tokens  {m['token_slots']:>8,} slots  "
                    f"padding {m['padding_share']:.1%}",
                    flush=True,
                )
    print(f"load after  {load()}")
    medians = {
        n: statistics.median(r["tokens_per_second"] for r in rs) for n, rs in results.items()
    }
    shares = {n: statistics.median(r["padding_share"] for r in rs) for n, rs in results.items()}
    print(f"\nmedians over {args.repeats} run(s) of {args.steps} steps (real tokens/s, padding):")
    for name in variants:
        print(f"  {name:<24} {medians[name]:>8,.0f} tokens/s  padding {shares[name]:.1%}")
    padded, packed = medians["padded"], medians[f"packed ({packed_batch} rows)"]
    need = 1 + shares["padded"]
    speedup = packed / padded
    verdict = "yes" if speedup >= need * 0.95 else "NO"
    print(
        f"packing: {speedup:.2f}x the padded tokens/s; the padding it removes is "
        f"{shares['padded']:.1%}, so it must reach {need:.2f}x (within 5%): {verdict}"
    )
    same = medians[f"packed, same rows ({args.batch})"] / padded
    print(
        f"packing {args.batch} rows per micro-batch instead: {same:.2f}x (sdpa attends over "
        f"all {args.batch * MAX_LENGTH} flattened tokens)"
    )


if __name__ == "__main__":
    main()
