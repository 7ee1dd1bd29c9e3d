"""The run directory rules, the loss plot and the one-line summary (no training needed)."""

from __future__ import annotations

import pytest

from runner.run.directory import RunDirectory, RunDirError, prepare_run_dir
from runner.run.metrics import loss_curves, plot_loss
from runner.run.record import summary_line


def test_an_empty_or_missing_output_dir_is_created(tmp_path):
    run = prepare_run_dir(tmp_path / "new" / "run", overwrite=False, resume=False)
    assert run.path.is_dir()


def test_overwrite_replaces_an_earlier_run(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    run.write_run({"status": "succeeded"})
    (run.path / "checkpoint-3").mkdir()
    prepare_run_dir(run.path, overwrite=True, resume=False)
    assert run.path.is_dir() and not any(run.path.iterdir())


def test_resume_needs_a_checkpoint_and_keeps_the_directory(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    run.write_run({"status": "failed"})
    with pytest.raises(RunDirError, match="no checkpoint to resume from"):
        prepare_run_dir(run.path, overwrite=False, resume=True)
    for step in (10, 2):
        (run.path / f"checkpoint-{step}").mkdir()
    assert (
        prepare_run_dir(run.path, overwrite=False, resume=True).checkpoints()[-1].name
        == "checkpoint-10"
    )


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
    }
    assert summary_line(record) == (
        "demo succeeded; 10 steps; 12,345 tokens; 2.0 s; 6,172 tokens/s; "
        "train loss 3.0000 -> 1.0000; eval loss 1.5000; held-out exact match 0% -> 97%; "
        "model in /runs/demo/final"
    )
