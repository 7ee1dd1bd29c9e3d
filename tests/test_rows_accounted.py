"""Every row is accounted for: rows longer than max_length follow data.overlong_rows (drop by
default, truncate the prompt, or refuse), `lint --data`, `preview` and `run` give the same
counts, run.json and the summary never claim rows that did not train, the model's context
is a limit even without max_length, and a resume refuses data edited in place."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_recipe, write_recipe

from runner.cli import main

ROWS_LINE = re.compile(r"rows: \d+ read, .*")
EXPECTED = (
    "rows: 64 read, 48 trained, 0 eval; 16 dropped (longer than training.max_length 32; "
    "data.overlong_rows: drop)"
)


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def recipe_run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["recipe", "run", str(recipe), *args],
        cwd=recipe.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def write_rows(path: Path, answers: str = "UP") -> None:
    """64 rows; every 4th has a prompt that alone is longer than 32 tokens."""
    rows = [
        {"prompt": ("word " * 12 if i % 4 == 0 else "") + f"up{i}\n", "completion": f"{answers}{i}"}
        for i in range(64)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def overlong_recipe(folder: Path, model_dir: Path, rows=None, **training) -> Path:
    if rows is None:
        write_rows(folder / "data.jsonl")
    else:
        (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tiny_recipe(model_dir, max_length=32, **training)
    recipe["data"] = {
        "train": [{"source": "data.jsonl", "format": "prompt_completion"}],
        "template": "plain",
    }
    recipe["training"]["eval_strategy"] = "no"
    recipe["training"].pop("eval_steps")
    return write_recipe(folder / "r.yaml", recipe)


def rows_line(text: str) -> str:
    found = ROWS_LINE.search(text)
    assert found, text[-2000:]
    return found.group(0)


def test_lint_data_and_preview_count_the_rows_a_run_drops(tmp_path, tiny_model_dir):
    recipe = overlong_recipe(tmp_path, tiny_model_dir)
    lint = invoke("lint", "--data", str(recipe))
    assert lint.exit_code == 0, lint.output
    assert rows_line(lint.stdout).startswith(EXPECTED)
    assert "warning[overlong-rows]: 16 of 64 rows are dropped and never train" in lint.stderr
    preview = invoke("preview", str(recipe), "-n", "1")
    assert preview.exit_code == 0, preview.output
    assert rows_line(preview.stdout) == rows_line(lint.stdout)
    assert "48 examples; tokens min" in preview.stdout  # only the rows that train are shown


@pytest.mark.slow
def test_a_run_trains_and_records_only_the_rows_that_fit_and_a_resume_checks_the_data(
    tmp_path, tiny_model_dir
):
    recipe = overlong_recipe(tmp_path, tiny_model_dir, max_steps=2, save_strategy="steps",
                             save_steps=2)  # fmt: skip
    first = recipe_run(recipe)
    assert first.returncode == 0, first.stderr[-3000:]
    assert rows_line(first.stderr).startswith(EXPECTED)
    assert "; 48 rows trained (16 dropped);" in first.stdout  # the summary line
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    rows = record["rows"]
    assert (rows["read"], rows["train"], rows["dropped"], rows["cut"]) == (64, 48, 16, 0)
    assert rows["dropped_reasons"] == {"longer than training.max_length 32": 16}
    from datasets import load_from_disk

    prepared = load_from_disk(str(Path(record["data_cache"]["path"]) / "train"))
    assert len(prepared) == 48 and max(len(ids) for ids in prepared["input_ids"]) <= 32

    # the data file rewritten in place: every answer changed, the same path and row count
    (session,) = record["sessions"]
    assert "data_changed" not in session
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    write_rows(tmp_path / "data.jsonl", answers="DOWN")
    more = ("--resume", "--set", "training.max_steps=4")
    refused = recipe_run(recipe, *more)
    assert refused.returncode == 1
    old = session["data"][0]["sha256"][:12]
    assert f"the train data data.jsonl changed: sha256 {old} then" in refused.stderr
    assert "64 rows then, 64 now" in refused.stderr and "--allow-data-change" in refused.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == record  # nothing written
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == files  # none set aside

    allowed = recipe_run(recipe, *more, "--allow-data-change")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["metrics"]["steps"] == 4
    first, second = record["sessions"]  # which steps trained on which content
    assert (first["from_step"], first["step"], second["from_step"]) == (0, 2, 2)
    assert first["data"][0]["sha256"][:12] == old and first["data"][0]["rows"] == 64
    new = second["data"][0]["sha256"]
    assert new != first["data"][0]["sha256"]
    (change,) = second["data_changed"]
    assert change.startswith(f"the train data data.jsonl changed: sha256 {old} then, {new[:12]}")
    assert "continuing on changed data (--allow-data-change)" in allowed.stderr
    assert record["data"]["sources"][0]["sha256"] == new  # what the last steps trained on


def test_refuse_names_the_rows_and_stops_before_any_model_loads(
    tmp_path, tiny_model_dir, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # rows are named relative to where the command runs
    recipe = overlong_recipe(tmp_path, tiny_model_dir)
    args = ("--set", "data.overlong_rows=error")
    for command in ("preview", "run"):
        result = invoke(command, str(recipe), *args)
        assert result.exit_code == 1, result.output
        assert (
            "error[overlong-rows]: 16 training row(s) are longer than training.max_length 32:"
            in (result.stderr)
        )
        assert "data.jsonl:13 (70 tokens), data.jsonl:17 (70 tokens)" in result.stderr
        assert "and 11 more" in result.stderr
    lint = invoke("lint", "--data", str(recipe), *args)
    assert lint.exit_code == 1 and "error[overlong-rows]: 16 training row(s)" in lint.stderr
    assert not (tmp_path / "run").exists()


def test_a_row_past_the_context_is_refused_without_max_length(
    tmp_path, tiny_model_dir, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    rows = [{"prompt": f"p{i}\n" + ("x" * 300 if i == 5 else ""), "completion": "A"}
            for i in range(10)]  # fmt: skip
    recipe = overlong_recipe(tmp_path, tiny_model_dir, rows)
    words = (
        "error[max-length-over-context]: training.max_length is null, but the longest "
        "training row, data.jsonl:6, is 305 tokens: longer than the model's context of 256"
    )
    args = ("--set", "training.max_length=null")
    for command in ("preview", "run"):
        result = invoke(command, str(recipe), *args)
        assert result.exit_code == 1 and words in result.stderr, result.output
    lint = invoke("lint", "--data", str(recipe), *args)
    assert lint.exit_code == 1 and words.split("error[", 1)[1] in lint.stderr
    assert "set training.max_length to 256 or less" in lint.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.fixtures
def test_truncate_shortens_prompts_and_keeps_every_answer_with_its_end(tmp_path, shared_fixtures):
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tell me about dragons and castles. " * 6},
        {"role": "assistant", "content": "Dragons guard castles."},
        {"role": "user", "content": "Shorter?"},
        {"role": "assistant", "content": "Dragons."},
    ]
    rows = [
        {"messages": turns},  # the oldest exchange goes, the system turn stays
        {"messages": [{"role": "user", "content": "hi " * 80},
                      {"role": "assistant", "content": "Hello!"}]},  # the user text is cut
        {"messages": [{"role": "user", "content": "Say it"},
                      {"role": "assistant", "content": "LONG " * 80}]},  # answer alone too long
    ]  # fmt: skip
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "chat.yaml"
    recipe.write_text(
        "schema_version: 1\nname: chat\n"
        "model: {id: TinyLlama/TinyLlama-1.1B-Chat-v1.0, tokenizer: "
        f"{shared_fixtures / 'tokenizers' / 'tinyllama-chat'}}}\nmethod: full\n"
        "data:\n  train: [{source: chat.jsonl, format: messages}]\n  shuffle: false\n"
        "  overlong_rows: truncate\ntraining: {max_length: 64, bf16: false}\noutput_dir: out\n"
    )
    result = invoke("preview", str(recipe), "-n", "5")
    assert result.exit_code == 0, result.output
    assert rows_line(result.stdout).startswith(
        "rows: 3 read, 2 trained, 0 eval; 1 dropped (answer alone longer than "
        "training.max_length 64 allows; data.overlong_rows: truncate); 2 cut to fit"
    )
    first, second = result.stdout.split("--- example ")[1:3]
    assert "Be brief." in first and "dragons" not in first  # system kept, oldest turns gone
    assert "Shorter?" in first and first.strip().endswith("[[Dragons.</s>]]")
    assert "hi hi" in second and "[[Hello!</s>]]" in second
    assert all(int(n) <= 64 for n in re.findall(r"\((\d+) tokens", result.stdout))


def test_a_resume_compares_with_the_newest_sessions_data_else_the_sources_run_json_recorded():
    from runner.run.resume import data_changes, recorded_data, session_data

    source = {"role": "train", "source": "/d/data.jsonl", "sha256": "a" * 64, "rows_available": 64}
    older = {"sessions": [{"id": "1", "from_step": 0}], "data": {"sources": [source]}}
    assert recorded_data(older) == [
        {"role": "train", "source": "/d/data.jsonl", "sha256": "a" * 64, "rows": 64}
    ]
    edited = {**source, "sha256": "b" * 64}
    (change,) = data_changes(recorded_data(older), [edited])
    assert change == (
        "the train data /d/data.jsonl changed: sha256 aaaaaaaaaaaa then, bbbbbbbbbbbb now; "
        "64 rows then, 64 now"
    )
    newer = {
        **older,
        "sessions": [*older["sessions"], {"id": "2", **session_data(older, [edited])}],
    }
    assert newer["sessions"][1]["data_changed"] == [change]
    assert recorded_data(newer)[0]["sha256"] == "b" * 64  # the newest session's
    assert "data_changed" not in session_data(newer, [edited])
