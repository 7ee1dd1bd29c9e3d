"""A recipe cannot make the runner execute a model's own code: only `--trust-remote-code`
on the command line allows it (docs/security.md).

The model here is a "custom architecture" as hub repositories ship one: `auto_map` in
its config.json names `custom.py`, which imports `custom_helper.py` and writes a marker
file when imported. Every test asserts on that marker: what the user asked for runs,
nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import save_tiny_llama, tiny_recipe, write_recipe

from runner.cli import main

CUSTOM = '''"""A custom architecture: imported, it leaves a marker."""
from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM

from .custom_helper import MARK

Path({marker!r}).write_text(MARK)


class CustomConfig(LlamaConfig):
    model_type = "custom-llama"


class CustomForCausalLM(LlamaForCausalLM):
    config_class = CustomConfig
'''
AUTO_MAP = {"AutoConfig": "custom.CustomConfig", "AutoModelForCausalLM": "custom.CustomForCausalLM"}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny"))


def custom_model(folder: Path, tiny: Path, marker: Path) -> Path:
    """The tiny Llama as a custom-code model whose code writes `marker` when imported."""
    shutil.copytree(tiny, folder)
    (folder / "custom.py").write_text(CUSTOM.format(marker=str(marker)))
    (folder / "custom_helper.py").write_text('MARK = "imported"\n')
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom-llama", architectures=["CustomForCausalLM"], auto_map=AUTO_MAP)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def recipe_for(folder: Path, model: Path, *, trust: bool = True, **training) -> Path:
    recipe = tiny_recipe(model, **training)
    if trust:
        recipe["model"]["trust_remote_code"] = True
    recipe["output_dir"] = str(folder / "run")
    return write_recipe(folder / "r.yaml", recipe)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recipe_cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`recipe ARGS` in `folder`, with transformers' module cache kept in the test's tmp."""
    env = {**os.environ, "HF_MODULES_CACHE": str(folder / "hf-modules")}
    return subprocess.run(
        ["recipe", *args], cwd=folder, capture_output=True, text=True, env=env, timeout=900
    )


def test_lint_warns_at_the_line_naming_the_folder_and_its_code_files(tmp_path, tiny_llama):
    model = custom_model(tmp_path / "model", tiny_llama, tmp_path / "marker")
    path = recipe_for(tmp_path, model)
    result = CliRunner().invoke(main, ["lint", str(path)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stderr.splitlines() if "[trust-remote-code]" in x)
    assert line.startswith(f"{path}:6:3: warning[trust-remote-code]:")
    assert f"custom.py, custom_helper.py from the local folder {model}" in line
    assert "--trust-remote-code" in line
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("command", ["plan", "preview", "run"])
def test_without_the_flag_no_command_runs_the_models_code(tmp_path, tiny_llama, command):
    model = custom_model(tmp_path / "model", tiny_llama, tmp_path / "marker")
    path = recipe_for(tmp_path, model)
    result = CliRunner().invoke(main, [command, str(path)])
    assert not (tmp_path / "marker").exists()
    assert "Traceback" not in result.output
    if command == "plan":  # reads config.json as data and never imports transformers
        assert result.exit_code == 0 and "warning[trust-remote-code]" in result.stderr
        return
    assert result.exit_code == 1
    refusal = result.stderr.splitlines()[-1]
    assert refusal.startswith(f"error: {path}: model.trust_remote_code asks to run")
    assert f"custom.py, custom_helper.py from the local folder {model}" in refusal
    assert "give --trust-remote-code to the command" in refusal
    assert not (tmp_path / "run").exists()


def test_a_hub_model_needs_a_pinned_commit_and_lint_names_its_cached_code(tmp_path, monkeypatch):
    """A hub id's code is whatever the repository holds when it is downloaded: only a
    full commit hash pins it. Files already in the Hugging Face cache are named."""
    repo = tmp_path / "hub" / "models--someone--custom"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    config = {"model_type": "custom-llama", "auto_map": AUTO_MAP, "max_position_embeddings": 256}
    (snapshot / "config.json").write_text(json.dumps(config))
    (snapshot / "custom.py").write_text("from .custom_helper import MARK\n")
    (snapshot / "custom_helper.py").write_text("MARK = 1\n")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    recipe = tiny_recipe(tmp_path, max_length=64)
    recipe["model"] = {"id": "someone/custom", "trust_remote_code": True, "tokenizer": "byte-level"}
    path = write_recipe(tmp_path / "r.yaml", recipe)

    def lint(*sets: str):
        args = [a for s in sets for a in ("--set", s)]
        return CliRunner().invoke(main, ["lint", "--format", "json", str(path), *args])

    pinned = lint(f"model.revision={COMMIT}")
    assert pinned.exit_code == 0, pinned.output
    diagnostics = json.loads(pinned.stdout)["files"][0]["diagnostics"]
    warning = next(d for d in diagnostics if d["rule"] == "trust-remote-code")
    assert (
        f"custom.py, custom_helper.py from the hub model someone/custom at commit {COMMIT}"
        in (warning["message"])
    )
    for sets, why in [
        ((), "model.revision is not set"),
        (("model.revision=main",), "'main' is a branch or tag"),
        (("model.revision=0123abc",), "'0123abc' is a branch or tag"),
    ]:
        result = lint(*sets)
        assert result.exit_code == 1
        errors = [
            d
            for d in json.loads(result.stdout)["files"][0]["diagnostics"]
            if d["severity"] == "error"
        ]
        assert [d["rule"] for d in errors] == ["trust-remote-code-unpinned"]
        assert why in errors[0]["message"] and "full 40-character commit hash" in errors[0]["hint"]
    # code taken from another repository is never pinned by this one's revision
    config["auto_map"] = {"AutoModelForCausalLM": "other/code--custom.CustomForCausalLM"}
    (snapshot / "config.json").write_text(json.dumps(config))
    result = lint(f"model.revision={COMMIT}")
    assert result.exit_code == 1 and "another repository (other/code)" in result.stdout


def test_the_flag_changes_nothing_when_the_recipe_does_not_ask(tmp_path, tiny_llama):
    model = custom_model(tmp_path / "model", tiny_llama, tmp_path / "marker")
    path = recipe_for(tmp_path, model, trust=False)
    dry = CliRunner().invoke(main, ["run", str(path), "--dry-run", "--trust-remote-code"])
    assert dry.exit_code == 0 and "runner.train" in dry.stdout
    assert "--trust-remote-code" not in dry.stdout.split("# resolved recipe")[0]
    # a model transformers does not know loads only with its code: a clear refusal
    result = CliRunner().invoke(main, ["infer", str(model), "--prompt", "x"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{model} (the model) loads only with its own Python code (custom.py, " in result.stderr
    assert "give --trust-remote-code to the command" in result.stderr
    assert not (tmp_path / "marker").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama) -> tuple[Path, Path, Path]:
    """(folder, model, run directory) of a run trained with --trust-remote-code: 4 steps,
    a checkpoint at step 2."""
    folder = tmp_path_factory.mktemp("trusted")
    model = custom_model(folder / "model", tiny_llama, folder / "marker")
    path = recipe_for(folder, model, max_steps=4, save_strategy="steps", save_steps=2)
    done = recipe_cli(folder, "run", str(path), "--trust-remote-code")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return folder, model, folder / "run"


@pytest.mark.slow
def test_with_the_flag_the_run_trains_and_records_each_code_files_sha256(trained):
    folder, model, run = trained
    assert (folder / "marker").read_text() == "imported"
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "succeeded" and record["metrics"]["steps"] == 4
    code = record["remote_code"]
    expected = {name: sha256(model / name) for name in ("custom.py", "custom_helper.py")}
    ((source),) = code["sources"]
    assert source["reference"] == str(model) and source["revision"] is None
    assert source["pinned"] is True and source["files"] == expected
    assert code["imported"] == expected  # what the training process actually imported
    assert "--trust-remote-code" in record["command"]


@pytest.mark.slow
def test_after_training_commands_need_the_flag_and_the_code_the_run_recorded(trained):
    folder, _, run = trained
    (folder / "marker").unlink(missing_ok=True)
    for command in (
        ["infer", str(run), "--prompt", "x"],
        ["merge", str(run)],
        ["eval", str(run)],
        ["export", str(run), "--format", "gguf"],
    ):
        refused = CliRunner().invoke(main, command)
        assert refused.exit_code == 1, command
        assert "model.trust_remote_code asks to run" in refused.stderr
        assert "give --trust-remote-code" in refused.stderr
    assert not (folder / "marker").exists()
    answered = recipe_cli(folder, "infer", str(run), "--prompt", "x", "--trust-remote-code")
    assert answered.returncode == 0, answered.stderr[-2000:]
    assert (folder / "marker").exists()


@pytest.mark.slow
def test_a_changed_code_file_makes_resume_and_the_after_commands_refuse(trained):
    folder, model, run = trained
    for changed in (model / "custom.py", run / "final" / "custom.py"):
        original = changed.read_text()
        changed.write_text(original + "# changed after training\n")
        (folder / "marker").unlink(missing_ok=True)
        try:
            commands = [["infer", str(run), "--prompt", "x", "--trust-remote-code"]]
            if changed.parent == model:
                resume = ["run", str(folder / "r.yaml"), "--resume", "--trust-remote-code"]
                commands.append([*resume, "--set", "training.max_steps=6"])
            for command in commands:
                result = CliRunner().invoke(main, command)
                assert result.exit_code == 1, result.output
                assert "is not the code this run recorded in run.json" in result.stderr
                assert f"custom.py in {changed.parent}" in result.stderr
            assert not (folder / "marker").exists()
        finally:
            changed.write_text(original)
