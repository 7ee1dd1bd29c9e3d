"""The committed JSON Schema: valid Draft 2020-12, in step with the installed libraries,
and read the same way by two independent validators."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest
from conftest import REPO

from runner import RECIPES_DIR
from runner.recipe.load import load_recipe
from runner.recipe.schema import SCHEMA_PATH

BROKEN = Path(__file__).parent / "broken"


def committed_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_schema", REPO / "tools" / "gen_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schema_passes_the_draft_2020_12_meta_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(committed_schema())


@pytest.mark.slow  # imports trl, peft and transformers (~10 s)
def test_committed_schema_matches_the_installed_trl_peft_transformers() -> None:
    generator = load_generator()
    expected = generator.render(generator.generate())
    assert SCHEMA_PATH.read_text(encoding="utf-8") == expected, (
        "schemas/recipe-v1.schema.json is stale: run `python tools/gen_schema.py`"
    )


def test_library_blocks_are_closed_and_typed() -> None:
    defs = committed_schema()["$defs"]
    for name in ("sft_config", "lora_config", "bnb_config"):
        assert defs[name]["additionalProperties"] is False
        assert defs[name]["properties"]
    sft = defs["sft_config"]["properties"]
    assert sft["learning_rate"]["type"] == "number"
    assert "cosine" in sft["lr_scheduler_type"]["enum"]
    assert "paged_adamw_8bit" in sft["optim"]["enum"]
    assert set(sft["eval_strategy"]["enum"]) == {"no", "steps", "epoch"}
    for moved in (
        "output_dir",
        "deepspeed",
        "fsdp",
        "hub_token",
        "local_rank",
        "model_init_kwargs",
    ):
        assert moved not in sft
    bnb = defs["bnb_config"]["properties"]
    assert bnb["bnb_4bit_quant_type"]["enum"] == ["fp4", "nf4"]
    assert defs["lora_config"]["properties"]["r"]["type"] == "integer"


def test_beginner_keys_have_plain_words_descriptions() -> None:
    defs = committed_schema()["$defs"]
    assert "Too high" in defs["sft_config"]["properties"]["learning_rate"]["description"]
    assert "Too high" in defs["lora_config"]["properties"]["r"]["description"]


def recipe_data() -> list[tuple[str, dict]]:
    from runner.recipe.diagnostics import RecipeError

    cases = []
    for path in sorted(RECIPES_DIR.glob("*.yaml")) + sorted(BROKEN.glob("*.yaml")):
        try:
            cases.append((path.name, load_recipe(path).data))
        except RecipeError:
            continue  # not YAML at all: nothing for a validator to see
    return cases


def test_jsonschema_rs_agrees_with_jsonschema_on_shipped_and_broken_recipes() -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    schema = committed_schema()
    ours = jsonschema.Draft202012Validator(schema)
    theirs = jsonschema_rs.Draft202012Validator(schema)
    cases = recipe_data()
    verdicts = {name: ours.is_valid(data) for name, data in cases}
    assert verdicts == {name: theirs.is_valid(data) for name, data in cases}
    assert all(verdicts[p.name] for p in RECIPES_DIR.glob("*.yaml"))
    assert not all(verdicts.values())  # the broken suite does break the schema somewhere
