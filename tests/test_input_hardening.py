"""Input that cannot train, or is hostile, stops with a diagnostic at its place: schema
ranges, YAML the loader refuses, data files that are not what their suffix says, runs
that are not trained, and template files that are not templates. Never a traceback."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

from runner import RECIPES_DIR
from runner.after.target import AfterError, find_target
from runner.check import check_recipe
from runner.cli import main
from runner.recipe.yaml_dialect import MAX_RECIPE_BYTES

BROKEN = Path(__file__).parent / "broken"


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def demo_copy(tmp_path: Path) -> Path:
    """The demo recipe and its data in a folder of its own."""
    shutil.copy(RECIPES_DIR / "demo-uppercase.yaml", tmp_path / "demo.yaml")
    shutil.copytree(RECIPES_DIR / "data", tmp_path / "data")
    return tmp_path / "demo.yaml"


# --- ranges -------------------------------------------------------------------------


def test_every_range_of_the_schema_generator_is_broken_by_a_recipe_line() -> None:
    spec = importlib.util.spec_from_file_location("gen_schema", REPO / "tools" / "gen_schema.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    text = (BROKEN / "value-ranges.yaml").read_text()
    for block, fields in generator.RANGES.items():
        for name in fields:
            assert re.search(rf"^  {name}: .*# <- bad-value$", text, re.M), f"{block}.{name}"


@pytest.mark.parametrize(
    "override",
    [
        "training.per_device_train_batch_size=0",
        "training.per_device_train_batch_size=-1",
        "training.max_length=0",
        "training.num_train_epochs=-3",
        "training.max_steps=0",
        "training.learning_rate=1e400",
        "training.learning_rate=.nan",
        "training.seed=99999999999999999999999",
    ],
)
def test_values_that_cannot_train_fail_lint_at_the_override(override: str) -> None:
    result = check_recipe("demo-uppercase", [override])
    (error,) = result.errors
    assert error.rule == "bad-value" and error.file == f"--set {override}" and error.hint


def test_the_libraries_sentinels_stay_valid() -> None:
    for override in (
        "training.max_steps=-1",
        "training.max_length=null",
        "training.eval_steps=0.5",
    ):
        assert check_recipe("demo-uppercase", [override]).ok, override


# --- hostile YAML -------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("schema_version: 1\n# " + "x" * MAX_RECIPE_BYTES + "\n")
    result = invoke("lint", str(path))
    assert result.exit_code == 1 and "error[yaml-limit]" in result.stderr


def test_an_alias_bomb_in_an_override_is_refused(tmp_path: Path) -> None:
    bomb = "[" + ", ".join(["&a [x, x, x, x, x, x, x, x, x, x]"] + ["*a"] * 150) + "]"
    result = check_recipe("demo-uppercase", [f"description={bomb}"])
    assert [d.rule for d in result.errors] == ["bad-override"]
    assert "aliases" in result.errors[0].message


def test_half_a_surrogate_pair_is_refused_in_recipes_overrides_and_data(tmp_path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text('schema_version: 1\nname: "\\ud83d"\n')
    assert (
        "r.yaml:2:7: error[yaml-syntax]: a \\uD800-\\uDFFF escape"
        in invoke("lint", str(path)).stderr
    )
    undecodable = "name=\udcff"  # a byte the terminal could not decode, as Python keeps it
    result = check_recipe("demo-uppercase", [undecodable])
    assert [d.rule for d in result.errors] == ["bad-override"]
    recipe = with_train_file(tmp_path, b'{"prompt": "a\\ud83d", "completion": "A"}\n')
    assert (
        "uppercase-train.jsonl:1: the line holds a" in invoke("lint", "--data", str(recipe)).stderr
    )


@pytest.mark.parametrize("key", ["model.id", "data.train.0.source", "data.template", "name"])
def test_a_nul_character_in_any_text_is_a_bad_value(key: str) -> None:
    result = check_recipe("tinyllama-qlora-3070", [f'{key}="a\\0b.jsonl"'])
    assert [d.rule for d in result.errors] == ["bad-value"]
    assert "NUL" in result.errors[0].message


def test_a_value_pasted_by_mistake_is_not_repeated_in_full() -> None:
    result = check_recipe("tinyllama-qlora-3070", ["lora.task_type=" + "a" * 10000])
    (error,) = result.errors
    assert error.rule == "bad-value" and len(error.message) < 200


def test_a_tag_in_an_override_is_taken_as_text() -> None:
    result = check_recipe("demo-uppercase", ["training.seed=!!set {a}"])
    assert [d.rule for d in result.errors] == ["wrong-type"]


def test_a_date_is_text_as_in_yaml_1_2(tmp_path: Path) -> None:
    result = check_recipe("demo-uppercase", ["description=2024-01-01"])
    assert result.ok and result.resolved["description"] == "2024-01-01"


# --- data files ---------------------------------------------------------------------

BAD_FILES = {
    "latin1": ('{"prompt": "caf\xe9\\n", "completion": "CAF\xc9"}\n'.encode("latin-1"), 1, "UTF-8"),
    "utf16": ('{"prompt": "a\\n", "completion": "A"}\n'.encode("utf-16"), 1, "UTF-16"),
    "malformed": (b'{"prompt": "a\\n", "completion": "A"}\n{"prompt": \n', 2, "not JSON"),
    "empty": (b"\n\n", 0, "no rows"),
    "not-an-object": (b'{"prompt": "a\\n", "completion": "A"}\n[1, 2]\n', 2, "not an object"),
}


def with_train_file(tmp_path: Path, content: bytes) -> Path:
    recipe = demo_copy(tmp_path)
    (tmp_path / "data" / "uppercase-train.jsonl").write_bytes(content)
    return recipe


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_lint_data_preview_and_run_report_a_bad_file_at_the_same_line(tmp_path, kind) -> None:
    content, line, words = BAD_FILES[kind]
    recipe = with_train_file(tmp_path, content)
    where = "uppercase-train.jsonl" + (f":{line}:" if line else ":")
    lint = invoke("lint", "--data", str(recipe))
    assert lint.exit_code == 1 and "error[data-unreadable]" in lint.stderr
    assert where in lint.stderr and words in lint.stderr
    for command in ("preview", "run"):
        result = invoke(command, str(recipe))
        assert result.exit_code == 1, (command, result.output)
        assert where in result.stderr and words in result.stderr, (command, result.stderr)
    assert not (tmp_path / "outputs").exists()  # stopped before the run directory


def test_a_bad_row_is_reported_by_line_even_after_blank_lines(tmp_path) -> None:
    rows = b'{"prompt": "a\\n", "completion": "A"}\n\n{"prompt": "b\\n", "completion": ""}\n'
    result = invoke("lint", "--data", str(with_train_file(tmp_path, rows)))
    assert "uppercase-train.jsonl:3: empty response" in result.stderr


def test_an_unclosed_csv_quote_is_reported_at_its_row(tmp_path) -> None:
    from runner.data.files import DataFileError, scan_rows

    path = tmp_path / "d.csv"
    path.write_text('prompt,completion\na,A\n"b,B\nc,C\n')
    with pytest.raises(DataFileError, match=r"d.csv:3: a quoted field on this row is never closed"):
        scan_rows(path, "d.csv")


def test_every_completion_cut_away_by_max_length_stops_before_the_model(tmp_path) -> None:
    result = invoke("preview", str(demo_copy(tmp_path)), "--set", "training.max_length=8")
    assert result.exit_code == 1
    assert "error[overlong-rows]: every training row (2000) is dropped (longer than " in (
        result.stderr
    )
    assert "the rows are 19 to 29 tokens, their prompts alone 15 to 20" in result.stderr
    assert "raise training.max_length to 29" in result.stderr


def test_steps_the_run_never_reaches_are_warned_with_lint_data(tmp_path) -> None:
    recipe = with_train_file(
        tmp_path, b"".join(b'{"prompt": "w\\n", "completion": "W"}\n' for _ in range(10))
    )
    args = ["--set", "training.save_strategy=steps", "--set", "training.save_steps=200"]
    assert "steps-never-reached" not in invoke("lint", str(recipe), *args).stderr
    result = invoke("lint", "--data", str(recipe), *args)
    assert result.exit_code == 0
    assert "save_steps is 200 but the run takes at most 12 optimizer step(s)" in result.stderr


# --- after training -----------------------------------------------------------------


def run_dir(tmp_path: Path, status: str | None, method: str = "lora") -> Path:
    """A run directory as `recipe run` leaves it, without final/."""
    (tmp_path / ".recipe-run").write_text("{}")
    lora = "lora: {r: 8}\n" if method != "full" else ""
    (tmp_path / "recipe.resolved.yaml").write_text(
        f"model: {{id: x}}\nmethod: {method}\n{lora}data: {{}}\n"
    )
    if status is not None:
        record = {"status": status, "pid": 2**22 + 7, "host": socket.gethostname()}
        (tmp_path / "run.json").write_text(json.dumps(record))  # a pid no process has
    return tmp_path


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("running", "stopped without finishing"),  # its process is gone: stale
        ("interrupted", "interrupted before the final model was saved"),
        ("diverged", "diverged"),
        ("failed", "it failed"),
        (None, "run.json is missing or unreadable"),
    ],
)
def test_a_run_that_did_not_succeed_is_not_used(tmp_path, status, words) -> None:
    with pytest.raises(AfterError, match=words):
        find_target(str(run_dir(tmp_path, status)))


def test_a_succeeded_run_names_what_its_final_folder_lacks(tmp_path) -> None:
    path = run_dir(tmp_path, "succeeded")
    (path / "final").mkdir()
    (path / "final" / "adapter_config.json").write_text("{}")
    with pytest.raises(AfterError) as caught:
        find_target(str(path))
    message = str(caught.value)
    assert "final/the adapter weights" in message and "tokenizer_config.json" in message


def test_merge_of_a_lora_run_killed_before_saving_says_so(tmp_path) -> None:
    result = invoke("merge", str(run_dir(tmp_path, "running")))
    assert result.exit_code == 1
    assert "not a trained run" in result.stderr and "full fine-tuning" not in result.stderr
    assert "saved no checkpoint" in result.stderr


def test_eval_format_is_a_fixed_list(tmp_path) -> None:
    result = invoke("eval", str(tmp_path), "--format", "nonsense")
    assert result.exit_code == 2 and "'alpaca'" in result.output


def test_infer_out_never_overwrites_without_force(tmp_path) -> None:
    out = tmp_path / "answers.jsonl"
    out.write_text("keep me\n")
    result = invoke("infer", str(tmp_path), "--prompt", "hi", "--out", str(out))
    assert result.exit_code == 1 and "--force" in result.stderr
    assert out.read_text() == "keep me\n"


# --- templates ----------------------------------------------------------------------


def test_preview_never_prints_a_file_that_is_not_a_template(tmp_path) -> None:
    (tmp_path / "elsewhere").mkdir()
    secret = tmp_path / "elsewhere" / "hostname"
    secret.write_text("secret-host-name\n")
    (tmp_path / "recipe").mkdir()
    recipe = demo_copy(tmp_path / "recipe")
    recipe.write_text(
        recipe.read_text().replace("template: plain", "template: ../elsewhere/hostname")
    )
    lint = invoke("lint", str(recipe))
    assert "error[template-not-jinja]" in lint.stderr and ".jinja or .j2" in lint.stderr
    assert "warning[template-outside-recipe]" in lint.stderr
    for command in ("preview", "run"):
        result = invoke(command, str(recipe))
        assert result.exit_code == 1
        assert "secret-host-name" not in result.output
