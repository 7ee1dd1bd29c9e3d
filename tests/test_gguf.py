"""A GGUF file as the model source, checked without loading it: the header reader, the
architectures transformers converts, `package:` references, the plan's parameter count,
and the tokenizer and weights a run reads from the file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SMOLLM2_FILE, SMOLLM2_PACKAGE

from runner.cli import main
from runner.recipe.gguf_header import SUPPORTED_ARCHITECTURES, GgufError, is_gguf, read_header

SMOLLM2_PARAMETERS = 134_515_008  # counted by transformers after loading the file


def test_the_header_gives_the_real_models_architecture_and_parameter_count(smollm2_gguf):
    header = read_header(smollm2_gguf)
    assert header.architecture == "llama" and header.supported
    assert header.parameters == SMOLLM2_PARAMETERS
    config = header.config()
    assert config == {
        **config,
        "model_type": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
    }
    assert "<|im_start|>" in header.chat_template


def test_the_architecture_table_is_the_installed_transformers_own():
    """Every llama.cpp architecture name the table accepts is one transformers converts
    (itself, or under the name transformers renames it to), and every architecture
    transformers converts is in the table."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    converted = set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer", "umt5"}
    renamed = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
               "minimax-m2": "minimax_m2", "t5encoder": "t5"}  # fmt: skip
    assert all(renamed.get(name, name) in converted for name in SUPPORTED_ARCHITECTURES)
    assert converted <= {renamed.get(name, name) for name in SUPPORTED_ARCHITECTURES}


def gguf_bytes(*fields: tuple[str, int, bytes]) -> bytes:
    def text(value: str) -> bytes:
        return struct.pack("<Q", len(value.encode())) + value.encode()

    body = b"".join(text(key) + struct.pack("<I", kind) + raw for key, kind, raw in fields)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(fields)) + body


def test_a_damaged_or_foreign_file_is_a_clear_error_not_a_crash(tmp_path):
    text = tmp_path / "model.gguf"
    text.write_text("not gguf")
    assert not is_gguf(text)
    with pytest.raises(GgufError, match="is not a GGUF file"):
        read_header(text)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_bytes(("general.architecture", 8, struct.pack("<Q", 5) + b"llama"))[:-3])
    with pytest.raises(GgufError, match="cut short or damaged"):
        read_header(cut)
    old = tmp_path / "old.gguf"
    old.write_bytes(b"GGUF" + struct.pack("<I", 1) + b"\0" * 16)
    with pytest.raises(GgufError, match="version 1"):
        read_header(old)


def recipe_for(tmp_path: Path, model_id: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"""schema_version: 1
name: gguf
hardware: {{gpu: cpu}}
model: {{id: "{model_id}", dtype: float32}}
method: lora
lora: {{r: 8, lora_alpha: 16, target_modules: all-linear}}
data:
  train: [{{source: d.jsonl, format: prompt_completion}}]
  template: chat
training: {{learning_rate: 1.0e-4, bf16: false, max_length: 128}}
output_dir: out
""",
        encoding="utf-8",
    )
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    return path


def test_a_package_reference_resolves_to_the_installed_file_and_plans_from_its_header(
    tmp_path, smollm2_gguf
):
    recipe = recipe_for(tmp_path, f"package:{SMOLLM2_PACKAGE}/{SMOLLM2_FILE}")
    linted = CliRunner().invoke(main, ["lint", str(recipe)])
    assert linted.exit_code == 0, linted.output
    shown = CliRunner().invoke(main, ["show", str(recipe)])
    assert f"id: {smollm2_gguf}" in shown.output  # resolved to the file itself
    plan = CliRunner().invoke(main, ["plan", str(recipe), "--memory-gib", "8", "--format", "json"])
    assert plan.exit_code == 0, plan.output
    assert (
        f"{SMOLLM2_PARAMETERS / 1e9:.2f}B parameters"
        in CliRunner().invoke(main, ["plan", str(recipe), "--memory-gib", "8"]).output
    )
    assert json.loads(plan.stdout)["total_params"] == SMOLLM2_PARAMETERS


def test_the_tokenizer_comes_from_the_file_and_the_data_cache_key_from_its_content(
    tmp_path, smollm2_gguf
):
    from conftest import settings_of

    from runner.data.cache import data_key
    from runner.data.store import template_text
    from runner.expand.tokenizer import load_tokenizer

    settings = settings_of(recipe_for(tmp_path, str(smollm2_gguf)))
    tokenizer = load_tokenizer(settings)
    assert len(tokenizer) == 49152 and "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.pad_token not in ("<|im_end|>", None)
    key = data_key(settings, template_text(settings))
    assert key is not None and key == data_key(settings, template_text(settings))
