"""Data sources, formats, row selection, mixing, eval split and bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.data.formats import normalize_row
from runner.data.rows import BadRowsError, load_examples, parse_rows
from runner.data.sources import DataError

ALPACA_ROWS = [
    {"instruction": f"Say {i}", "input": "" if i % 2 else f"ctx {i}", "output": f"answer {i}"}
    for i in range(10)
]


def recipe(*sources, **data):
    """The effective settings of a recipe reading `sources` (resolved, not linted, so a
    missing file reaches the data layer)."""
    from runner.recipe.resolve import resolve_recipe
    from runner.recipe.settings import Settings

    raw = {
        "schema_version": 1,
        "name": "t",
        "model": {"id": "x"},
        "method": "full",
        "data": {"train": list(sources), "template": "alpaca", "shuffle": False, **data},
        "training": {"seed": 3},
        "output_dir": "out",
    }
    return Settings(resolve_recipe(raw, Path.cwd()))


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_alpaca_row_becomes_an_instruction_with_input():
    example, problem = normalize_row("alpaca", None, ALPACA_ROWS[0])
    assert problem is None
    assert example == {"instruction": "Say 0", "input": "ctx 0", "response": "answer 0"}


def test_dolly_context_is_the_input_and_columns_map_own_names():
    row = {"q": "Why?", "background": "Because.", "a": "So."}
    example, _ = normalize_row(
        "dolly", {"instruction": "q", "context": "background", "response": "a"}, row
    )
    assert example == {"instruction": "Why?", "input": "Because.", "response": "So."}


def test_prompt_completion_is_an_instruction_without_input():
    example, _ = normalize_row("prompt_completion", None, {"prompt": "P", "completion": "C"})
    assert example == {"instruction": "P", "input": "", "response": "C"}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"instruction": "x", "output": ""}, "empty response"),
        ({"instruction": "x", "output": 42}, "'output' is int 42, expected text"),
        ({"instruction": "x"}, "'output' is missing"),
    ],
)
def test_bad_alpaca_rows_say_what_is_wrong(row, expected):
    example, problem = normalize_row("alpaca", None, row)
    assert example is None and expected in problem


def test_messages_need_an_assistant_turn_and_text_content():
    _, problem = normalize_row("messages", None, {"messages": [{"role": "user", "content": "hi"}]})
    assert "no assistant turn" in problem
    _, problem = normalize_row(
        "messages", None, {"messages": [{"role": "user", "content": ["hi"]}]}
    )
    assert "turn 1 (user) has list content" in problem


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_local_files_of_every_kind_are_read(tmp_path, suffix):
    import pandas as pd

    path = tmp_path / f"rows{suffix}"
    frame = pd.DataFrame(ALPACA_ROWS)
    if suffix == ".json":
        path.write_text(json.dumps(ALPACA_ROWS), encoding="utf-8")  # one JSON array
    elif suffix == ".jsonl":
        write_jsonl(path, ALPACA_ROWS)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    examples = load_examples(recipe({"source": str(path), "format": "alpaca"}))
    assert len(examples.train) == 10
    assert examples.train[3]["response"] == "answer 3"


def test_a_dataset_saved_to_disk_is_read_like_a_hub_dataset(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict(
        {"train": Dataset.from_list(ALPACA_ROWS), "test": Dataset.from_list(ALPACA_ROWS[:2])}
    ).save_to_disk(tmp_path / "ds")
    source = {"source": str(tmp_path / "ds"), "format": "alpaca", "split": "test"}
    assert len(load_examples(recipe(source)).train) == 2


def test_rows_take_a_count_or_a_slice():
    assert list(parse_rows(3, 10)) == [0, 1, 2]
    assert list(parse_rows("2:5", 10)) == [2, 3, 4]
    assert list(parse_rows(":2", 10)) == [0, 1]
    assert list(parse_rows(50, 10)) == list(range(10))


def test_shuffling_follows_the_seed(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", ALPACA_ROWS)
    source = {"source": str(path), "format": "alpaca", "rows": 5}
    first = load_examples(recipe(source, shuffle=True)).train
    again = load_examples(recipe(source, shuffle=True)).train
    assert first == again
    assert first != load_examples(recipe(source, shuffle=False)).train


def test_sources_are_mixed_and_an_eval_fraction_is_held_out(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ALPACA_ROWS)
    b = write_jsonl(
        tmp_path / "b.jsonl", [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(10)]
    )
    examples = load_examples(
        recipe(
            {"source": str(a), "format": "alpaca"},
            {"source": str(b), "format": "prompt_completion"},
            eval={"fraction": 0.1},
        )
    )
    assert (len(examples.train), len(examples.eval)) == (18, 2)
    assert [f["rows_used"] for f in examples.fingerprints] == [10, 10]
    assert all(f["sha256"] for f in examples.fingerprints)


def test_bad_rows_stop_with_source_and_line_numbers(tmp_path):
    rows = [*ALPACA_ROWS[:3], {"instruction": "x", "output": ""}, {"instruction": 5, "output": "y"}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(BadRowsError) as caught:
        load_examples(recipe({"source": str(path), "format": "alpaca"}))
    message = str(caught.value)
    assert "bad.jsonl:4: empty response" in message
    assert "bad.jsonl:5: 'instruction' is int 5, expected text" in message
    assert "2 bad row(s)" in message and "bad_rows: skip" in message


def test_many_bad_rows_list_the_first_ten_and_a_count(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "x", "output": ""}] * 25)
    with pytest.raises(BadRowsError) as caught:
        load_examples(recipe({"source": str(path), "format": "alpaca"}))
    lines = str(caught.value).splitlines()
    assert lines[0] == "bad data rows, nothing was trained:"
    assert lines[10].endswith(
        "bad.jsonl:10: empty response (fill it in, or set `data.bad_rows: skip` to drop such rows)"
    )
    assert "... and 15 more bad rows" in str(caught.value)


def test_skip_drops_bad_rows_and_counts_them(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [*ALPACA_ROWS, {"instruction": "x", "output": " "}])
    examples = load_examples(recipe({"source": str(path), "format": "alpaca"}, bad_rows="skip"))
    assert (len(examples.train), examples.skipped) == (10, 1)


def test_a_missing_column_names_the_columns_there_are(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(
        DataError,
        match="no column 'instruction', 'output' for format alpaca; its columns are question, answer",
    ):
        load_examples(recipe({"source": str(path), "format": "alpaca"}))


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_examples(recipe({"source": str(tmp_path / "nope.jsonl"), "format": "alpaca"}))


def test_text_cannot_be_mixed_with_instruction_data(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ALPACA_ROWS)
    t = write_jsonl(tmp_path / "t.jsonl", [{"text": "hello"}])
    with pytest.raises(DataError, match="format text cannot be mixed"):
        load_examples(
            recipe({"source": str(a), "format": "alpaca"}, {"source": str(t), "format": "text"})
        )


def test_instruction_and_messages_sources_mix_as_conversations(tmp_path):
    from runner.data.templates import PromptFormat
    from runner.data.trl_rows import trl_row

    a = write_jsonl(tmp_path / "a.jsonl", ALPACA_ROWS[:2])
    m = write_jsonl(
        tmp_path / "m.jsonl",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}],
    )
    settings = recipe(
        {"source": str(a), "format": "alpaca"},
        {"source": str(m), "format": "messages"},
        template="chat",
    )
    examples = load_examples(settings)
    assert examples.shape == "mixed"
    row = trl_row(examples.train[0], PromptFormat.of(settings), "</s>", as_messages=True)
    assert row == {
        "messages": [
            {"role": "user", "content": "Say 0\n\nctx 0"},
            {"role": "assistant", "content": "answer 0"},
        ],
        "chat_template_kwargs": {"date_string": "26 Jul 2024"},  # data.template_variables
    }
