"""Data prepared once, before launch, kept by content: the tokens SFTTrainer trains on are
exactly those of its own preparation, a rerun finds them, an edited row does not, and
the training processes read no row themselves."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DEMO_TRAIN, settings_of, tiny_recipe, write_recipe

from runner.cli import main


def sft_labels(settings, rows, tokenizer, data, tmp_path, tokenized=False):
    """The labels SFTTrainer builds from `rows`, with the runner's own SFTConfig."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from runner.expand.placement import Placement
    from runner.expand.training import run_sft_kwargs

    kwargs = run_sft_kwargs(
        settings, Placement(cpu=True), data.loss, has_eval=False, tokenized=tokenized
    )
    kwargs.update(output_dir=str(tmp_path / "out"), report_to=[])
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=LlamaForCausalLM(config),
        args=SFTConfig(**kwargs),
        train_dataset=rows,
        processing_class=tokenizer,
    )
    return [(r["input_ids"], r["labels"]) for r in trainer.train_dataset]


@pytest.mark.parametrize("template", ["plain", "alpaca"])
def test_prepared_rows_train_exactly_the_tokens_of_trls_own_preparation(tmp_path, template):
    from runner.data.rows import fit_data, rendered_data
    from runner.expand.tokenizer import load_tokenizer

    settings = settings_of(
        "demo-uppercase", f"data.template={template}", "training.max_length=256",
        "model.config.max_position_embeddings=256",
    )  # fmt: skip
    tokenizer = load_tokenizer(settings)
    data = rendered_data(settings, tokenizer)
    rows = data.train.select(range(40))
    prepared = fit_data(settings, tokenizer).train.select(range(40))  # every row fits
    ours = sft_labels(settings, prepared, tokenizer, data, tmp_path, tokenized=True)
    trls = sft_labels(settings, rows, tokenizer, data, tmp_path)
    assert ours == trls
    assert all(-100 in labels and labels[-1] != -100 for _, labels in ours)  # prompt masked


@pytest.mark.fixtures
def test_prepared_conversations_train_the_assistant_turns_trl_would(tmp_path, shared_fixtures):
    from runner.data.rows import fit_data, rendered_data
    from runner.expand.tokenizer import load_tokenizer

    data_file = tmp_path / "chat.jsonl"
    turns = [
        {"role": "user", "content": f"Say {i}."} if j % 2 == 0 else
        {"role": "assistant", "content": f"{i} and {j}."}
        for i in range(6) for j in range(4)
    ]  # fmt: skip
    rows = [{"messages": turns[k : k + 4]} for k in range(0, len(turns), 4)]
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = settings_of(
        "demo-uppercase",
        f"model.tokenizer={shared_fixtures / 'tokenizers' / 'tinyllama-chat'}",
        "data.template=chat",
        f"data.train=[{{source: {data_file}, format: messages}}]",
        f"data.eval=[{{source: {data_file}, format: messages}}]",
    )
    tokenizer = load_tokenizer(settings)
    data = rendered_data(settings, tokenizer)
    prepared = fit_data(settings, tokenizer).train
    ours = sft_labels(settings, prepared, tokenizer, data, tmp_path, tokenized=True)
    trls = sft_labels(settings, data.train, tokenizer, data, tmp_path)
    assert ours == trls


def test_the_training_processes_read_the_prepared_data_and_no_row(tmp_path, monkeypatch):
    import runner.data.rows as rows
    from runner.data.store import stored_data, training_data, write_pointer
    from runner.expand.tokenizer import load_tokenizer

    settings = settings_of("demo-uppercase")
    prepared = stored_data(settings, use_cache=False, into=tmp_path / "prepared")
    write_pointer(tmp_path, prepared)

    def no_rows(*args, **kwargs):
        raise AssertionError("a training process read the data rows")

    monkeypatch.setattr(rows, "load_examples", no_rows)
    data = training_data(settings, load_tokenizer(settings), home=tmp_path)
    assert "input_ids" in data.train.column_names and len(data.train) == 2000
    assert data.examples.eval and data.examples.shape == "instruction"


def run(path: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["recipe", "run", str(path), "--overwrite", *args],
        cwd=path.parent,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_a_rerun_hits_the_cache_an_edited_row_misses_and_cache_ls_and_clear_see_it(
    tmp_path, tiny_model_dir, monkeypatch
):
    monkeypatch.setenv("RECIPE_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data.jsonl"
    shutil.copyfile(DEMO_TRAIN, data)
    recipe = tiny_recipe(tiny_model_dir, max_steps=2)
    recipe["data"]["train"][0]["source"] = str(data)
    path = write_recipe(tmp_path / "r.yaml", recipe)

    first = run(path)
    assert "data cache: hit" not in first.stderr and "prepared in" in first.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())["data_cache"]
    assert record["cache"] == "miss" and record["prepare_seconds"] > 0

    again = run(path)
    assert "data cache: hit" in again.stderr
    assert (
        json.loads((tmp_path / "run" / "run.json").read_text())["data_cache"]["key"]
        == (record["key"])
    )
    lines = data.read_text().splitlines()
    row = json.loads(lines[0])
    row["completion"] = row["completion"] + "!"
    data.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    edited = run(path)
    assert "data cache: hit" not in edited.stderr
    assert (
        json.loads((tmp_path / "run" / "run.json").read_text())["data_cache"]["key"]
        != (record["key"])
    )
    uncached = run(path, "--no-cache")
    assert (tmp_path / "run" / "prepared" / "train").is_dir()
    assert "into the run directory" in uncached.stderr

    listed = CliRunner().invoke(main, ["cache", "ls"])
    assert listed.exit_code == 0 and listed.stdout.count("tiny-full") == 2
    cleared = CliRunner().invoke(main, ["cache", "clear", "--all"])
    assert cleared.exit_code == 0 and "removed 2" in cleared.stdout
    assert "0 prepared dataset(s)" in CliRunner().invoke(main, ["cache", "ls"]).stderr


def test_the_cache_stays_under_its_size_limit_dropping_the_least_recently_used(
    tmp_path, monkeypatch
):
    from runner.data import cache

    monkeypatch.setenv("RECIPE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("RECIPE_CACHE_MAX_GB", str(3.5 * 1024**2 / 1024**3))  # 3.5 MiB

    def build(folder: Path) -> dict:
        (folder / "train").mkdir()
        (folder / "train" / "data.arrow").write_bytes(b"x" * 1024**2)
        return {"recipe": "r", "rows": {"train": 1, "eval": 0, "skipped": 0}}

    for key in ("a", "b", "c"):
        cache.store(key, build)
    assert sorted(e.key for e in cache.entries()) == ["a", "b", "c"]  # 3 MiB: all fit
    cache.lookup("a")  # used again: now the most recent
    cache.store("d", build)
    assert sorted(e.key for e in cache.entries()) == ["a", "c", "d"]  # b went first


def test_a_cache_hit_records_this_recipes_own_data_paths(tmp_path):
    from runner.data.store import stored_data

    copies = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        copy = tmp_path / name / "train.jsonl"
        shutil.copyfile(DEMO_TRAIN, copy)
        copies.append(copy)
    first, second = (
        stored_data(
            settings_of("demo-uppercase", f"data.train.0.source={copy}"),
            use_cache=True,
            into=tmp_path / "unused",
        )
        for copy in copies
    )
    assert second.hit and second.record["key"] == first.record["key"]  # same rows
    assert second.record["sources"][0]["source"] == str(copies[1])
    assert first.record["sources"][0]["source"] == str(copies[0])
