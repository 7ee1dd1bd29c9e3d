"""Data is read as the user wrote it: a JSON string stays a string whatever it looks like
(a date, "007", "true", "1e5"), and every CSV field is text. `recipe lint --data`,
`recipe preview` and `recipe run` read a source through the same reader, so they agree."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from runner.cli import main
from runner.data.rows import load_examples

# Values that type-guessing readers turn into timestamps, numbers or booleans when a whole
# column looks alike: one column of each kind.
KINDS = {
    "dates": ["1982-02-16", "2011-06-19", "1999-12-31"],
    "datetimes": ["2011-06-19 10:30:00", "2011-06-19T10:30:00Z", "1982-02-16 00:00"],
    "zero-padded": ["007", "0042", "000"],
    "booleans": ["true", "false", "True"],
    "numbers": ["1e5", "2.50", "-0"],
    "nulls": ["null", "None", "NaN"],
}
LOOKALIKES = [value for values in KINDS.values() for value in values]
FIELDS = {
    "alpaca": ("instruction", "input", "output"),
    "dolly": ("instruction", "context", "response"),
    "prompt_completion": ("prompt", None, "completion"),
}


def rows_of(fmt: str, values: list[str]) -> list[dict[str, str]]:
    """One row per value, in every text field of the format."""
    ask, context, answer = FIELDS[fmt]
    rows = []
    for value in values:
        row = {ask: f"Rewrite: {value}", answer: value}
        if context:
            row[context] = value
        rows.append(row)
    return rows


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def recipe_for(tmp_path: Path, source: str, fmt: str, **data) -> Path:
    return write_recipe(
        tmp_path / "r.yaml",
        {
            "schema_version": 1,
            "name": "as-written",
            "hardware": {"gpu": "cpu"},
            "model": {
                "config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                           "num_hidden_layers": 1, "num_attention_heads": 2},
                "tokenizer": "byte-level",
                "dtype": "float32",
            },
            "method": "full",
            "data": {"train": [{"source": source, "format": fmt}], "template": "plain",
                     "shuffle": False, **data},
            "training": {"bf16": False, "learning_rate": 1e-4, "max_length": 256},
            "output_dir": "out",
        },
    )  # fmt: skip


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@pytest.mark.parametrize("fmt", sorted(FIELDS))
def test_text_that_looks_like_a_date_number_or_boolean_stays_text(tmp_path, fmt, suffix):
    from conftest import settings_of

    for kind, values in KINDS.items():
        write(tmp_path / f"d{suffix}", rows_of(fmt, values))
        recipe = recipe_for(tmp_path, f"d{suffix}", fmt)
        linted = CliRunner().invoke(main, ["lint", "--data", str(recipe)])
        assert linted.exit_code == 0, (kind, linted.output)

        examples = load_examples(settings_of(recipe))  # what preview and run train on
        assert [e["response"] for e in examples.train] == values, kind
        if FIELDS[fmt][1]:
            assert [e["input"] for e in examples.train] == values, kind


def test_messages_and_text_keep_their_strings(tmp_path):
    from conftest import settings_of

    turns = [
        {"messages": [{"role": "user", "content": "When?"}, {"role": "assistant", "content": v}]}
        for v in LOOKALIKES
    ]
    write(tmp_path / "m.jsonl", turns)
    chat = recipe_for(tmp_path, "m.jsonl", "messages")
    # a chat template file (the byte-level tokenizer has none of its own)
    (tmp_path / "chat.jinja").write_text(
        "{% for m in messages %}{{ m['role'] }}: "
        "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}</s>"
        "{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    text = chat.read_text().replace("template: plain", "template: chat.jinja")
    chat.write_text(text)
    examples = load_examples(settings_of(chat))
    assert [e["messages"][1]["content"] for e in examples.train] == LOOKALIKES

    write(tmp_path / "t.jsonl", [{"text": v} for v in LOOKALIKES])
    plain = recipe_for(tmp_path, "t.jsonl", "text")
    assert [e["text"] for e in load_examples(settings_of(plain)).train] == LOOKALIKES


def test_a_number_written_as_a_number_is_named_by_its_line(tmp_path):
    """The reader does not turn numbers into text either: an unquoted 5 is reported at its
    line with the fix, by lint --data and by the run's reader alike."""
    from conftest import settings_of

    from runner.data.rows import BadRowsError

    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"prompt": "a", "completion": "1982-02-16"}\n{"prompt": "b", "completion": 5}\n'
    )
    recipe = recipe_for(tmp_path, "d.jsonl", "prompt_completion")
    linted = CliRunner().invoke(main, ["lint", "--data", str(recipe)])
    assert linted.exit_code == 1
    assert "d.jsonl:2: 'completion' is int 5, expected text" in linted.output
    with pytest.raises(BadRowsError, match=r"d.jsonl:2: 'completion' is int 5"):
        load_examples(settings_of(recipe))


def test_preview_shows_the_dates_as_written(tmp_path):
    rows = [{"prompt": f"Rewrite this date as YYYY-MM-DD: Feb {d} 1982",
             "completion": f"1982-02-{d:02d}"} for d in range(1, 21)]  # fmt: skip
    write(tmp_path / "dates.jsonl", rows)
    recipe = recipe_for(tmp_path, "dates.jsonl", "prompt_completion")
    result = subprocess.run(
        ["recipe", "preview", str(recipe), "-n", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "[[1982-02-01</s>]]" in result.stdout
    assert "20 examples" in result.stdout
