"""The broken-recipe suite: each file in tests/broken/ breaks one or more rules.

A line ending in `# <- rule-id[, rule-id]` must get a diagnostic with that rule at that
line (line 1 for findings about the whole recipe); `# exit: 0` in a file means only
warnings are expected. Every diagnostic must say how to fix it, and nothing may print a
traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main

BROKEN = Path(__file__).parent / "broken"
MARK = re.compile(r"#\s*<-\s*([a-z0-9, -]+)$")


def expectations(path: Path) -> tuple[set[tuple[str, int]], int]:
    expected: set[tuple[str, int]] = set()
    exit_code = 1
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = MARK.search(line)
        if match:
            for rule in match.group(1).split(","):
                expected.add((rule.strip(), number))
        if line.strip() == "# exit: 0":
            exit_code = 0
    return expected, exit_code


BROKEN_FILES = sorted(BROKEN.glob("*.yaml"))


@pytest.mark.parametrize("path", BROKEN_FILES, ids=[p.stem for p in BROKEN_FILES])
def test_broken_recipe_reports_expected_rules_at_expected_lines(path: Path) -> None:
    expected, exit_code = expectations(path)
    assert expected, f"{path.name} has no `# <- rule` marks"
    result = CliRunner().invoke(main, ["lint", "--format", "json", str(path)])
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    diagnostics = json.loads(result.stdout)["files"][0]["diagnostics"]
    found = {(d["rule"], d["line"]) for d in diagnostics}
    assert expected <= found, f"missing {expected - found}; found {found}"
    unexpected_errors = {
        (d["rule"], d["line"])
        for d in diagnostics
        if d["severity"] == "error" and (d["rule"], d["line"]) not in expected
    }
    assert not unexpected_errors
    for diagnostic in diagnostics:
        assert diagnostic["hint"], f"{diagnostic['rule']} gives no hint: {diagnostic['message']}"


def test_every_rule_in_the_table_is_broken_by_some_recipe() -> None:
    from runner.lint.rules import all_rules

    covered = set()
    for path in BROKEN_FILES:
        covered |= {rule for rule, _ in expectations(path)[0]}
    # the hardware-fit rules (runner.plan) have their own tests
    missing = {r.id for r in all_rules() if not r.id.startswith("hardware-fit")} - covered
    assert not missing


def test_text_output_is_path_line_col_severity_rule_message_hint() -> None:
    path = BROKEN / "fp16-and-bf16.yaml"
    result = CliRunner().invoke(main, ["lint", str(path)])
    assert result.exit_code == 1
    line = next(x for x in result.stderr.splitlines() if "[fp16-and-bf16]" in x)
    assert re.match(rf"{re.escape(str(path))}:11:3: error\[fp16-and-bf16\]: .+ \(.+\)$", line)


def test_unknown_key_suggests_the_closest_known_key() -> None:
    result = CliRunner().invoke(main, ["lint", str(BROKEN / "unknown-keys.yaml")])
    assert "did you mean 'learning_rate'?" in result.stderr
    assert "did you mean 'shuffle'?" in result.stderr
    assert "did you mean training.num_train_epochs?" in result.stderr  # and its block


def test_a_key_in_the_wrong_block_is_told_where_it_belongs() -> None:
    result = CliRunner().invoke(main, ["lint", str(BROKEN / "key-in-wrong-block.yaml")])
    lines = {int(x.split(":")[1]): x for x in result.stderr.splitlines() if x.count(":") > 3}
    assert "'optim' belongs in training, not at the top level" in lines[17]
    assert "move it under training (training.optim)" in lines[17]
    assert "did you mean training.optim? (move it under training)" in lines[18]  # optm
    assert "'learning_rate' belongs in training, not in lora" in lines[8]
    assert "did you mean lora.lora_alpha?" in lines[16]
    assert "divergence.patience" in lines[20] and "early_stopping.patience" in lines[20]


@pytest.mark.parametrize(
    ("text", "what", "opened"),
    [
        ("lora:\n  target_modules: [q_proj,\n    v_proj\n  r: 8\nmethod: lora\n", "list", 3),
        ("model: {id: TinyLlama/TinyLlama-1.1B-Chat-v1.0,\n  dtype: bfloat16\nmethod: full\n",
         "mapping", 2),
        ("name: 'broken\nmethod: full\noutput_dir: outputs/x\n", "quoted text", 2),
    ],
)  # fmt: skip
def test_what_is_left_open_is_reported_where_it_opened(tmp_path, text, what, opened) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("schema_version: 1\n" + text)
    result = CliRunner().invoke(main, ["lint", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = next(x for x in result.stderr.splitlines() if "[yaml-syntax]" in x)
    assert line.startswith(f"{path}:{opened}:"), line  # the opening bracket's or quote's line
    assert f"the {what}" in line and "still open at line" in line


def test_renamed_keys_name_their_replacement() -> None:
    result = CliRunner().invoke(main, ["lint", str(BROKEN / "renamed-keys.yaml")])
    for old, new in [
        ("evaluation_strategy", "eval_strategy"),
        ("warmup_ratio", "warmup_steps"),
        ("max_seq_length", "max_length"),
        ("no_cuda", "use_cpu"),
        ("per_gpu_train_batch_size", "per_device_train_batch_size"),
        ("torch_dtype", "model.dtype"),
    ]:
        line = next(x for x in result.stderr.splitlines() if f".{old} " in x)
        assert new in line


def test_folder_lints_every_recipe_inside_and_exits_1_on_any_error() -> None:
    result = CliRunner().invoke(main, ["lint", "--format", "json", str(BROKEN)])
    assert result.exit_code == 1
    paths = [f["path"] for f in json.loads(result.stdout)["files"]]
    assert len(paths) == len(BROKEN_FILES)


def test_every_rule_is_listed_in_the_format_docs() -> None:
    from conftest import REPO

    from runner.lint.rules import all_rules

    docs = (REPO / "docs" / "recipe-format.md").read_text()
    assert not [rule.id for rule in all_rules() if f"`{rule.id}`" not in docs]
