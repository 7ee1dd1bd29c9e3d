"""The runner's overhead: the same tiny model, data and steps, through `recipe run` and
through a minimal hand-written TRL script (started with the same `accelerate launch` flags).
Prints training tokens/s of both and the ratio,
and the end-to-end wall time of each (process start to exit).

    python bench/overhead.py [--steps 60] [--repeats 1]

CPU only is fine (the numbers are then CPU numbers); nothing is downloaded. Each pair also
checks that both sides did the same work: the same number of tokens and bit-identical
logged losses (same batches, model, optimizer, schedule).

On a shared CPU both tokens/s and tokens per CPU-second swing with the other load, by
10-20% from one pair to the next: the OpenMP workers of a training step wait (spinning,
which counts as CPU time) for whichever of them the other load has descheduled. Compare
medians of several pairs (`--repeats`), taken on an otherwise idle machine where possible.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from machine import load

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "runner" / "shipped" / "recipes" / "data" / "uppercase-train.jsonl"

HAND_WRITTEN = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    model_dir, data, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    dataset = load_dataset("json", data_files=data, split="train")
    config = SFTConfig(
        output_dir=out, max_steps=steps, learning_rate=2e-3, per_device_train_batch_size=32,
        max_length=64, logging_steps=10, save_strategy="no", report_to=[], seed=42,
        activation_checkpointing=False, bf16=False, use_cpu=not torch.cuda.is_available(),
        include_num_input_tokens_seen="non_padding", eos_token=tokenizer.eos_token,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    tokens = trainer.state.num_input_tokens_seen
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    print(json.dumps({"tokens": tokens, "tokens_per_second": tokens / seconds,
                      "tokens_per_cpu_second": tokens / cpu, "losses": losses}))
    """
)


def make_model(path: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from runner.expand.tokenizer import build_byte_level_tokenizer

    torch.manual_seed(0)
    tokenizer = build_byte_level_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def recipe_text(model_dir: Path, steps: int) -> str:
    return textwrap.dedent(
        f"""\
        schema_version: 1
        name: bench-overhead
        model: {{id: {model_dir}, dtype: float32}}
        method: full
        data:
          train: [{{source: {DATA}, format: prompt_completion}}]
          template: plain
          shuffle: false
        training:
          max_steps: {steps}
          learning_rate: 2.0e-3
          per_device_train_batch_size: 32
          max_length: 64
          logging_steps: 10
          save_strategy: "no"
          report_to: none
          seed: 42
          activation_checkpointing: false
          bf16: false
        output_dir: run
        """
    )


def through_runner(work: Path, model_dir: Path, steps: int) -> dict:
    (work / "bench.yaml").write_text(recipe_text(model_dir, steps), encoding="utf-8")
    start = time.perf_counter()
    subprocess.run(
        ["recipe", "run", "bench.yaml", "--overwrite"],
        cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wall = time.perf_counter() - start
    metrics = json.loads((work / "run" / "run.json").read_text())["metrics"]
    logged = (work / "run" / "metrics.jsonl").read_text().splitlines()
    losses = [r["loss"] for r in map(json.loads, logged) if "loss" in r]
    return {
        "losses": losses,
        "tokens": metrics["tokens"],
        "tokens_per_second": metrics["tokens_per_second"],
        "tokens_per_cpu_second": metrics["tokens"] / metrics["train_cpu_seconds"],
        "wall": wall,
    }


def by_hand(work: Path, model_dir: Path, steps: int) -> dict:
    script = work / "sft_by_hand.py"
    script.write_text(HAND_WRITTEN, encoding="utf-8")
    # Launched the way `recipe run` launches (same accelerate flags, so the same thread
    # settings): the comparison then measures the runner's own code, not the launcher's.
    import torch

    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--quiet"]
    if not torch.cuda.is_available():
        launcher.append("--cpu")
    launcher += ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                 "--dynamo_backend", "no"]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(
        [*launcher, str(script), str(model_dir), str(DATA), str(work / "hand"), str(steps)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="recipe-bench-") as tmp:
        work = Path(tmp)
        make_model(work / "model")
        ratios: list[float] = []
        extra: list[float] = []
        for repeat in range(args.repeats):
            # alternate the order, so a change in the machine's other load hits both alike
            if repeat % 2:
                runner = through_runner(work, work / "model", args.steps)
                hand = by_hand(work, work / "model", args.steps)
            else:
                hand = by_hand(work, work / "model", args.steps)
                runner = through_runner(work, work / "model", args.steps)
            ratio = runner["tokens_per_second"] / hand["tokens_per_second"]
            ratios.append(ratio)
            extra.append(runner["wall"] - hand["wall"])
            # Same work, checked: the same tokens and bit-identical logged losses mean the
            # same batches, model, optimizer and schedule; any gap left is time, not work.
            same = runner["tokens"] == hand["tokens"] and runner["losses"] == hand["losses"]
            cpu_ratio = runner["tokens_per_cpu_second"] / hand["tokens_per_cpu_second"]
            print(
                f"[{repeat + 1}] {args.steps} steps; tokens: runner {runner['tokens']:,} / by hand "
                f"{hand['tokens']:,}; identical logged losses: {'yes' if same else 'NO'}\n"
                f"    tokens/s      recipe run {runner['tokens_per_second']:,.0f}   "
                f"hand-written TRL {hand['tokens_per_second']:,.0f}   ratio {ratio:.3f}\n"
                f"    tokens/CPU-s  recipe run {runner['tokens_per_cpu_second']:,.0f}   "
                f"hand-written TRL {hand['tokens_per_cpu_second']:,.0f}   ratio {cpu_ratio:.3f}\n"
                f"    wall s        recipe run {runner['wall']:.1f}   hand-written TRL {hand['wall']:.1f}",
                flush=True,
            )
        print(
            f"median over {len(ratios)} pair(s): tokens/s ratio {statistics.median(ratios):.3f} "
            f"(target >= 0.98); extra wall time {statistics.median(extra):+.1f} s (target <= 2 s)"
        )
        print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
