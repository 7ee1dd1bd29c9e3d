"""`recipe export RUN --format gguf` on tiny models: GGUF in, train, GGUF out.

A tiny random Llama with SmolLM2's real tokenizer (vocabulary, merges, ChatML template,
copied from the real model's GGUF file) is itself written as a GGUF file (8 MB), trained
with LoRA through `recipe run`, and exported: the file carries the run's template, eos,
pad and end-of-turn token, its weights are the merged run's, the Modelfile names the stop
token, and nothing is overwritten. Models and tokenizers the exporter cannot write
exactly are refused with the reason. The real model's export and its `--check` are in
tests/test_real_model.py. Skipped, saying how to get it, when SmolLM2's file is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DEMO_TRAIN, write_recipe

from runner import RECIPES_DIR
from runner.cli import main
from runner.recipe.gguf_header import read_header

pytestmark = pytest.mark.slow

DATES = RECIPES_DIR / "data" / "dates.jsonl"


def tiny_llama(vocab_size: int, **config):
    """A 2-layer Llama with random weights (grouped-query attention: 4 heads, 2 kv)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
        "rope_theta": 100000.0,
        **config,
    }
    return LlamaForCausalLM(LlamaConfig(**settings)).eval()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, smollm2_gguf) -> tuple[Path, object]:
    """(a tiny random Llama written as GGUF with SmolLM2's tokenizer, that model)."""
    from runner.after.gguf_vocab import special_ids, vocab_from_gguf
    from runner.after.gguf_writer import write_gguf
    from runner.expand.tokenizer import load_gguf_tokenizer

    tokenizer = load_gguf_tokenizer(smollm2_gguf)
    model = tiny_llama(len(tokenizer))
    path = tmp_path_factory.mktemp("tiny-gguf") / "tiny-smollm2.gguf"
    vocab = vocab_from_gguf(smollm2_gguf, tokenizer)
    ids = special_ids(tokenizer, tokenizer.convert_tokens_to_ids("<|im_end|>"))
    write_gguf(path, model, vocab, ids, tokenizer.chat_template, "f16", "tiny-smollm2")
    return path, model


def test_a_llama_written_as_gguf_reloads_with_its_weights_and_q_k_permuted_back(tiny_gguf):
    """transformers' GGUF loader undoes llama.cpp's q/k rotary permutation: every weight
    comes back as the float16 value of the original, in its original place."""
    import torch

    from runner.expand.model import load_gguf_model

    path, model = tiny_gguf
    assert path.stat().st_size < 10_000_000
    back = load_gguf_model(path).state_dict()
    for name, weight in model.state_dict().items():
        assert torch.equal(back[name], weight.half().float()), name


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_gguf) -> Path:
    """A LoRA run of the tiny GGUF model on the shipped dates data (4 steps)."""
    folder = tmp_path_factory.mktemp("tiny-gguf-run")
    recipe = {
        "schema_version": 1,
        "name": "tiny-gguf",
        "hardware": {"gpu": "cpu"},
        "model": {"id": str(tiny_gguf[0]), "dtype": "float32"},
        "method": "lora",
        "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
        "data": {
            "train": [{"source": str(DATES), "format": "prompt_completion", "rows": 80}],
            "eval": {"fraction": 0.1},
            "template": "chat",
            "system_prompt": "You rewrite dates.",
        },
        "training": {
            "max_steps": 4,
            "learning_rate": 1.0e-2,
            "per_device_train_batch_size": 8,
            "max_length": 96,
            "bf16": False,
            "save_strategy": "no",
            "activation_checkpointing": False,
            "report_to": "none",
            "seed": 3,
        },
        "output_dir": "run",
    }
    path = write_recipe(folder / "tiny-gguf.yaml", recipe)
    done = subprocess.run(
        ["recipe", "run", str(path)], cwd=folder, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder / "run"


def export(*args: str):
    result = CliRunner().invoke(main, ["export", *args])
    return result


def test_export_writes_the_runs_template_eos_pad_and_stop_token_and_a_modelfile(tiny_run):
    result = export(str(tiny_run), "--format", "gguf")
    assert result.exit_code == 0, result.output
    path = tiny_run / "export" / "tiny-gguf-f16.gguf"
    assert result.stdout.strip().splitlines()[-1] == str(path)  # the path, on the last line

    header = read_header(path).metadata
    run_template = (tiny_run / "template" / "chat_template.jinja").read_text(encoding="utf-8")
    assert header["tokenizer.chat_template"] == run_template
    tokens = json.loads((tiny_run / "final" / "tokenizer_config.json").read_text())
    assert tokens["eos_token"] == "<|im_end|>" and tokens["pad_token"] == "<|endoftext|>"
    assert header["tokenizer.ggml.eos_token_id"] == 2  # <|im_end|>
    assert header["tokenizer.ggml.eot_token_id"] == 2
    assert header["tokenizer.ggml.padding_token_id"] == 0  # <|endoftext|>, as the run padded
    assert header["tokenizer.ggml.pre"] == "smollm"  # copied from the file, never guessed
    assert header["llama.context_length"] == 2048
    assert header["general.file_type"] == 1  # mostly float16

    modelfile = (tiny_run / "export" / "tiny-gguf-f16.Modelfile").read_text()
    assert "FROM ./tiny-gguf-f16.gguf" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'SYSTEM """You rewrite dates."""' in modelfile  # every training prompt had it
    record = json.loads((tiny_run / "export" / "export.json").read_text())
    entry = record["files"]["tiny-gguf-f16.gguf"]
    assert entry["method"] == "lora" and entry["stop_tokens"] == ["<|im_end|>"]
    assert entry["sha256"].startswith("sha256:") and entry["check"] is None


def test_the_exported_weights_are_the_merged_runs(tiny_run):
    """Logits of the file, re-loaded by transformers, equal those of base + adapter
    within float16 rounding (Q8_0 within its 8-bit blocks)."""
    import torch

    from runner.after.load import load_target
    from runner.after.prompts import format_prompt
    from runner.after.target import find_target
    from runner.expand.model import load_gguf_model

    out = tiny_run.parent / "q8.gguf"
    assert (
        export(str(tiny_run), "--format", "gguf", "--type", "q8_0", "--out", str(out)).exit_code
        == 0
    )
    run = load_target(find_target(str(tiny_run)), device="cpu")
    ids = torch.tensor([format_prompt(run.fmt, run.tokenizer, "Rewrite: 4 July 1976")])
    with torch.no_grad():
        want = run.model(input_ids=ids).logits
        f16 = load_gguf_model(tiny_run / "export" / "tiny-gguf-f16.gguf")(input_ids=ids).logits
        q8 = load_gguf_model(out)(input_ids=ids).logits
    scale = want.abs().max()
    assert (f16 - want).abs().max() < 2e-3 * scale
    assert (q8 - want).abs().max() < 5e-2 * scale
    assert read_header(out).metadata["general.file_type"] == 7  # mostly Q8_0
    assert out.with_name("q8.Modelfile").is_file()


def test_export_never_overwrites_a_file_without_overwrite(tiny_run, tmp_path):
    out = tmp_path / "mine.gguf"
    out.write_bytes(b"the user's own file")
    refused = export(str(tiny_run), "--format", "gguf", "--out", str(out))
    assert refused.exit_code == 1
    assert f"{out} exists; recipe export never overwrites a file" in refused.stderr
    assert out.read_bytes() == b"the user's own file"
    assert "Traceback" not in refused.output
    replaced = export(str(tiny_run), "--format", "gguf", "--out", str(out), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert out.read_bytes()[:4] == b"GGUF"


def test_a_missing_package_is_named_with_the_extra_that_brings_it(tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "x.gguf"
    with monkeypatch.context() as hidden:
        hidden.setitem(sys.modules, "gguf", None)  # as if the gguf extra were not installed
        result = export(str(tiny_run), "--format", "gguf", "--out", str(out))
    assert result.exit_code == 1
    assert "pip install 'recipe-runner[gguf]'" in result.stderr
    with monkeypatch.context() as hidden:
        hidden.setitem(sys.modules, "llama_cpp", None)
        result = export(
            str(tiny_run), "--format", "gguf", "--out", str(out), "--check", "--engine", "llama.cpp"
        )
    assert result.exit_code == 1
    assert "pip install 'recipe-runner[llama-cpp]'" in result.stderr
    assert "--engine transformers" in result.stderr
    assert "Traceback" not in result.output and not out.exists()


def full_run_of(folder: Path, model, tokenizer) -> Path:
    """A one-step full fine-tune of a model saved to `folder`/model; its run directory."""
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    recipe = {
        "schema_version": 1,
        "name": "tiny-full",
        "hardware": {"gpu": "cpu"},
        "model": {"id": str(folder / "model"), "dtype": "float32"},
        "method": "full",
        "data": {
            "train": [{"source": str(DEMO_TRAIN), "format": "prompt_completion", "rows": 16}],
            "template": "plain",
        },
        "training": {
            "max_steps": 1,
            "per_device_train_batch_size": 8,
            "max_length": 32,
            "bf16": False,
            "save_strategy": "no",
            "report_to": "none",
            "activation_checkpointing": False,
        },
        "output_dir": "run",
    }
    path = write_recipe(folder / "tiny-full.yaml", recipe)
    done = subprocess.run(
        ["recipe", "run", str(path)], cwd=folder, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return folder / "run"


def test_a_tokenizer_the_exporter_cannot_write_exactly_is_refused(tmp_path):
    """A Llama whose byte-level tokenizer adds a space before the text: in no GGUF file
    and not in the table, so llama.cpp would have to guess how to split text."""
    from tokenizers import pre_tokenizers

    from runner.expand.tokenizer import build_byte_level_tokenizer

    tokenizer = build_byte_level_tokenizer()
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=True, use_regex=False
    )
    run = full_run_of(tmp_path, tiny_llama(len(tokenizer)), tokenizer)
    result = export(str(run), "--format", "gguf")
    assert result.exit_code == 1
    assert "cannot write this tokenizer exactly" in result.stderr
    assert "a guessed name silently changes tokenization" in result.stderr
    assert "Traceback" not in result.output
    assert not (run / "export").exists()


def test_a_model_of_another_architecture_is_refused_before_anything_loads(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from runner.expand.tokenizer import build_byte_level_tokenizer

    tokenizer = build_byte_level_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    run = full_run_of(tmp_path, Qwen2ForCausalLM(config), tokenizer)
    result = export(str(run), "--format", "gguf")
    assert result.exit_code == 1
    assert "its architecture is 'qwen2'; recipe export writes Llama models" in result.stderr
    assert "convert_hf_to_gguf.py" in result.stderr  # what to do instead
    assert "Traceback" not in result.output
    assert not (run / "export").exists()


def test_the_quickstart_demo_exports_and_its_check_finds_every_answer_identical(demo_run, tmp_path):
    """The README's quickstart goes on to `recipe export RUN --format gguf --check`: the
    demo's tiny Llama with the runner's byte-level tokenizer and its plain text template
    is written as F16, and its greedy answers in the file are the run's, token for token."""
    import shutil

    run = tmp_path / "demo-uppercase"
    shutil.copytree(demo_run[0], run)  # the shared demo run stays as it was trained
    result = export(str(run), "--format", "gguf", "--check")
    assert result.exit_code == 0, result.output
    path = run / "export" / "demo-uppercase-f16.gguf"
    assert result.stdout.strip().splitlines()[-1] == str(path)
    assert "10/10 token-identical (100%), 10/10 stops match" in result.stdout
    assert "check passed (f16: 100% identical)" in result.stdout
    header = read_header(path).metadata
    assert header["tokenizer.ggml.model"] == "gpt2" and header["tokenizer.ggml.pre"] == "default"
    assert header["tokenizer.ggml.eos_token_id"] == header["tokenizer.ggml.eot_token_id"] == 2
    assert "messages[-1]['content']" in header["tokenizer.chat_template"]  # the plain prompt
    modelfile = path.with_name("demo-uppercase-f16.Modelfile").read_text()
    assert 'PARAMETER stop "</s>"' in modelfile
    check = json.loads((run / "export" / "export.json").read_text())
    assert check["files"][path.name]["check"]["identical"] == 10


def test_export_needs_a_run_directory_and_asks_for_the_format(tiny_run, tmp_path):
    no_format = export(str(tiny_run))
    assert no_format.exit_code == 2 and "--format" in no_format.output
    plain = export(str(tiny_run / "final"), "--format", "gguf")
    assert plain.exit_code == 1 and "takes the output_dir of a `recipe run`" in plain.stderr
