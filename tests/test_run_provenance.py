"""What makes a run stand alone and say what it was made with: the template copy read by
the after-training commands, run.json's runner record, the eval data check, the extras
lint rule, the quiet library logs, and `recipe new`'s rewritten description."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner
from conftest import write_recipe
from ruamel.yaml import YAML

from runner import TEMPLATES_DIR, __version__
from runner.after.evaluate import data_changes
from runner.after.prompts import prompt_format
from runner.cli import main
from runner.data.templates import render_text_prompt
from runner.recipe.template import Template
from runner.run.directory import RunDirectory
from runner.run.provenance import lock_differences, read_lock, runner_record
from runner.run.template_copy import (
    run_chat_template,
    run_template,
    save_chat_template,
    save_text_template,
)


def test_a_text_template_is_copied_into_the_run_with_its_hash(tmp_path: Path) -> None:
    record = save_text_template(tmp_path, Template("alpaca"))
    copy = tmp_path / "template" / "alpaca.json"
    assert copy.read_bytes() == (TEMPLATES_DIR / "alpaca.json").read_bytes()
    assert record["kind"] == "alpaca" and record["file"] == "template/alpaca.json"
    assert record["sha256"].startswith("sha256:") and len(record["sha256"]) == 7 + 64


def test_a_runs_prompts_are_rendered_from_its_own_copy_not_the_shipped_file(tmp_path) -> None:
    save_text_template(tmp_path, Template("alpaca"))
    copy = tmp_path / "template" / "alpaca.json"
    strings = json.loads(copy.read_text())
    strings["prompt_no_input"] = "RUN COPY: {instruction}\n"
    copy.write_text(json.dumps(strings))
    template = run_template(tmp_path, Template("alpaca"))
    assert template.text_file == copy
    assert render_text_prompt(template, "Say hi.") == "RUN COPY: Say hi.\n"
    assert render_text_prompt("alpaca", "Say hi.") != "RUN COPY: Say hi.\n"  # shipped one


def test_prompt_format_of_a_run_reads_the_copy(tmp_path: Path) -> None:
    from runner.recipe.settings import Settings

    save_text_template(tmp_path, Template("plain"))
    settings = Settings({"data": {"template": "plain", "template_variables": {}}})
    fmt = prompt_format(settings, tokenizer=None, run_path=tmp_path)
    assert fmt.template.text_file == tmp_path / "template" / "plain.json"
    assert (
        prompt_format(settings, tokenizer=None).template.text_file == TEMPLATES_DIR / "plain.json"
    )


def test_a_run_without_a_copy_falls_back_to_the_shipped_template(tmp_path: Path) -> None:
    assert run_template(tmp_path, Template("alpaca")) == Template("alpaca")


def test_the_chat_template_training_used_is_saved_and_recorded(tmp_path: Path) -> None:
    RunDirectory(tmp_path).write_run({"name": "x"})
    tokenizer = SimpleNamespace(chat_template="{{ messages[0]['content'] }}")
    record = save_chat_template(tmp_path, tokenizer, Template("chat"))
    assert run_chat_template(tmp_path) == tokenizer.chat_template
    assert json.loads((tmp_path / "run.json").read_text())["template"] == record
    assert record["file"] == "template/chat_template.jinja"
    assert save_chat_template(tmp_path, tokenizer, Template("plain")) is None


def test_run_json_names_the_runner_version_and_the_lock(tmp_path: Path) -> None:
    record = runner_record()
    assert record["version"] == __version__
    assert record["lock_sha256"].startswith("sha256:")
    assert isinstance(record["differs_from_lock"], dict)
    assert "torch" in read_lock()


def test_an_installed_version_other_than_the_locked_one_is_listed() -> None:
    differs = lock_differences({"click": "0.0.1", "not-installed-anywhere": "1.0"})
    assert list(differs) == ["click"]
    assert differs["click"].endswith("(lock: 0.0.1)")


def _run_with_sources(path: Path, sources: list[dict]) -> Path:
    RunDirectory(path).write_run({"data": {"sources": sources}})
    return path


def test_eval_says_when_a_source_changed_since_training(tmp_path: Path) -> None:
    then = {"role": "eval", "source": "/d/eval.jsonl", "sha256": "a" * 64, "rows_available": 200}
    run = _run_with_sources(tmp_path, [then])
    assert data_changes(run, [dict(then)]) == []
    notes = data_changes(run, [{**then, "sha256": "b" * 64}])
    assert len(notes) == 1 and "/d/eval.jsonl changed since training" in notes[0]
    assert data_changes(run, [{**then, "rows_available": 201}])


def test_a_hub_source_is_compared_by_its_datasets_fingerprint(tmp_path: Path) -> None:
    then = {"role": "train", "source": "org/data", "fingerprint": "abc", "rows_available": 9}
    run = _run_with_sources(tmp_path, [then])
    assert data_changes(run, [dict(then)]) == []
    assert data_changes(run, [{**then, "fingerprint": "def"}])


def test_lint_names_the_extra_a_recipe_needs_when_its_package_is_missing(
    tmp_path: Path, monkeypatch
) -> None:
    import runner.lint.rules.extras as extras

    monkeypatch.setattr(extras, "installed", lambda module: module != "deepspeed")
    recipe = write_recipe(
        tmp_path / "ds.yaml",
        {
            "schema_version": 1,
            "name": "ds",
            "model": {"id": "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "dtype": "bfloat16"},
            "method": "full",
            "data": {"train": [{"source": "tatsu-lab/alpaca", "format": "alpaca"}]},
            "training": {"learning_rate": 1.0e-5, "bf16": True},
            "launch": {"num_processes": 2, "strategy": "deepspeed"},
            "output_dir": "out",
        },
    )
    result = CliRunner().invoke(main, ["lint", str(recipe)])
    assert result.exit_code == 0, result.output  # a warning: it may run elsewhere
    assert "warning[extra-not-installed]" in result.stderr
    assert "pip install 'recipe-runner[deepspeed]'" in result.stderr


def test_library_warnings_go_to_the_log_file_and_errors_to_the_screen(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "train.log"
    code = f"""
import logging, warnings
from pathlib import Path
from runner.logs import quiet_libraries
quiet_libraries(Path({str(log)!r}), cpu=True)
logging.getLogger("bitsandbytes.backends.cpu.ops").warning(
    "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'")
warnings.warn("a library's FutureWarning", FutureWarning)
logging.getLogger("transformers.modeling_utils").warning("transformers advice")
logging.getLogger("some.library").error("a real error")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    screen = done.stdout + done.stderr
    assert "kernels-community" not in screen and "FutureWarning" not in screen
    assert "transformers advice" not in screen
    assert "a real error" in screen
    text = log.read_text()
    assert "kernels-community" in text and "FutureWarning" in text
    assert "transformers advice" in text and "a real error" in text


def test_new_with_your_data_rewrites_the_description_and_flags_the_old_comments(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    result = CliRunner().invoke(
        main, ["new", "mine.yaml", "--from", "llama32-1b-full-3090", "--data", "my.jsonl"]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "mine.yaml").read_text()
    description = YAML(typ="safe").load(text)["description"]
    assert "Dolly" not in description
    assert description == (
        "Full fine-tune of meta-llama/Llama-3.2-1B-Instruct on my.jsonl (from llama32-1b-full-3090)"
    )
    assert "# Adapted by `recipe new` from llama32-1b-full-3090 (data my.jsonl);" in text
    assert text.splitlines()[0].startswith("# yaml-language-server: $schema=")


def test_new_without_new_data_or_model_keeps_the_description(tmp_path: Path) -> None:
    dest = tmp_path / "demo.yaml"
    result = CliRunner().invoke(main, ["new", str(dest), "--from", "demo-uppercase"])
    assert result.exit_code == 0, result.output
    data = YAML(typ="safe").load(dest.read_text())
    assert data["description"] == "A tiny Llama learns to uppercase words, offline on any CPU"
    assert "Adapted by" not in dest.read_text()
    assert Path(data["data"]["train"][0]["source"]).is_absolute()  # shipped data: absolute
