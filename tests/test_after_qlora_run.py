"""A tiny QLoRA run (bitsandbytes' CPU 4-bit path): infer loads the base in 4-bit as it was
trained unless told otherwise; merge folds the adapter into the 4-bit weights it trained
on, dequantized, so the merged model answers as base + adapter did in training, and
`--qlora-base original` folds it into the unquantized base instead, saying that the result
differs from the 4-bit-trained behaviour."""

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


def test_infer_runs_on_the_4bit_base(qlora_run, tmp_path):
    from runner.after.load import as_trained, load_target
    from runner.after.prompts import format_prompt
    from runner.after.target import find_target
    from runner.generation import Sampling, generate

    out = tmp_path / "answers.jsonl"
    asked = ["--prompt", "Uppercase: abc\n", "--max-new-tokens", "4", "--out", str(out)]
    result = CliRunner().invoke(main, ["infer", str(qlora_run), *asked])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    # the answer is the 4-bit base's with the adapter, greedy, as training computed it
    loaded = as_trained(load_target(find_target(str(qlora_run)), device="cpu"))
    assert loaded.quantized
    prompt = format_prompt(loaded.fmt, loaded.tokenizer, "Uppercase: abc\n", "")
    (expected,) = generate(
        loaded.model, loaded.tokenizer, [prompt], Sampling(max_new_tokens=4), loaded.stop_ids
    )
    assert row["generation"] == expected.text


def merge_logits(qlora_run, out, *args):
    import torch
    from transformers import AutoModelForCausalLM

    from runner.after.load import as_trained, load_target
    from runner.after.prompts import format_prompt
    from runner.after.target import find_target

    result = CliRunner().invoke(
        main, ["merge", str(qlora_run), "--out", str(out), "--dtype", "float32", *args]
    )
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert linear_kinds(merged) == {"Linear"}
    target = find_target(str(qlora_run))
    # the numerics training used: bitsandbytes' plain 4-bit path, not its bfloat16 CPU
    # inference kernel (a CPU with AVX512-BF16 would switch to it: logits ~5e-4 apart)
    trained = as_trained(load_target(target, device="cpu"))
    unquantized = load_target(target, base_4bit=False, device="cpu")
    ids = torch.tensor([format_prompt(trained.fmt, trained.tokenizer, "Uppercase: abc\n")])
    with torch.no_grad():
        logits = {
            "merged": merged(input_ids=ids).logits,
            "4bit": trained.model(input_ids=ids).logits,
            "original": unquantized.model(input_ids=ids).logits,
        }
    return result, logits


def test_merge_folds_the_adapter_into_the_4bit_weights_it_trained_on(qlora_run, tmp_path):
    import torch

    out = tmp_path / "merged"
    result, logits = merge_logits(qlora_run, out)
    assert "merged into those 4-bit weights, dequantized" in result.stderr
    record = json.loads((out / "merge.json").read_text())
    assert record["qlora_base"] == "4bit"
    assert torch.allclose(logits["merged"], logits["4bit"], atol=1e-4)
    assert not torch.allclose(logits["merged"], logits["original"], atol=1e-4)


def test_merge_into_the_original_base_says_it_differs_from_4bit(qlora_run, tmp_path):
    import torch

    out = tmp_path / "merged"
    result, logits = merge_logits(qlora_run, out, "--qlora-base", "original")
    assert "original unquantized base" in result.stderr and "differ" in result.stderr
    record = json.loads((out / "merge.json").read_text())
    assert record["qlora_base"] == "original" and record["note"].startswith("note: this adapter")
    assert torch.allclose(logits["merged"], logits["original"], atol=1e-4)
