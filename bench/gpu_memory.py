"""GPU truth for `recipe plan`: train each shipped recipe's real architecture for a few
optimizer steps under its card's memory cap and compare peak memory with the estimate.

    python bench/gpu_memory.py                 # every point, on the GPU
    python bench/gpu_memory.py --only llama7b-qlora-3090
    python bench/gpu_memory.py --cpu-smoke     # tiny model on CPU (automatic without CUDA)

Writes bench/results/gpu_memory.json and bench/results/gpu_memory.log (GPU), or
bench/out/gpu_memory.cpu-smoke.{json,log} (CPU smoke). Each point runs in its own
process so one point's allocations, paged buffers or OOM never leak into the next.

What runs (and why not SFTTrainer): a plain loop that does what SFTTrainer 1.16 does to
memory, step by step - the model built from bench/configs/*.json with random weights in
the recipe's dtype (weight values change neither memory nor speed), 4-bit NF4/FP4 linear
layers for QLoRA (bitsandbytes Linear4bit, as transformers' quantizer makes them), TRL's
fused LM head and per-token loss (trl.trainer.utils.add_fused_lm_head), PEFT LoRA with the
adapter dtypes SFTTrainer leaves (fp32 for LoRA, bf16 for QLoRA), non-reentrant activation
checkpointing, bf16 autocast as accelerate applies it, the optimizer class and kwargs from
transformers' own Trainer.get_optimizer_cls_and_kwargs (bnb 8-bit keeps embeddings in 32
bit, as the Trainer sets up), gradient accumulation, gradient clipping, zero_grad(set_to_none).
It needs no dataset library or tokenizer on the GPU machine, and times steps without the
Trainer's logging and callbacks. Synthetic batches are max_length tokens with the last
row one token shorter (padded), every position trained.

The card is emulated with torch.cuda.set_per_process_memory_fraction: the cap is the
card's memory minus the CUDA context the estimate counts (runner.plan.estimate).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.plan.architecture import architecture_from_config  # noqa: E402
from runner.plan.estimate import CUDA_CONTEXT_BYTES, GIB, estimate_memory  # noqa: E402
from runner.plan.setup import setup_from_settings  # noqa: E402
from runner.plan.throughput import flops_per_token  # noqa: E402
from runner.recipe.hardware import CARDS  # noqa: E402
from runner.recipe.resolve import resolve_recipe  # noqa: E402
from runner.recipe.settings import Settings  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from gpu_training import build_model, build_optimizer, train  # noqa: E402

CONFIGS = ROOT / "bench" / "configs"
MODEL_CONFIGS = {
    "meta-llama/Llama-3.2-1B-Instruct": "llama-3.2-1b-instruct.json",
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": "tinyllama-1.1b-chat.json",
    "huggyllama/llama-7b": "llama-7b.json",
}
TINY_CONFIG = {
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "tie_word_embeddings": False,
}
# Dense bf16 tensor-core peak of the GPU the benchmark runs on (for MFU).
DEVICE_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}

# (point name, recipe, overrides): the recipes as shipped, then off-recipe points so the
# estimator is tested rather than fitted to three numbers.
POINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("llama32-1b-full-3090", "llama32-1b-full-3090", {}),
    (
        "llama32-1b-full-3090/batch8",
        "llama32-1b-full-3090",
        {"training.per_device_train_batch_size": 8, "training.gradient_accumulation_steps": 2},
    ),
    (
        "llama32-1b-full-3090/len2048",
        "llama32-1b-full-3090",
        {"training.max_length": 2048, "training.per_device_train_batch_size": 2},
    ),
    (
        "llama32-1b-full-3090/no-checkpointing",
        "llama32-1b-full-3090",
        {"training.activation_checkpointing": False, "training.per_device_train_batch_size": 2},
    ),
    (
        "llama32-1b-full-3090/adamw_torch-eager",
        "llama32-1b-full-3090",
        {
            "training.optim": "adamw_torch",
            "model.attn_implementation": "eager",
            "training.per_device_train_batch_size": 2,
        },
    ),
    ("tinyllama-qlora-3070", "tinyllama-qlora-3070", {}),
    (
        "tinyllama-qlora-3070/batch8",
        "tinyllama-qlora-3070",
        {"training.per_device_train_batch_size": 8},
    ),
    ("tinyllama-qlora-3070/len2048", "tinyllama-qlora-3070", {"training.max_length": 2048}),
    (
        "tinyllama-qlora-3070/no-checkpointing",
        "tinyllama-qlora-3070",
        {"training.activation_checkpointing": False, "training.per_device_train_batch_size": 2},
    ),
    ("llama7b-qlora-3090", "llama7b-qlora-3090", {}),
    (
        "llama7b-qlora-3090/batch8-len1024",
        "llama7b-qlora-3090",
        {"training.per_device_train_batch_size": 8, "training.max_length": 1024},
    ),
    (
        "llama7b-qlora-3090/no-checkpointing",
        "llama7b-qlora-3090",
        {"training.activation_checkpointing": False},
    ),
]


def load_recipe_data(name: str) -> dict[str, Any]:
    """The shipped recipe as plain data (ruamel when installed, else PyYAML)."""
    path = ROOT / "recipes" / f"{name}.yaml"
    try:
        from runner.recipe.load import load_recipe

        return copy.deepcopy(load_recipe(path).data)
    except ImportError:
        import yaml

        return yaml.safe_load(path.read_text())


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = out
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def smoke_data(data: dict[str, Any]) -> dict[str, Any]:
    """The same recipe, shrunk to run in seconds on a CPU."""
    data = apply_overrides(
        data,
        {
            "training.per_device_train_batch_size": 2,
            "training.max_length": 64,
            "training.gradient_accumulation_steps": 2,
        },
    )
    data["model"] = {**data["model"], "config": TINY_CONFIG}
    data["model"].pop("id", None)
    return data


def point_config(data: dict[str, Any]) -> dict[str, Any]:
    model = data["model"]
    if "config" in model:
        return dict(model["config"])
    return json.loads((CONFIGS / MODEL_CONFIGS[model["id"]]).read_text())


# -- one point, in its own process ----------------------------------------------------


def run_point(name: str, smoke: bool, steps: int, warmup: int) -> dict[str, Any]:
    import torch

    _, recipe, overrides = next(p for p in POINTS if p[0] == name)
    data = apply_overrides(load_recipe_data(recipe), overrides)
    if smoke:
        data = smoke_data(data)
    config = point_config(data)
    arch = architecture_from_config(config)
    setup = setup_from_settings(Settings(resolve_recipe(data, ROOT / "recipes")))
    estimate = estimate_memory(arch, setup)
    card = CARDS[data["hardware"]["gpu"]]
    cuda = torch.cuda.is_available() and not smoke
    device = torch.device("cuda" if cuda else "cpu")
    result: dict[str, Any] = {
        "point": name,
        "recipe": recipe,
        "overrides": overrides,
        "smoke": smoke,
        "card": card.name,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "method": setup.method,
        "batch": setup.batch,
        "max_length": setup.seq,
        "grad_accum": setup.grad_accum,
        "optim": setup.optim,
        "checkpointing": setup.checkpointing,
        "attn": setup.attn,
        "estimate": {
            "total_bytes": estimate.total,
            "reserved_bytes": estimate.reserved,
            "allocated_bytes": estimate.allocated,
            "paged_bytes": estimate.paged,
            "phase": estimate.phase,
            "terms": {t.key: t.bytes for t in estimate.terms},
        },
        "versions": {"torch": torch.__version__},
    }
    if cuda:
        cap = card.memory_gib * GIB - CUDA_CONTEXT_BYTES
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(cap / total, 1.0))
        result["cap_bytes"] = int(cap)
    try:
        model = build_model(config, data, setup, device)
        optimizer = build_optimizer(model, setup, cuda)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        seconds, tokens = train(model, optimizer, setup, arch.vocab, device, steps, warmup)
        result["oom"] = False
    except torch.cuda.OutOfMemoryError as exc:
        result["oom"] = True
        result["error"] = str(exc).splitlines()[0]
        seconds = tokens = 0
    if cuda:
        result["measured"] = {
            "max_allocated_bytes": torch.cuda.max_memory_allocated(),
            "max_reserved_bytes": torch.cuda.max_memory_reserved(),
            "nvidia_smi_used_bytes": nvidia_smi_used(),
        }
        reserved = result["measured"]["max_reserved_bytes"]
        result["estimate_vs_reserved"] = estimate.reserved / reserved - 1 if reserved else None
    if seconds:
        result["tokens_per_s"] = tokens / seconds
        flops = flops_per_token(arch, setup)
        peak = next((v for k, v in DEVICE_TFLOPS.items() if k in result["device"]), None)
        result["mfu"] = tokens / seconds * flops / (peak * 1e12) if peak else None
    return result


def nvidia_smi_used() -> int | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return int(out.split()[0]) * 1024**2
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


# -- the driver -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="point names (default: all)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=None, help="untimed optimizer steps")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--point", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    smoke = args.cpu_smoke or not torch.cuda.is_available()
    steps = args.steps if args.steps is not None else (1 if smoke else 4)
    warmup = args.warmup if args.warmup is not None else 1
    if args.point:  # child process: one point
        result = run_point(args.point, smoke, steps, warmup)
        args.result.write_text(json.dumps(result))
        return 0

    out = args.out or (ROOT / ("bench/out" if smoke else "bench/results"))
    out.mkdir(parents=True, exist_ok=True)
    stem = "gpu_memory.cpu-smoke" if smoke else "gpu_memory"
    names = args.only or [p[0] for p in POINTS]
    unknown = sorted(set(names) - {p[0] for p in POINTS})
    if unknown:
        parser.error(
            f"unknown point(s) {', '.join(unknown)}; known: " + ", ".join(p[0] for p in POINTS)
        )
    results, log = [], []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            result_file = Path(tmp) / "result.json"
            cmd = [
                sys.executable,
                __file__,
                "--point",
                name,
                "--result",
                str(result_file),
                "--steps",
                str(steps),
                "--warmup",
                str(warmup),
            ]
            if smoke:
                cmd.append("--cpu-smoke")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0 and result_file.is_file():
                result = json.loads(result_file.read_text())
            else:
                result = {
                    "point": name,
                    "failed": True,
                    "returncode": proc.returncode,
                    "stderr_tail": proc.stderr[-4000:],
                }
        results.append(result)
        log.append(describe(result))
        print(log[-1], flush=True)
    meta = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "smoke": smoke,
        "steps": steps,
        "warmup": warmup,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "points": results}, indent=2))
    (out / f"{stem}.log").write_text("\n".join([json.dumps(meta), *log]) + "\n")
    return 0 if not any(r.get("failed") for r in results) else 1


def describe(r: dict[str, Any]) -> str:
    if r.get("failed"):
        return f"{r['point']}: FAILED (rc {r['returncode']})\n{r['stderr_tail']}"
    est = r["estimate"]["reserved_bytes"] / GIB
    line = f"{r['point']:<42} estimate {est:6.2f} GiB"
    if "measured" in r:
        m = r["measured"]
        line += (
            f"  reserved {m['max_reserved_bytes'] / GIB:6.2f}  allocated "
            f"{m['max_allocated_bytes'] / GIB:6.2f} GiB"
        )
        if r.get("estimate_vs_reserved") is not None:
            line += f"  ({r['estimate_vs_reserved']:+.1%})"
    if r.get("oom"):
        line += "  OOM"
    if r.get("tokens_per_s"):
        line += f"  {r['tokens_per_s']:,.0f} tok/s"
        if r.get("mfu"):
            line += f"  MFU {r['mfu']:.1%}"
    return line


if __name__ == "__main__":
    sys.exit(main())
