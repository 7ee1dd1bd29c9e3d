"""One owner for each default, each key and the list of data sources.

A value a recipe leaves out is the library's default, layered once
(runner.recipe.resolve.library_view) and read the same by `recipe show`, `recipe plan`,
`recipe lint` and Settings; a recipe's data sources are listed once
(runner.recipe.resolve.keyed_sources), train then eval.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner
from conftest import REPO, bare_recipe, settings_of

from runner.cli import main
from runner.plan.setup import setup_from_settings
from runner.recipe.resolve import data_sources, eval_sources, keyed_sources


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def shown(recipe: str, as_: str, *overrides: str) -> dict:
    sets = [part for o in overrides for part in ("--set", o)]
    return yaml.safe_load(cli("show", recipe, "--as", as_, *sets))


# --- a key left out reads the same everywhere -----------------------------------------


def test_a_left_out_max_length_is_trls_in_settings_and_the_plan_and_not_passed(tmp_path):
    path = str(bare_recipe(tmp_path / "bare.yaml"))
    assert "max_length" not in shown(path, "sft")  # SFTConfig fills its own default
    assert settings_of(path).max_length == 1024  # TRL's
    assert " x 1024 tokens" in cli("plan", path, "--memory-gib", "80")


def test_a_left_out_quant_type_is_bitsandbytes_fp4_in_settings_plan_and_show():
    overrides = ("quantization={load_in_4bit: true}",)
    assert shown("tinyllama-qlora-3070", "bnb", *overrides) == {
        "bnb_4bit_compute_dtype": "bfloat16",  # decided by resolve: the model's dtype
        "load_in_4bit": True,
    }
    quantization = settings_of("tinyllama-qlora-3070", *overrides).quantization_config
    assert quantization["bnb_4bit_quant_type"] == "fp4"
    assert quantization["bnb_4bit_use_double_quant"] is False
    plan = cli("plan", "tinyllama-qlora-3070", "--set", overrides[0])
    assert "4-bit fp4; embeddings" in plan  # no double quantization either


def test_a_left_out_lora_dropout_is_peft_zero_in_settings_and_the_plan():
    overrides = ("lora={r: 16, lora_alpha: 32, target_modules: all-linear}",)
    assert "lora_dropout" not in shown("tinyllama-qlora-3070", "lora", *overrides)
    settings = settings_of("tinyllama-qlora-3070", *overrides)
    assert settings.lora_config["lora_dropout"] == 0.0
    assert setup_from_settings(settings).lora_dropout == 0.0


def test_a_left_out_eval_steps_is_logging_steps_for_the_schedule_and_lint():
    # TrainingArguments evaluates every logging_steps when eval_steps is not given; the
    # schedule the run prints and the rule that checks save_steps both say so.
    overrides = (
        "training.eval_strategy=steps",
        "training.logging_steps=5",
        "data.eval={fraction: 0.1}",
    )
    assert "eval_steps" not in shown("demo-uppercase", "sft", *overrides)
    settings = settings_of("demo-uppercase", *overrides)
    assert settings.training["eval_steps"] == 5
    assert settings.eval_schedule() == "before training, every 5 steps and after training"
    result = CliRunner().invoke(
        main,
        ["lint", "demo-uppercase"]
        + [part for o in overrides for part in ("--set", o)]
        + ["--set", "training.load_best_model_at_end=true", "--set", "training.save_steps=12"]
        + ["--set", "training.save_strategy=steps"],
    )
    assert "save_steps (12) to be a multiple of eval_steps (5)" in result.output


def test_qlora_sharded_without_a_quant_storage_names_bitsandbytes_uint8() -> None:
    from runner.check import check_recipe

    checked = check_recipe(REPO / "tests" / "broken" / "qlora-fsdp-quant-storage.yaml", ())
    messages = [d.message for d in checked.diagnostics if d.rule == "qlora-zero3-quant-storage"]
    assert messages and "not uint8" in messages[0]


def test_library_defaults_are_layered_only_by_resolve() -> None:
    # One owner: a second place layering SFTConfig/LoraConfig/BitsAndBytesConfig
    # defaults could disagree with the first.
    calls = re.compile(r"\blibrary_defaults\(")
    elsewhere = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "runner").rglob("*.py"))
        if path.name != "resolve.py" and calls.search(path.read_text(encoding="utf-8"))
    ]
    assert elsewhere == []


def test_a_library_block_has_one_view_per_settings() -> None:
    settings = settings_of("tinyllama-qlora-3070")
    assert settings.training is settings.training
    assert settings.lora_config is settings.lora_config
    assert settings.quantization_config is settings.quantization_config
    assert settings_of("demo-uppercase").lora_config is None
    assert settings_of("demo-uppercase").quantization_config is None


# --- the data sources -----------------------------------------------------------------

TRAIN = [{"source": "a.jsonl", "format": "alpaca"}, {"source": "b.jsonl", "format": "alpaca"}]
HELD_OUT = [{"source": "c.jsonl", "format": "alpaca"}]


def test_data_sources_are_train_then_listed_eval_sources() -> None:
    data = {"train": TRAIN, "eval": HELD_OUT}
    assert data_sources(data) == [*TRAIN, *HELD_OUT]
    assert eval_sources(data) == HELD_OUT
    assert [key for key, _ in keyed_sources(data)] == [("train", 0), ("train", 1), ("eval", 0)]


def test_an_eval_fraction_or_no_eval_lists_no_eval_sources() -> None:
    for data in ({"train": TRAIN, "eval": {"fraction": 0.1}}, {"train": TRAIN}):
        assert data_sources(data) == TRAIN
        assert eval_sources(data) == []


def test_a_block_as_written_with_no_list_has_no_sources() -> None:
    assert keyed_sources({"train": "a.jsonl", "eval": None}) == []


def test_eval_sources_are_resolved_against_the_recipes_folder(tmp_path) -> None:
    from runner.recipe.resolve import resolve_recipe
    from runner.recipe.settings import Settings

    raw = {
        "schema_version": 1,
        "name": "t",
        "model": {"id": "x"},
        "method": "full",
        "data": {"train": [dict(s) for s in TRAIN], "eval": [dict(s) for s in HELD_OUT]},
        "output_dir": "out",
    }
    settings = Settings(resolve_recipe(raw, tmp_path))
    assert [Path(s["source"]) for s in settings.sources] == [
        tmp_path / "a.jsonl",
        tmp_path / "b.jsonl",
        tmp_path / "c.jsonl",
    ]
    assert settings.eval_sources == settings.sources[2:]


def test_a_run_recorded_before_newer_keys_existed_reads_them_as_their_defaults(tmp_path):
    from runner.recipe.settings import Settings
    from runner.run.directory import RunDirectory

    resolved = settings_of("demo-uppercase").resolved
    old = {**resolved, "data": dict(resolved["data"]), "model": dict(resolved["model"])}
    for block, key in (("data", "template_variables"), ("data", "overlong_rows"),
                       ("model", "trust_remote_code")):  # fmt: skip
        del old[block][key]
    run = RunDirectory(tmp_path)
    run.resolved.write_text(yaml.safe_dump(old))
    settings = Settings(run.read_resolved())  # as `recipe infer RUN` reads it
    assert settings.overlong_rows == resolved["data"]["overlong_rows"]
    assert settings.template_variables == resolved["data"]["template_variables"]
    assert settings.trust_remote_code is False
