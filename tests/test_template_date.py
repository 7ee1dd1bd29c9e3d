"""The training text does not depend on the calendar: Llama 3's chat template writes
"Today Date: ..." from transformers' clock unless it is given `date_string`, which the
recipe fixes (data.template_variables, 26 Jul 2024 by default) for training, the data
cache key, preview, and the prompts of infer and chat."""

from __future__ import annotations

import datetime
import re

import pytest
from click.testing import CliRunner
from conftest import settings_of, write_recipe

from runner.cli import main

pytestmark = pytest.mark.fixtures
DEFAULT = "26 Jul 2024"


def llama32_recipe(tmp_path, fixtures):
    (tmp_path / "d.jsonl").write_text('{"instruction": "Capital of France?", "output": "Paris."}\n')
    return write_recipe(
        tmp_path / "r.yaml",
        {
            "schema_version": 1,
            "name": "dated",
            "model": {
                "id": "meta-llama/Llama-3.2-1B-Instruct",
                "tokenizer": str(fixtures / "tokenizers" / "llama-3.2-instruct"),
            },
            "method": "full",
            "data": {"train": [{"source": "d.jsonl", "format": "alpaca"}]},
            "training": {"max_length": 128, "bf16": False},
            "output_dir": "out",
        },
    )


def today() -> str:
    return datetime.datetime.now().strftime("%d %b %Y")


def test_preview_trains_on_the_recipes_date_and_shows_it(tmp_path, shared_fixtures):
    recipe = llama32_recipe(tmp_path, shared_fixtures)
    result = CliRunner().invoke(main, ["preview", str(recipe), "-n", "1"])
    assert result.exit_code == 0, result.output
    assert f"Today Date: {DEFAULT}" in result.stdout
    assert f"template variables: date_string='{DEFAULT}' (data.template_variables)" in (
        result.stdout
    )
    if today() != DEFAULT:
        assert today() not in result.stdout
    other = CliRunner().invoke(
        main,
        [
            "preview",
            str(recipe),
            "-n",
            "1",
            "--set",
            "data.template_variables.date_string=01 Jan 2025",
        ],
    )
    assert "Today Date: 01 Jan 2025" in other.stdout and DEFAULT not in other.stdout


def test_the_cache_key_follows_the_recipes_date_and_nothing_else(tmp_path, shared_fixtures):
    from runner.data.cache import data_key
    from runner.data.store import template_text

    recipe = llama32_recipe(tmp_path, shared_fixtures)
    settings = settings_of(recipe)
    key = data_key(settings, template_text(settings))
    assert key == data_key(settings, template_text(settings))
    moved = settings_of(recipe, "data.template_variables.date_string=01 Jan 2025")
    assert data_key(moved, template_text(moved)) != key


def test_infer_and_chat_render_the_prompt_with_the_date_training_used(tmp_path, shared_fixtures):
    from runner.after.prompts import format_prompt, prompt_format
    from runner.data.rows import fit_data
    from runner.expand.tokenizer import load_tokenizer
    from runner.recipe.template import Template
    from runner.run.template_copy import save_chat_template

    settings = settings_of(llama32_recipe(tmp_path, shared_fixtures))
    tokenizer = load_tokenizer(settings)
    row = fit_data(settings, tokenizer).train[0]
    trained_text = tokenizer.decode(row["input_ids"])
    save_chat_template(tmp_path, tokenizer, Template("chat"))  # the run's copy, as training does
    fmt = prompt_format(settings, tokenizer, run_path=tmp_path)
    prompt = tokenizer.decode(format_prompt(fmt, tokenizer, "Capital of France?"))
    assert f"Today Date: {DEFAULT}" in prompt
    assert trained_text.startswith(prompt)  # the prompt is exactly what training saw
    assert re.search(r"Paris\.<\|eot_id\|>$", trained_text)
