"""Property-based: hostile recipes, YAML documents and data files never crash
`recipe lint/show/plan/preview`: exit 0 or 1, a diagnostic with every exit 1, no
traceback, no runaway memory. The strategies live in tools/fuzz_inputs.py, which runs
many more cases than these (`python tools/fuzz_inputs.py --cases 20000`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("fuzz_inputs", REPO / "tools" / "fuzz_inputs.py")
fuzz = importlib.util.module_from_spec(spec)
sys.modules["fuzz_inputs"] = fuzz  # dataclasses look their module up
spec.loader.exec_module(fuzz)

CI = settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,  # the same cases on every CI run; the script explores
    suppress_health_check=list(HealthCheck),
)


def assert_no_problems(outcomes) -> None:
    problems = [(o.command, o.problem, o.output[-1500:]) for o in outcomes if o.problem]
    assert not problems, problems


@CI
@given(case=fuzz.mutated_recipe())
def test_mutated_shipped_recipes_get_diagnostics_not_tracebacks(case) -> None:
    assert_no_problems(fuzz.check_recipe_text(case[1]))


@CI
@given(text=fuzz.yaml_document())
def test_random_yaml_documents_get_diagnostics_not_tracebacks(text) -> None:
    assert_no_problems(fuzz.check_recipe_text(text))


@CI
@given(arguments=st.lists(fuzz.override(), min_size=1, max_size=3))
def test_random_set_arguments_get_diagnostics_not_tracebacks(arguments) -> None:
    assert_no_problems(fuzz.check_overrides(arguments))


@settings(CI, max_examples=15)
@given(text=fuzz.alias_bomb())
def test_alias_bombs_stay_small(text) -> None:
    assert_no_problems(fuzz.check_recipe_text(text))


@settings(CI, max_examples=15)  # each case previews (tokenizer and data)
@given(case=fuzz.data_file())
def test_random_data_files_get_diagnostics_in_lint_data_and_preview(case) -> None:
    assert_no_problems(fuzz.check_data_file(*case))


@pytest.mark.parametrize("depth", [33, 5000])
def test_deep_nesting_is_refused_at_any_depth(depth: int) -> None:
    text = "schema_version: 1\nx: " + "[" * depth + "]" * depth + "\n"
    outcomes = fuzz.check_recipe_text(text)
    assert_no_problems(outcomes)
    assert all("yaml-limit" in o.output for o in outcomes)
