"""ShareGPT data (`conversations` of from/value turns) is read as conversations, and when a
declared format does not fit the rows, lint says which format they look like with a hint
that works when followed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.data.formats import normalize_row

CONVERSATION = [
    {"from": "system", "value": "Answer in one word."},
    {"from": "human", "value": "Sky colour?"},
    {"from": "gpt", "value": "Blue."},
    {"from": "user", "value": "Grass?"},
    {"from": "assistant", "value": "Green."},
]
# One row of each shipped format, as users' files hold them.
ROWS = {
    "alpaca": {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    "dolly": {"instruction": "Why?", "context": "Because.", "response": "So."},
    "prompt_completion": {"prompt": "2+3=", "completion": "5"},
    "messages": {"messages": [{"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello!"}]},
    "sharegpt": {"conversations": CONVERSATION},
    "text": {"text": "Plain text to learn."},
    # the same shapes under the other common column name
    "messages as conversations": {"conversations": [{"role": "user", "content": "Hi"},
                                                    {"role": "assistant", "content": "Hey"}]},
    "sharegpt as messages": {"messages": CONVERSATION},
}  # fmt: skip
FORMATS = ["alpaca", "dolly", "prompt_completion", "messages", "sharegpt", "text"]
FIX = re.compile(r"`(format: \w+|columns: \{[^`]*\})`|(delete `columns`)")


def test_sharegpt_speakers_become_roles_and_columns_rename_every_field():
    example, problem = normalize_row("sharegpt", None, {"conversations": CONVERSATION})
    assert problem is None
    assert [t["role"] for t in example["messages"]] == [
        "system", "user", "assistant", "user", "assistant"
    ]  # fmt: skip
    renamed = {"dialog": [{"speaker": "human", "text": "Hi"}, {"speaker": "gpt", "text": "Yo"}]}
    columns = {"conversations": "dialog", "from": "speaker", "value": "text"}
    example, problem = normalize_row("sharegpt", columns, renamed)
    assert problem is None and example["messages"][1] == {"role": "assistant", "content": "Yo"}
    _, problem = normalize_row("sharegpt", None, {"conversations": [{"from": "bot", "value": "x"}]})
    assert (
        problem == "turn 1 is from 'bot'; expected one of human, user, gpt, assistant, system, tool"
    )


def test_sharegpt_declared_as_messages_says_it_is_sharegpt():
    _, problem = normalize_row("messages", {"messages": "conversations"}, ROWS["sharegpt"])
    assert (
        problem
        == "turn 1 has no 'role' (its fields: from, value); from/value turns are format sharegpt"
    )


def write(tmp_path: Path, row: dict, fmt: str, columns: str = "") -> Path:
    (tmp_path / "d.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "schema_version: 1\nname: rows\n"
        "model: {id: TinyLlama/TinyLlama-1.1B-Chat-v1.0, dtype: bfloat16}\nmethod: full\n"
        f"data:\n  train:\n    - source: d.jsonl\n      format: {fmt}\n{columns}"
        "training: {learning_rate: 1.0e-5, bf16: true}\noutput_dir: out\n"
    )
    return recipe


def lint_data(recipe: Path):
    result = CliRunner().invoke(main, ["lint", "--data", "--format", "json", str(recipe)])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)["files"][0]["diagnostics"]


@pytest.mark.parametrize("shape", list(ROWS))
@pytest.mark.parametrize("declared", FORMATS)
def test_every_hint_lint_prints_for_a_wrong_format_works_when_followed(tmp_path, shape, declared):
    code, found = lint_data(write(tmp_path, ROWS[shape], declared))
    if code == 0:
        return  # the rows fit the declared format (or, as text, need no other)
    hints = {d["hint"] for d in found if d["severity"] == "error"}
    assert len(hints) == 1, found
    (hint,) = hints
    assert "the rows look like" in hint, hint
    fmt, columns = declared, ""
    for change, delete in FIX.findall(hint):
        if change.startswith("format: "):
            fmt = change.removeprefix("format: ")
        elif change:
            columns = f"      {change}\n"
        if delete:
            columns = ""
    code, found = lint_data(write(tmp_path, ROWS[shape], fmt, columns))
    assert code == 0, (hint, found)


@pytest.mark.fixtures
def test_preview_renders_sharegpt_with_the_chat_template_and_trains_assistant_turns(
    tmp_path, shared_fixtures
):
    (tmp_path / "d.jsonl").write_text(json.dumps({"conversations": CONVERSATION}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "schema_version: 1\nname: sg\nmodel: {id: TinyLlama/TinyLlama-1.1B-Chat-v1.0, "
        f"tokenizer: {shared_fixtures / 'tokenizers' / 'tinyllama-chat'}}}\nmethod: full\n"
        "data: {train: [{source: d.jsonl, format: sharegpt}]}\n"
        "training: {bf16: false}\noutput_dir: out\n"
    )
    result = CliRunner().invoke(main, ["preview", str(recipe), "-n", "1"])
    assert result.exit_code == 0, result.output
    assert "<|system|>\nAnswer in one word.</s>" in result.stdout
    assert "<|user|>\nSky colour?</s>" in result.stdout
    trained = re.findall(r"\[\[(.*?)\]\]", result.stdout, re.S)
    assert trained == ["Blue.</s>", "Green.</s>"]


def test_sharegpt_mapped_as_messages_is_told_to_use_sharegpt_and_drop_the_mapping(tmp_path):
    columns = "      columns: {messages: conversations}\n"  # what lint used to advise
    code, found = lint_data(write(tmp_path, ROWS["sharegpt"], "messages", columns))
    assert code == 1
    assert {d["message"].split(": ", 1)[1] for d in found} == {
        "turn 1 has no 'role' (its fields: from, value); from/value turns are format sharegpt"
    }
    assert {d["hint"] for d in found} == {
        "the rows look like sharegpt (conversations of from/value turns): set `format: "
        "sharegpt` and delete `columns`"
    }
    assert lint_data(write(tmp_path, ROWS["sharegpt"], "sharegpt"))[0] == 0
