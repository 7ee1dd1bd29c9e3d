"""The run directory rules, the loss plot and the one-line summary (no training needed)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from runner.run.directory import RunDirectory, RunDirError, this_host
from runner.run.metrics import loss_curves, plot_loss
from runner.run.ownership import claim_run_dir
from runner.run.summary import summary_line


def claim(path: Path, **flags):
    run, lock = claim_run_dir(path, **{"overwrite": False, "resume": False, **flags})
    lock.release()
    return run


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def earlier_run(path: Path) -> RunDirectory:
    run = claim(path)
    run.write_run({"status": "succeeded"})
    (run.path / "checkpoint-3").mkdir()
    (run.path / "checkpoint-3" / "model.safetensors").write_bytes(b"x")
    (run.path / "metrics.jsonl").write_text("{}\n")
    return run


def test_an_empty_or_missing_output_dir_is_created_and_marked(tmp_path):
    run = claim(tmp_path / "new" / "run")
    assert run.path.is_dir() and run.is_run() and run.run_id()


def test_overwrite_replaces_an_earlier_run_and_only_what_the_runner_wrote(tmp_path):
    run = earlier_run(tmp_path / "run")
    first = run.run_id()
    claim(run.path, overwrite=True)
    assert sorted(p.name for p in run.path.iterdir()) == [".recipe-run", ".recipe-run.lock"]
    assert run.run_id() != first  # a new run


@pytest.mark.parametrize("stray", ["run.json", "recipe.resolved.yaml"])
def test_a_folder_with_a_stray_run_file_is_not_a_run_and_nothing_is_deleted(tmp_path, stray):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    (folder / stray).write_text("{}")
    before = checksums(folder)
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunDirError, match="is not a run directory"):
            claim(folder, **flags)
    assert checksums(folder) == before and len(list(folder.iterdir())) == 2


def test_a_run_directory_holding_a_users_file_is_never_overwritten(tmp_path):
    run = earlier_run(tmp_path / "run")
    (run.path / "notes.txt").write_text("mine")
    before = checksums(run.path)
    with pytest.raises(RunDirError, match=r"files the runner did not write \(notes.txt\)"):
        claim(run.path, overwrite=True)
    assert checksums(run.path) == before


def test_overwrite_refuses_the_current_directory_home_and_a_folder_holding_the_recipe(
    tmp_path, monkeypatch
):
    run = earlier_run(tmp_path / "project")
    before = checksums(run.path)
    monkeypatch.chdir(run.path)
    with pytest.raises(RunDirError, match="it is the current directory"):
        claim(Path("."), overwrite=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(run.path))
    with pytest.raises(RunDirError, match="it is your home"):
        claim(run.path, overwrite=True)
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    recipe = run.path / "checkpoint-3" / "model.safetensors"  # stands for a used file
    with pytest.raises(RunDirError, match="which the recipe uses"):
        claim(run.path, overwrite=True, protected=[recipe])
    assert checksums(run.path) == before


HOLD = """
import sys, time
from pathlib import Path
from runner.run.directory import RunDirectory
from runner.run.lock import LockFile, training_byte
from runner.run.ownership import RunLock

run = RunDirectory(Path(sys.argv[1]))
if sys.argv[2] == "runner":
    held = RunLock(run, "s1").acquire()
else:  # a training process of a session whose `recipe run` is gone
    held = LockFile(run.lock_file)
    held.take_byte(training_byte(0))
print("holding", flush=True)
time.sleep(60)
"""


def hold_lock(run: RunDirectory, part: str):
    """Another process holding the run's lock as `recipe run` or as a training process."""
    import subprocess

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run.path), part], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_run_into_a_locked_directory_is_refused_with_the_holder(tmp_path):
    run = earlier_run(tmp_path / "run")
    holder = hold_lock(run, "runner")
    try:
        for flags in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(RunDirError) as refused:
                claim(run.path, **flags)
            message = str(refused.value)
            assert f"is in use by another run session (`recipe run` pid {holder.pid} on " in message
            assert f"on {this_host()}, since 20" in message
        assert (run.path / "checkpoint-3").is_dir()  # nothing deleted under a live run
        assert run.status() == "succeeded"
    finally:
        holder.kill()
        holder.wait()
    claim(run.path, overwrite=True)  # free again once the holder is gone, at once


def test_a_training_process_alone_holds_the_lock_and_is_named(tmp_path):
    run = earlier_run(tmp_path / "run")
    run.update_run(status="running")
    holder = hold_lock(run, "trainer")
    try:
        with pytest.raises(
            RunDirError, match=rf"in use by another run session \(pid {holder.pid} "
        ):
            claim(run.path, resume=True)
        assert run.status() == "running"  # a process of the run lives
    finally:
        holder.kill()
        holder.wait()
    assert run.status() == "stale"  # none does now


def test_resume_needs_a_checkpoint_and_keeps_the_directory(tmp_path):
    run = claim(tmp_path / "run")
    run.write_run({"status": "failed"})
    with pytest.raises(RunDirError, match="no checkpoint to resume from"):
        claim(run.path, resume=True)
    for step in (10, 2):
        (run.path / f"checkpoint-{step}").mkdir()
    assert claim(run.path, resume=True).checkpoints()[-1].name == "checkpoint-10"


def test_a_running_run_whose_process_is_gone_is_stale(tmp_path):
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    run = claim(tmp_path / "run")
    run.write_run({"status": "running", "pid": gone.pid, "host": this_host()})
    assert run.status() == "stale"  # nothing holds its lock
    run.lock_file.unlink()  # a run from before the lock named its processes
    assert run.status() == "stale"
    run.update_run(pid=os.getpid())
    assert run.status() == "running"


def test_run_json_is_strict_json_even_with_a_nan_loss(tmp_path):
    run = claim(tmp_path / "run")
    run.write_run({"metrics": {"final_loss": float("nan"), "x": [float("inf"), 1.0]}})

    def refuse(name):
        raise AssertionError(f"{name} in run.json")

    record = json.loads(run.run_json.read_text(), parse_constant=refuse)
    assert record["metrics"] == {"final_loss": None, "x": [None, 1.0]}


def test_run_json_updates_keep_earlier_fields(tmp_path):
    run = RunDirectory(tmp_path)
    run.update_run(name="x", status="running")
    run.update_run(status="succeeded")
    assert run.read_run() == {"name": "x", "status": "succeeded"}


RECORDS = [
    {"step": 1, "loss": 3.0},
    {"step": 2, "loss": 2.0},
    {"step": 2, "eval_loss": 2.5},
    {"step": 3, "loss": 1.0, "train_runtime": 1.0},
]


def test_loss_plot_has_train_and_eval_curves(tmp_path):
    assert loss_curves(RECORDS) == {"train": [(1, 3.0), (2, 2.0), (3, 1.0)], "eval": [(2, 2.5)]}
    plot_loss(RECORDS, tmp_path / "loss.png", "demo")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_without_matplotlib_the_plot_is_left_out_with_a_warning(tmp_path, monkeypatch, capsys):
    # a machine with the training stack but no matplotlib still records its run
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    plot_loss(RECORDS, tmp_path / "loss.png", "demo")
    assert not (tmp_path / "loss.png").exists()
    assert "loss.png not drawn: matplotlib is not installed" in capsys.readouterr().err


def test_summary_line_says_steps_tokens_time_losses_accuracy_and_where_the_model_is():
    record = {
        "name": "demo",
        "status": "succeeded",
        "metrics": {
            "steps": 10,
            "tokens": 12345,
            "train_seconds": 2.0,
            "tokens_per_second": 6172.5,
            "first_loss": 3.0,
            "final_loss": 1.0,
            "eval_loss": 1.5,
        },
        "exact_match": {"before": {"accuracy": 0.0}, "after": {"accuracy": 0.97}},
        "model_path": "/runs/demo/final",
        "rows": {"read": 64, "train": 48, "eval": 0, "dropped": 16, "cut": 0},
    }
    assert summary_line(record) == (
        "demo succeeded; 10 steps; 48 rows trained (16 dropped); 12,345 tokens; 2.0 s; "
        "6,172 tokens/s; "
        "train loss 3.0000 -> 1.0000; eval loss 1.5000; held-out exact match 0% -> 97%; "
        "model in /runs/demo/final"
    )
