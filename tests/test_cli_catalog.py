"""`recipe list`, `show`, `new` and `explain` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from runner import RECIPES_DIR, SCHEMAS_DIR
from runner.check import check_recipe
from runner.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_list_shows_each_shipped_recipe_with_method_model_and_gpu() -> None:
    result = run("list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "METHOD", "MODEL", "GPU"]
    row = next(line for line in lines if line.startswith("tinyllama-qlora-3070"))
    assert "qlora" in row and "TinyLlama/TinyLlama-1.1B-Chat-v1.0" in row and "RTX 3070" in row
    assert len(lines) == 1 + len(list(RECIPES_DIR.glob("*.yaml")))


def test_show_prints_the_resolved_recipe_as_yaml() -> None:
    result = run("show", "llama32-1b-full-3090", "--set", "training.learning_rate=2e-5")
    assert result.exit_code == 0, result.output
    data = YAML(typ="safe").load(result.stdout)
    assert data["training"]["learning_rate"] == 2e-5
    assert data["launch"]["strategy"] == "single"  # derived default, shown
    assert Path(data["output_dir"]).is_absolute()


@pytest.mark.parametrize(
    ("recipe", "as_", "key", "value"),
    [
        ("tinyllama-qlora-3070", "lora", "lora_alpha", 32),
        ("tinyllama-qlora-3070", "bnb", "bnb_4bit_quant_type", "nf4"),
        ("llama7b-qlora-3090", "sft", "optim", "adamw_bnb_8bit"),
    ],
)
def test_show_as_prints_the_library_keyword_arguments(recipe, as_, key, value) -> None:
    result = run("show", recipe, "--as", as_)
    assert result.exit_code == 0, result.output
    assert YAML(typ="safe").load(result.stdout)[key] == value


def test_show_as_lora_for_a_full_recipe_says_there_is_none() -> None:
    result = run("show", "llama32-1b-full-3090", "--as", "lora")
    assert result.exit_code == 1
    assert "method full trains no adapter" in result.stderr


def test_show_as_launch_prints_the_accelerate_command() -> None:
    result = run("show", "demo-uppercase", "--as", "launch")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("accelerate launch")
    assert "runner.train" in result.stdout


def test_show_refuses_a_recipe_with_errors_and_lists_them() -> None:
    broken = Path(__file__).parent / "broken" / "fp16-and-bf16.yaml"
    result = run("show", str(broken))
    assert result.exit_code == 1
    assert "error[fp16-and-bf16]" in result.stderr
    assert result.stdout == ""


def test_new_copies_with_comments_and_adapts_data_name_and_paths(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    result = run("new", "recipes/mine.yaml", "--from", "llama32-1b-full-3090",
                 "--data", "my.jsonl", "--format", "alpaca")  # fmt: skip
    assert result.exit_code == 0, result.output
    text = (tmp_path / "recipes" / "mine.yaml").read_text()
    assert "# full fine-tuning wants a small rate" in text  # comments kept
    assert "#   recipe run  recipes/mine.yaml" in text
    data = YAML(typ="safe").load(text)
    assert data["name"] == "mine"
    assert data["output_dir"] == "outputs/mine"
    assert data["data"]["train"] == [{"source": "../my.jsonl", "format": "alpaca"}]
    modeline = text.splitlines()[0].split("$schema=")[1]
    assert (tmp_path / "recipes" / modeline).resolve() == (SCHEMAS_DIR / "recipe-v1.schema.json")
    assert "lint ok" in result.output
    assert check_recipe(tmp_path / "recipes" / "mine.yaml").ok


def test_new_keeps_local_data_paths_working_from_the_copy(tmp_path) -> None:
    dest = tmp_path / "deep" / "demo.yaml"
    result = run("new", str(dest), "--from", "demo-uppercase")
    assert result.exit_code == 0, result.output
    source = YAML(typ="safe").load(dest.read_text())["data"]["train"][0]["source"]
    assert (dest.parent / source).resolve() == RECIPES_DIR / "data" / "uppercase-train.jsonl"


def test_new_with_model_replaces_a_from_scratch_config(tmp_path) -> None:
    dest = tmp_path / "tiny.yaml"
    result = run("new", str(dest), "--from", "demo-uppercase",
                 "--model", "TinyLlama/TinyLlama-1.1B-Chat-v1.0")  # fmt: skip
    assert result.exit_code == 0, result.output
    model = YAML(typ="safe").load(dest.read_text())["model"]
    assert model["id"] == "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    assert "config" not in model and "tokenizer" not in model


def test_new_refuses_to_overwrite_an_existing_file(tmp_path) -> None:
    dest = tmp_path / "mine.yaml"
    dest.write_text("precious\n")
    result = run("new", str(dest), "--from", "demo-uppercase")
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert dest.read_text() == "precious\n"


def test_new_lints_the_copy_and_fails_on_errors(tmp_path) -> None:
    dest = tmp_path / "mine.yaml"
    result = run("new", str(dest), "--from", "llama32-1b-full-3090", "--data", "missing.jsonl")
    assert result.exit_code == 1
    assert "error[data-file-missing]" in result.stderr


def test_new_from_an_unknown_recipe_suggests_a_name(tmp_path) -> None:
    result = run("new", str(tmp_path / "x.yaml"), "--from", "demo-upercase")
    assert result.exit_code == 1
    assert "did you mean `demo-uppercase`?" in result.stderr


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("training.learning_rate", "Too high"),
        ("learning_rate", "training.learning_rate"),
        ("lora.r", "rank"),
        ("data.train.0.format", "alpaca"),
        ("bnb_4bit_quant_type", "nf4"),
    ],
)
def test_explain_prints_type_default_and_plain_words(key, expected) -> None:
    result = run("explain", key)
    assert result.exit_code == 0, result.output
    assert expected in result.output
    assert "type:" in result.output


def test_explain_lists_allowed_values_and_default() -> None:
    result = run("explain", "training.lr_scheduler_type")
    assert "allowed: linear, cosine" in result.output
    assert 'default: "linear"' in result.output


def test_explain_unknown_key_suggests_the_closest_and_exits_1() -> None:
    result = run("explain", "lerning_rate")
    assert result.exit_code == 1
    assert "did you mean training.learning_rate?" in result.stderr


def test_explain_renamed_key_names_the_replacement() -> None:
    result = run("explain", "warmup_ratio")
    assert result.exit_code == 1
    assert "warmup_steps" in result.stderr


def test_json_schema_file_is_what_explain_reads() -> None:
    schema = json.loads((SCHEMAS_DIR / "recipe-v1.schema.json").read_text())
    description = schema["$defs"]["lora_config"]["properties"]["lora_alpha"]["description"]
    assert description.split()[0] in run("explain", "lora.lora_alpha").output
