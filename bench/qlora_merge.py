"""Which base should a QLoRA adapter be merged into? Prints the figures for one run.

A QLoRA adapter learnt to correct the 4-bit (NF4) weights, not the original ones. The
two ways of merging it are compared with the run as it trained (4-bit base + adapter,
with the numerics of training: bitsandbytes' plain 4-bit path, not its bfloat16 CPU
inference kernel), on the run's held-out prompts and fixed chat prompts:

- 4bit: into the 4-bit weights, dequantized (the weights the adapter trained on);
- original: into the original 16/32-bit base.

For each: greedy token agreement (n/N prompts token-identical, up to --max-new-tokens),
and the largest and mean absolute logit difference over every answer position, with
the reference's answers fed to both (teacher forcing). The merged model is float32, so
no export rounding is in these figures. The run docs/export.md reports was made so:

    recipe run smollm2-135m-lora-cpu --set method=qlora \\
        --set 'quantization={load_in_4bit: true, bnb_4bit_quant_type: nf4, bnb_4bit_compute_dtype: float32}' \\
        --set training.max_steps=16 --set training.per_device_train_batch_size=8 \\
        --set training.bf16=false --set data.eval.fraction=0.02 \\
        --set output_dir=outputs/smollm2-qlora
    python bench/qlora_merge.py outputs/smollm2-qlora
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} logical cores of {cpu}, load average {load:.2f}"


def logit_differences(reference, merged, prompts, answers) -> tuple[float, float]:
    """(largest, mean) |logit difference| at every answer position, teacher-forced."""
    import torch

    largest, total, count = 0.0, 0.0, 0
    for prompt, answer in zip(prompts, answers, strict=True):
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            want = reference(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
            got = merged(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        diff = (got - want).abs()
        largest = max(largest, float(diff.max()))
        total, count = total + float(diff.sum()), count + diff.numel()
    return largest, total / max(count, 1)


def main() -> None:
    from runner.after.export_check import check_prompts, greedy, transformers_step
    from runner.after.load import as_trained, load_target
    from runner.after.merge import QLORA_BASES, merged_model
    from runner.after.prompts import format_prompt
    from runner.after.target import find_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished QLoRA run directory")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    target = find_target(args.run)
    assert target.method == "qlora", f"{args.run} is a {target.method} run, not QLoRA"
    started = time.perf_counter()
    run = as_trained(load_target(target, device="cpu"))  # 4-bit base + adapter
    rows = check_prompts(target, args.prompts)
    prompts = [format_prompt(run.fmt, run.tokenizer, p, i) for p, i in rows]
    wanted = [
        greedy(transformers_step(run.model), p, run.stop_ids, args.max_new_tokens)[0]
        for p in prompts
    ]
    print(f"reference: 4-bit base + adapter, {len(prompts)} prompts ({rows[0][0]!r} ...)")
    for way in QLORA_BASES:
        merged = merged_model(target, "float32", way).model.eval()
        got = [
            greedy(transformers_step(merged), p, run.stop_ids, args.max_new_tokens)[0]
            for p in prompts
        ]
        same = sum(a == b for a, b in zip(wanted, got, strict=True))
        largest, mean = logit_differences(run.model, merged, prompts, wanted)
        print(
            f"merged into {way:8s}: {same}/{len(prompts)} greedy answers token-identical; "
            f"logit difference largest {largest:.4f}, mean {mean:.5f}"
        )
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
