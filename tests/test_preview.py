"""`recipe preview` with a real local tokenizer directory and the real Alpaca rows."""

from __future__ import annotations

import subprocess

import pytest
from conftest import write_recipe

pytestmark = pytest.mark.fixtures


def test_preview_with_a_local_tokenizer_directory_marks_only_responses(tmp_path, shared_fixtures):
    recipe = {
        "schema_version": 1,
        "name": "alpaca-preview",
        "model": {
            "id": "huggyllama/llama-7b",
            "tokenizer": str(shared_fixtures / "tokenizers" / "llama-2"),
            "dtype": "bfloat16",
        },
        "method": "full",
        "data": {
            "train": [
                {"source": str(shared_fixtures / "data" / "alpaca_sample.json"), "format": "alpaca"}
            ],
            "template": "alpaca",
            "shuffle": False,
        },
        "training": {"max_length": 128, "bf16": True},
        "output_dir": "out",
    }
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = subprocess.run(
        ["recipe", "preview", str(path), "-n", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    first = out.split("--- example 1")[1].split("--- example 2")[0]
    assert "Below is an instruction that describes a task" in first
    prompt, trained = first.split("### Response:\n")
    assert "[[" not in prompt  # the prompt is not trained
    assert trained.strip().startswith("[[") and trained.strip().endswith("</s>]]")
    assert "56 examples; tokens min" in out  # the rows that train, each within max_length
    assert (
        "rows: 102 read, 56 trained, 0 eval; 46 dropped (longer than training.max_length 128; "
        "data.overlong_rows: drop)" in out
    )
    assert "pad token '<unk>', end-of-turn token '</s>'" in out
    assert not (tmp_path / "out").exists()
