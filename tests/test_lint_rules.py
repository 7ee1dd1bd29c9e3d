"""Rule behaviour beyond the broken suite: defaults, local models, what must stay quiet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.check import check_recipe

RECIPE = """schema_version: 1
name: rules
model: {{id: {model}}}
method: full
data:
  train: [{{source: tatsu-lab/alpaca, format: alpaca}}]
training: {{learning_rate: 1.0e-5, bf16: true{training}}}
output_dir: outputs/rules
"""
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def rules_of(result) -> set[str]:
    return {d.rule for d in result.diagnostics}


def write(tmp_path: Path, model: str, training: str = "") -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(model=model, training=training))
    return path


def test_a_from_scratch_demo_gets_no_learning_rate_warning() -> None:
    assert "learning-rate-unusual" not in rules_of(check_recipe("demo-uppercase"))
    result = check_recipe("demo-uppercase", ["training.learning_rate=1e-1"])
    assert "learning-rate-unusual" not in rules_of(result)


def test_a_diverged_run_blames_the_learning_rate_exactly_when_lint_warns_of_it(tmp_path) -> None:
    from runner.run.guard import likely_causes

    def blamed(result) -> bool:
        return any(
            "learning_rate" in cause and "usual" in cause
            for cause in likely_causes(result.settings)
        )

    path = write(tmp_path, "TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    fine_tune = check_recipe(path, ["training.learning_rate=1.0"])
    assert "learning-rate-unusual" in rules_of(fine_tune) and blamed(fine_tune)
    usual = check_recipe(path)
    assert "learning-rate-unusual" not in rules_of(usual) and not blamed(usual)
    # a model trained from scratch: the fine-tuning ranges say nothing, in either place
    scratch = check_recipe("demo-uppercase", ["training.learning_rate=1.0"])
    assert "learning-rate-unusual" not in rules_of(scratch) and not blamed(scratch)


def test_max_length_is_checked_against_a_local_model_folder(tmp_path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    result = check_recipe(write(tmp_path, "my-model"))  # relative to the recipe's folder
    (diagnostic,) = [d for d in result.diagnostics if d.rule == "max-length-over-context"]
    assert "1024 (TRL's default)" in diagnostic.message and "512" in diagnostic.message
    assert check_recipe(write(tmp_path, "my-model", ", max_length: 512")).ok


def test_an_unknown_model_skips_the_context_check(tmp_path) -> None:
    result = check_recipe(write(tmp_path, "someone/unknown-model", ", max_length: 100000"))
    assert result.ok and "max-length-over-context" not in rules_of(result)
    assert "max-length-over-context" in rules_of(  # a model with a known context: checked
        check_recipe(write(tmp_path, "meta-llama/Llama-3.2-1B-Instruct", ", max_length: 200000"))
    )


def test_bf16_support_follows_a_custom_card(tmp_path) -> None:
    path = write(tmp_path, "someone/model")
    text = path.read_text().replace(
        "method: full", "method: full\nhardware: {memory_gib: 16, bf16: false}"
    )
    path.write_text(text)
    assert "bf16-unsupported" in rules_of(check_recipe(path))
    assert check_recipe(path, ["hardware.bf16=true"]).ok


def test_fp16_on_a_t4_is_clean(tmp_path) -> None:
    path = write(tmp_path, "someone/model")
    result = check_recipe(
        path,
        ["hardware.gpu=t4", "training.bf16=false", "training.fp16=true", "model.dtype=float16"],
    )
    assert result.ok, [d.format() for d in result.diagnostics]
    assert not rules_of(result) & {"bf16-unsupported", "fp16-on-bf16-card"}
    assert "bf16-unsupported" in rules_of(check_recipe(path, ["hardware.gpu=t4"]))


FIXTURE_MODELS = {
    "llama-3.2-1b-instruct.json": "meta-llama/Llama-3.2-1B-Instruct",
    "tinyllama-1.1b-chat.json": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "llama-7b.json": "huggyllama/llama-7b",
}
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures absent")


@pytest.mark.fixtures
@needs_fixtures
@pytest.mark.parametrize("name", sorted(FIXTURE_MODELS))
def test_lint_context_check_uses_the_real_model_context(tmp_path, name: str) -> None:
    from runner.recipe.models import KNOWN_CONFIGS

    real = json.loads((FIXTURES / "configs" / name).read_text())
    assert (
        KNOWN_CONFIGS[FIXTURE_MODELS[name]]["max_position_embeddings"]
        == real["max_position_embeddings"]
    )
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(real))
    over = f", max_length: {real['max_position_embeddings'] + 1}"
    assert "max-length-over-context" in rules_of(check_recipe(write(tmp_path, "model", over)))


@pytest.mark.fixtures
@needs_fixtures
def test_lint_data_reads_the_real_alpaca_sample(tmp_path) -> None:
    import shutil

    shutil.copy(FIXTURES / "data" / "alpaca_sample.json", tmp_path / "alpaca.json")
    path = write(tmp_path, "someone/model")
    path.write_text(path.read_text().replace("tatsu-lab/alpaca", "alpaca.json"))
    result = check_recipe(path, read_data=True)
    assert result.ok, [d.format() for d in result.diagnostics]
    rows = json.loads((tmp_path / "alpaca.json").read_text())
    del rows[2]["instruction"]  # the same file with one row broken: lint reads every row
    (tmp_path / "alpaca.json").write_text(json.dumps(rows))
    broken = check_recipe(path, read_data=True)
    assert not broken.ok and any("alpaca.json" in d.format() for d in broken.diagnostics)


def test_a_template_file_is_found_relative_to_the_recipe_not_the_working_directory(
    tmp_path, monkeypatch
) -> None:
    folder = tmp_path / "project"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / "mine.jinja").write_text(
        "{% for m in messages %}{{ m.content }}{% endfor %}"
    )
    path = write(folder, "someone/model")
    path.write_text(
        path.read_text().replace(
            "format: alpaca}]", "format: alpaca}]\n  template: prompts/mine.jinja"
        )
    )
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    result = check_recipe(path)
    assert result.ok, [d.format() for d in result.diagnostics]
    assert result.resolved["data"]["template"] == str(folder / "prompts" / "mine.jinja")


def test_a_template_file_outside_the_recipe_folder_is_a_warning(tmp_path) -> None:
    (tmp_path / "elsewhere.jinja").write_text("{{ messages }}")
    folder = tmp_path / "project"
    folder.mkdir()
    path = write(folder, "someone/model")
    path.write_text(
        path.read_text().replace(
            "format: alpaca}]", "format: alpaca}]\n  template: ../elsewhere.jinja"
        )
    )
    result = check_recipe(path)
    assert result.ok and "template-outside-recipe" in rules_of(result)


@pytest.mark.fixtures
def test_chat_template_with_a_local_tokenizer_that_has_none_is_an_error(tmp_path) -> None:
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent")
    path = write(tmp_path, str(FIXTURES / "tokenizers" / "llama-2"))
    result = check_recipe(path, ["data.template=chat"])
    (diagnostic,) = [d for d in result.diagnostics if d.rule == "template-chat-missing"]
    assert "llama-2 has no chat template" in diagnostic.message
    assert check_recipe(path, ["data.template=alpaca"]).ok
    chat = write(tmp_path, str(FIXTURES / "tokenizers" / "tinyllama-chat"))
    assert "template-chat-missing" not in rules_of(check_recipe(chat, ["data.template=chat"]))
