"""The other ways a copied recipe (or a copied run directory) could make the runner execute
code, each shut (docs/security.md lists them): chat templates render in Jinja's sandbox,
data sources with loading scripts are refused, files in the working directory are never
imported in place of a library, and checkpoints load as data only. Each hostile input
tries to write a marker file; no marker may appear."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DEMO_TRAIN, tiny_recipe, write_recipe

from runner.cli import main

REACH = "cycler.__init__.__globals__.os.popen('touch {marker}').read()"


class Payload:
    """Pickled, it runs `touch marker` when unpickled (what a hostile checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_transformers_renders_chat_templates_in_a_sandbox(tmp_path):
    from jinja2.exceptions import SecurityError

    from runner.expand.tokenizer import build_byte_level_tokenizer

    marker = tmp_path / "marker"
    tokenizer = build_byte_level_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{{ " + REACH.format(marker=marker) + " }}{% endfor %}"
    )
    with pytest.raises(SecurityError):
        tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert not marker.exists()


def test_a_template_whose_reach_lint_cannot_see_is_refused_by_the_sandbox(tmp_path, tiny_model_dir):
    marker = tmp_path / "marker"
    # the names are computed, so lint's template-unsafe cannot see them
    reach = (
        "{% set i = '_' ~ '_init__' %}{% set g = '_' ~ '_globals__' %}"
        "{{ cycler[i][g]['os'].popen('touch " + str(marker) + "') }}"
    )
    (tmp_path / "hidden.jinja").write_text(
        "{% for m in messages %}{{ m['content'] }}" + reach + "{% endfor %}"
    )
    recipe = tiny_recipe(tiny_model_dir)
    recipe["data"]["template"] = "hidden.jinja"
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert CliRunner().invoke(main, ["lint", str(path)]).exit_code == 0
    result = CliRunner().invoke(main, ["preview", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: a chat template reached for Python internals" in result.stderr
    assert not marker.exists()


def test_a_dataset_with_a_loading_script_is_refused_and_its_script_never_runs(
    tmp_path, tiny_model_dir
):
    marker = tmp_path / "marker"
    folder = tmp_path / "mydata"
    folder.mkdir()
    shutil.copy(DEMO_TRAIN, folder / "train.jsonl")
    (folder / "mydata.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    recipe = tiny_recipe(tiny_model_dir)
    recipe["data"]["train"][0]["source"] = "mydata"
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = CliRunner().invoke(main, ["preview", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        "mydata: cannot load" in result.stderr
        and "scripts are no longer supported" in result.stderr
    )
    assert not marker.exists()


@pytest.mark.slow
def test_python_files_in_the_working_directory_are_never_imported_by_training(
    tmp_path, tiny_model_dir
):
    """`python -m` puts the current directory first on sys.path: a `torch.py` beside a
    copied recipe would replace torch in the training processes, were it not for
    PYTHONSAFEPATH in their environment (runner.expand.launch.launch_env)."""
    for name in ("torch", "peft", "accelerate", "trl"):
        (tmp_path / f"{name}.py").write_text(f"open({str(tmp_path / name)!r} + '.ran', 'w')\n")
    recipe = tiny_recipe(tiny_model_dir, max_steps=2, eval_strategy="no")
    recipe["data"].pop("eval")
    path = write_recipe(tmp_path / "r.yaml", recipe)
    done = subprocess.run(
        ["recipe", "run", str(path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(tmp_path.glob("*.ran"))


@pytest.mark.slow
def test_resume_loads_deepspeed_checkpoints_as_data_only(tmp_path, tiny_model_dir):
    """DeepSpeed asks torch.load for a full pickle; the training process makes it
    weights-only (runner.run.safe_load): a DeepSpeed run still resumes, and a checkpoint
    whose optimizer state holds code is refused without running it."""
    import torch

    recipe = tiny_recipe(tiny_model_dir, max_steps=4, save_strategy="steps", save_steps=2,
                         eval_strategy="no", per_device_train_batch_size=4)  # fmt: skip
    recipe["data"].pop("eval")
    recipe["data"]["train"][0]["rows"] = 32
    recipe["launch"] = {"strategy": "deepspeed", "deepspeed": {"zero_stage": 2}}
    path = write_recipe(tmp_path / "r.yaml", recipe)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["recipe", "run", str(path), *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)  # fmt: skip

    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    (state,) = (tmp_path / "run" / "checkpoint-4").glob("global_step4/*optim_states.pt")
    kept = state.read_bytes()
    marker = tmp_path / "marker"
    torch.save({"optimizer_state_dict": Payload(marker)}, state)
    refused = run("--resume", "--set", "training.max_steps=6")
    assert refused.returncode == 1 and not marker.exists()
    assert "holds Python objects, not only weights (exec)" in refused.stderr
    assert "checkpoint-4" in refused.stderr
    state.write_bytes(kept)
    resumed = run("--resume", "--set", "training.max_steps=6")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoint-4" in resumed.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]["steps"] == 6


def test_a_sharded_checkpoint_index_that_holds_code_is_refused_unread(tmp_path, monkeypatch):
    """FSDP's sharded checkpoints keep their index as a plain pickle (torch's distributed
    checkpoint `.metadata`); it is read with an unpickler that rebuilds only an index."""
    import torch
    import torch.distributed.checkpoint as dcp

    from runner.run.safe_load import CheckpointNotData, check_sharded_metadata, load_as_data

    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0")  # restored after the test
    checkpoint = tmp_path / "checkpoint-2" / "pytorch_model_fsdp_0"
    state = {"w": torch.ones(3, 4, dtype=torch.bfloat16), "step": 2, "betas": (0.9, 0.99)}
    dcp.save(state, checkpoint_id=checkpoint)
    check_sharded_metadata(checkpoint / ".metadata")  # the real index is data
    marker = tmp_path / "marker"
    (checkpoint / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointNotData, match="holds Python objects, not only weights"):
        load_as_data(tmp_path / "checkpoint-2")
    assert not marker.exists()
    assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1"  # every torch.load from here on
