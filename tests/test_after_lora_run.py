"""`recipe infer/chat/merge/eval` on a tiny LoRA run trained on CPU through the real
`recipe run`: prompts go through the run's chat template, merge reproduces base+adapter
logits and saves a model plain transformers can load, eval reproduces the run's own eval
loss, chat keeps and clears its history, and a missing base model is one clear message."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_recipe, write_recipe

from runner.after.prompts import format_prompt
from runner.cli import main

pytestmark = pytest.mark.slow

CHAT_TEMPLATE = (
    "{%- for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
PROMPTS = ["Uppercase: abc\n", "Uppercase: hello\n", "Uppercase: q\n"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished LoRA run (12 steps) whose data template is a small chat template."""
    folder = tmp_path_factory.mktemp("lora-run")
    (folder / "tiny-chat.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    recipe = tiny_recipe(tiny_model_dir, "lora")
    recipe["data"]["template"] = "tiny-chat.jinja"
    path = write_recipe(folder / "tiny-lora.yaml", recipe)
    done = subprocess.run(
        ["recipe", "run", str(path)], cwd=folder, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder / "run"


def cli(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def padded_batch(loaded, prompts: list[str]):
    import torch

    ids = [format_prompt(loaded.fmt, loaded.tokenizer, p) for p in prompts]
    width = max(map(len, ids))
    pad = loaded.tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    return input_ids, mask


def test_infer_answers_a_prompt_rendered_with_the_runs_template(lora_run):
    from runner.after.load import load_target
    from runner.after.target import find_target

    loaded = load_target(find_target(str(lora_run)), device="cpu")
    ids = format_prompt(loaded.fmt, loaded.tokenizer, "Uppercase: abc\n")
    rendered = loaded.tokenizer.decode(ids)
    assert rendered == "<|user|>Uppercase: abc\n</s><|assistant|>"
    assert type(loaded.model).__name__ == "PeftModelForCausalLM"
    assert loaded.stop_ids == [loaded.tokenizer.convert_tokens_to_ids("</s>")]

    result = cli("infer", str(lora_run), "--prompt", "Uppercase: abc\n", "--max-new-tokens", "8")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def test_infer_file_writes_one_jsonl_result_per_prompt_keeping_the_input_fields(lora_run, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"prompt": p, "id": n}) for n, p in enumerate(PROMPTS)) + "\n"
    )
    out = tmp_path / "results.jsonl"
    result = cli(
        "infer", str(lora_run), "--file", str(prompts), "--out", str(out), "--max-new-tokens", "6"
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert all(isinstance(r["generation"], str) and "stopped" in r for r in rows)


def test_infer_compare_prints_fine_tuned_and_base_side_by_side(lora_run):
    result = cli(
        "infer", str(lora_run), "--prompt", "Uppercase: abc\n", "--compare", "--max-new-tokens", "6"
    )
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    assert header.startswith("fine-tuned") and header.rstrip().endswith("base")


def test_bad_prompt_file_row_names_the_file_and_line(lora_run, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    result = cli("infer", str(lora_run), "--file", str(prompts))
    assert result.exit_code == 1
    assert f"{prompts}:2: expected an object with a 'prompt'" in result.stderr
    assert "Traceback" not in result.output


def test_merged_model_logits_equal_base_plus_adapter_and_it_loads_with_plain_transformers(
    lora_run, tmp_path
):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runner.after.load import load_target
    from runner.after.target import find_target

    out = tmp_path / "merged"
    result = cli("merge", str(lora_run), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"merged model saved to {out}" in result.stdout

    loaded = load_target(find_target(str(lora_run)), device="cpu")
    input_ids, mask = padded_batch(loaded, PROMPTS)
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not (out / "adapter_config.json").exists()
    with torch.no_grad():
        expected = loaded.model(input_ids=input_ids, attention_mask=mask).logits
        got = merged(input_ids=input_ids, attention_mask=mask).logits
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    # and the adapter does change the model, so the comparison means something
    with loaded.model.disable_adapter(), torch.no_grad():
        base = loaded.model(input_ids=input_ids, attention_mask=mask).logits
    assert not torch.allclose(base, expected, atol=1e-4)

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert merged.generation_config.eos_token_id == [tokenizer.convert_tokens_to_ids("</s>")]
    generated = merged.generate(input_ids[:1], attention_mask=mask[:1], max_new_tokens=4)
    assert generated.shape[1] > input_ids.shape[1]
    assert json.loads((out / "merge.json").read_text())["method"] == "lora"

    # As a plain model directory (its own chat template), it answers like the run.
    asked = ["--prompt", "Uppercase: abc\n", "--max-new-tokens", "8"]
    from_run = cli("infer", str(lora_run), *asked)
    from_merged = cli("infer", str(out), *asked)
    assert from_merged.exit_code == 0, from_merged.output
    assert from_merged.stdout == from_run.stdout


def test_merge_refuses_to_overwrite_a_non_empty_directory(lora_run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = cli("merge", str(lora_run), "--out", str(out))
    assert result.exit_code == 1
    assert f"{out} exists and is not empty; refusing to overwrite it" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_eval_reproduces_the_runs_eval_loss_and_saves_results_in_the_run(lora_run):
    result = cli("eval", str(lora_run), "-n", "3", "--max-new-tokens", "6")
    assert result.exit_code == 0, result.output
    record = json.loads((lora_run / "eval.json").read_text())
    trained = json.loads((lora_run / "run.json").read_text())["metrics"]["eval_loss"]
    assert record["loss"] == pytest.approx(trained, rel=1e-5)
    assert record["perplexity"] == pytest.approx(2.718281828 ** record["loss"], rel=1e-6)
    assert record["generations"] == 3 and record["exact_match"] is not None
    rows = [json.loads(x) for x in (lora_run / "eval-generations.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[0]["reference"].isupper()
    assert f"loss        {record['loss']:.4f}" in result.stdout


def test_eval_on_given_data_in_another_format(lora_run, tmp_path):
    data = tmp_path / "more.json"
    data.write_text(
        json.dumps(
            [
                {"instruction": "Uppercase: dog\n", "input": "", "output": "DOG"},
                {"instruction": "Uppercase: cat\n", "input": "", "output": "CAT"},
            ]
        )
    )
    result = cli("eval", str(lora_run), "--data", str(data), "--format", "alpaca", "-n", "2")
    assert result.exit_code == 0, result.output
    record = json.loads((lora_run / "eval.json").read_text())
    assert record["rows"] == 2 and record["data"] == f"{data} (alpaca)"


def test_chat_keeps_history_until_reset_and_stops_at_exit(lora_run):
    result = cli(
        "chat",
        str(lora_run),
        "--max-new-tokens",
        "4",
        input="Uppercase: abc\nUppercase: de\n/reset\nUppercase: fg\n/exit\nnever read\n",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert sum(line.startswith("assistant> ") for line in lines) == 3
    assert lines.index("(conversation cleared)") == 2


def test_missing_base_model_is_one_clear_message_naming_it(lora_run, tmp_path):
    moved = tmp_path / "copied-run"
    shutil.copytree(lora_run, moved)
    resolved = moved / "recipe.resolved.yaml"
    text = resolved.read_text()
    model_id = json.loads((lora_run / "run.json").read_text())["model"]
    resolved.write_text(text.replace(model_id, "nobody/not-downloaded-1b"))
    for command in ("infer", "merge", "eval"):
        args = [command, str(moved)] + (["--prompt", "hi"] if command == "infer" else [])
        result = cli(*args, "--out", str(tmp_path / "m")) if command == "merge" else cli(*args)
        assert result.exit_code == 1, (command, result.output)
        assert "Traceback" not in result.output
        assert "the model 'nobody/not-downloaded-1b'" in result.stderr
        assert "huggingface-cli download nobody/not-downloaded-1b" in result.stderr
        assert "--set model.id=PATH" in result.stderr

    # ... and --set model.id=PATH points it at the local copy
    result = cli("infer", str(moved), "--prompt", "hi", "--set", f"model.id={model_id}")
    assert result.exit_code == 0, result.output


def test_chat_with_a_model_without_chat_template_suggests_infer(tiny_model_dir):
    result = cli("chat", str(tiny_model_dir), input="hello\n")
    assert result.exit_code == 1
    assert "has no chat template" in result.stderr
    assert f"recipe infer {tiny_model_dir}" in result.stderr


def test_plain_model_directory_works_with_infer(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "answers.jsonl"
    asked = ["--prompt", "Uppercase: abc\n", "--max-new-tokens", "3", "--out", str(out)]
    result = cli("infer", str(tiny_model_dir), *asked)
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["prompt"] == "Uppercase: abc\n"
    # the model as saved, greedy: the prompt's tokens, then at most 3 more
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = tokenizer("Uppercase: abc\n", return_tensors="pt")["input_ids"]
    greedy = model.generate(ids, max_new_tokens=3, do_sample=False)[0, ids.shape[1] :]
    assert row["generation"] == tokenizer.decode(greedy, skip_special_tokens=True)
    assert row["generation"], "empty"


def test_sampling_with_a_seed_is_repeatable(lora_run):
    asked = ["infer", str(lora_run), "--prompt", "Uppercase: abc\n", "--max-new-tokens", "12"]
    sampled = ["--temperature", "1.5", "--top-p", "0.95"]
    first = cli(*asked, *sampled, "--seed", "3")
    again = cli(*asked, *sampled, "--seed", "3")
    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout


def test_streaming_prints_exactly_the_completion_it_returns(lora_run, capsys):
    from runner.after.load import load_target
    from runner.after.target import find_target
    from runner.generation import Sampling, generate

    loaded = load_target(find_target(str(lora_run)), device="cpu")
    ids = format_prompt(loaded.fmt, loaded.tokenizer, "Uppercase: abc\n")
    capsys.readouterr()
    done = generate(
        loaded.model,
        loaded.tokenizer,
        [ids],
        Sampling(max_new_tokens=8),
        loaded.stop_ids,
        stream=True,
    )[0]
    assert capsys.readouterr().out == done.text + "\n"


def test_top_p_without_temperature_is_a_usage_error(lora_run):
    result = cli("infer", str(lora_run), "--prompt", "x", "--top-p", "0.9")
    assert result.exit_code == 2 and "give --temperature too" in result.output


def test_eval_and_compare_need_a_run_not_a_plain_model(tiny_model_dir):
    result = cli("eval", str(tiny_model_dir))
    assert result.exit_code == 1 and "is not a run directory" in result.stderr
    result = cli("infer", str(tiny_model_dir), "--prompt", "x", "--compare")
    assert result.exit_code == 1 and "--compare needs a run or an adapter" in result.stderr
