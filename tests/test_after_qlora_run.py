"""A tiny QLoRA run (bitsandbytes' CPU 4-bit path): infer loads the base in 4-bit as it was
trained unless told otherwise, and merge folds the adapter into the unquantized base and
says plainly that the result differs slightly from the 4-bit-trained behaviour."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_recipe, write_recipe

from runner.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("qlora-run")
    path = write_recipe(folder / "tiny-qlora.yaml", tiny_recipe(tiny_model_dir, "qlora"))
    done = subprocess.run(
        ["recipe", "run", str(path)], cwd=folder, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder / "run"


def linear_kinds(model) -> set[str]:
    return {type(m).__name__ for name, m in model.named_modules() if name.endswith("k_proj")}


def test_the_base_loads_in_4bit_as_trained_unless_told_otherwise(qlora_run):
    from runner.after.load import load_target
    from runner.after.target import find_target

    target = find_target(str(qlora_run))
    as_trained = load_target(target, device="cpu")
    assert as_trained.quantized and linear_kinds(as_trained.model) == {"Linear4bit"}
    plain = load_target(target, base_4bit=False, device="cpu")
    assert not plain.quantized and linear_kinds(plain.model) == {"Linear"}


def test_infer_runs_on_the_4bit_base(qlora_run):
    result = CliRunner().invoke(
        main, ["infer", str(qlora_run), "--prompt", "Uppercase: abc\n", "--max-new-tokens", "4"]
    )
    assert result.exit_code == 0, result.output


def test_merge_uses_the_unquantized_base_and_says_it_differs_from_4bit(qlora_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from runner.after.load import load_target
    from runner.after.prompts import format_prompt
    from runner.after.target import find_target

    out = tmp_path / "merged"
    result = CliRunner().invoke(
        main, ["merge", str(qlora_run), "--out", str(out), "--dtype", "float32"]
    )
    assert result.exit_code == 0, result.output
    assert "trained on a 4-bit base" in result.stderr and "differ slightly" in result.stderr
    assert json.loads((out / "merge.json").read_text())["note"].startswith("note: this adapter")

    unquantized = load_target(find_target(str(qlora_run)), base_4bit=False, device="cpu")
    ids = torch.tensor([format_prompt(unquantized.fmt, unquantized.tokenizer, "Uppercase: abc\n")])
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert linear_kinds(merged) == {"Linear"}
    with torch.no_grad():
        expected = unquantized.model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
