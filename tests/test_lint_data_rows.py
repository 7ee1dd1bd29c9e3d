"""`recipe lint --data`: the first rows of local data files, checked before any run."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from runner.cli import main

RECIPE = """schema_version: 1
name: rows
model: {{id: TinyLlama/TinyLlama-1.1B-Chat-v1.0, dtype: bfloat16}}
method: full
data:
  train:
    - source: {source}
      format: alpaca{columns}
  bad_rows: {bad_rows}
training: {{learning_rate: 1.0e-5, bf16: true}}
output_dir: outputs/rows
"""


def write(tmp_path: Path, rows, name="d.jsonl", columns="", bad_rows="error") -> Path:
    data = tmp_path / name
    if name.endswith(".csv"):
        data.write_text(rows)
    else:
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(source=name, columns=columns, bad_rows=bad_rows))
    return recipe


def lint(*args: str):
    return CliRunner().invoke(main, ["lint", "--data", "--format", "json", *args])


def diagnostics(result) -> list[dict]:
    return json.loads(result.stdout)["files"][0]["diagnostics"]


def test_good_rows_pass(tmp_path) -> None:
    recipe = write(tmp_path, [{"instruction": "a", "input": "", "output": "b"}])
    result = lint(str(recipe))
    assert result.exit_code == 0, result.output
    assert diagnostics(result) == []


def test_bad_rows_are_errors_with_their_file_and_line(tmp_path) -> None:
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "a", "output": " "},
            {"instruction": 3, "output": "b"}]  # fmt: skip
    result = lint(str(write(tmp_path, rows)))
    assert result.exit_code == 1
    found = [(d["rule"], d["line"], d["message"]) for d in diagnostics(result)]
    assert [m.split(":")[:2] for _, _, m in found] == [["d.jsonl", "2"], ["d.jsonl", "3"]]
    assert all(rule == "data-bad-row" and line == 7 for rule, line, _ in found)


def test_bad_rows_are_warnings_when_the_recipe_skips_them(tmp_path) -> None:
    recipe = write(tmp_path, [{"instruction": "a", "output": ""}], bad_rows="skip")
    result = lint(str(recipe))
    assert result.exit_code == 0
    assert diagnostics(result)[0]["severity"] == "warning"


def test_a_format_column_missing_from_the_file_says_how_to_map_it(tmp_path) -> None:
    recipe = write(tmp_path, [{"question": "a", "answer": "b"}])
    result = lint(str(recipe))
    assert result.exit_code == 1
    (diagnostic,) = diagnostics(result)
    assert diagnostic["rule"] == "data-columns-missing"
    assert "'instruction'" in diagnostic["message"] and "answer, question" in diagnostic["message"]
    assert "columns:" in diagnostic["hint"]


def test_columns_mapping_is_honoured(tmp_path) -> None:
    columns = "\n      columns: {instruction: question, output: answer}"
    recipe = write(tmp_path, [{"question": "a", "answer": "b"}], columns=columns)
    assert lint(str(recipe)).exit_code == 0
    unmapped = write(tmp_path, [{"question": "a", "answer": "b"}])
    assert [d["rule"] for d in diagnostics(lint(str(unmapped)))] == ["data-columns-missing"]


def test_csv_files_are_read_too(tmp_path) -> None:
    recipe = write(tmp_path, "instruction,input,output\na,,b\nc,,\n", name="d.csv")
    result = lint(str(recipe))
    assert [d["message"].split(":")[1] for d in diagnostics(result)] == ["3"]  # line 1: header


def test_a_file_that_is_not_json_lines_is_reported_not_raised(tmp_path) -> None:
    data = tmp_path / "d.jsonl"
    recipe = write(tmp_path, [])
    data.write_text("{not json\n")
    result = lint(str(recipe))
    assert result.exit_code == 1
    assert diagnostics(result)[0]["rule"] == "data-unreadable"


def test_without_the_flag_rows_are_not_opened(tmp_path) -> None:
    recipe = write(tmp_path, [{"instruction": 3, "output": "b"}])
    assert CliRunner().invoke(main, ["lint", str(recipe)]).exit_code == 0
