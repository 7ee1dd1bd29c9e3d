"""Runs that are killed, interrupted, diverge or collide, through the real `recipe run`:
nothing is lost, the record tells the truth, and `--resume` continues from the newest
complete checkpoint to the same result as an uninterrupted run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import logged_step, session_processes, tiny_recipe, wait_for, write_recipe

pytestmark = pytest.mark.slow

STEPS = 40


def long_recipe(model_dir: Path, **training) -> dict:
    """The tiny model for STEPS steps, a checkpoint every 10, a log every step."""
    recipe = tiny_recipe(
        model_dir,
        **{
            "max_steps": STEPS,
            "save_strategy": "steps",
            "save_steps": 10,
            "eval_strategy": "no",
            **training,
        },
    )
    recipe["data"].pop("eval")
    return recipe


def start(path: Path, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    """`recipe run` in a process group of its own, as a shell starts a command."""
    return subprocess.Popen(
        ["recipe", "run", str(path), *args],
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        **popen,
    )


def start_logged(path: Path, log: Path, *args: str, **popen) -> subprocess.Popen:
    """`recipe run` as `start` does, its output into `log`: a long run fills a pipe that
    nobody reads until it ends."""
    with open(log, "w") as out:
        return subprocess.Popen(
            ["recipe", "run", str(path), *args],
            cwd=path.parent,
            stdout=out,
            stderr=out,
            start_new_session=True,
            **popen,
        )


def run_to_end(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["recipe", "run", str(path), *args], cwd=path.parent, capture_output=True, text=True
    )


def checkpoints_of_sessions(run: Path, sessions: list[dict]) -> None:
    """Every checkpoint in the folder was written by a session run.json lists: its step
    lies between where one started and where it stopped."""
    for checkpoint in run.glob("*checkpoint-*"):
        step = int(checkpoint.name.rsplit("-", 1)[1])
        assert any(s["from_step"] < step <= s["step"] for s in sessions), checkpoint.name


def losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "final" / "model.safetensors"))


def strict(path: Path) -> dict:
    def refuse(name):
        raise AssertionError(f"{name} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir) -> Path:
    """The same recipe trained without interruption."""
    folder = tmp_path_factory.mktemp("reference")
    path = write_recipe(folder / "r.yaml", long_recipe(tiny_model_dir))
    done = run_to_end(path)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder / "run"


def test_a_run_killed_mid_training_resumes_to_the_same_losses_and_weights(
    tmp_path, tiny_model_dir, reference
):
    import torch

    path = write_recipe(tmp_path / "r.yaml", long_recipe(tiny_model_dir))
    process = start(path)
    run = tmp_path / "run"
    wait_for(lambda: logged_step(run) >= 25)
    kill_everything(process, run)
    assert strict(run / "run.json")["status"] == "running"  # as the kill left it ...
    from runner.run.directory import RunDirectory

    assert RunDirectory(run).status() == "stale"  # ... but shown as what it is

    resumed = run_to_end(path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = strict(run / "run.json")
    killed, resumed_session = record["sessions"]
    point = resumed_session["from_step"]
    assert killed["status"] == "stale" and killed["last_checkpoint"] == f"checkpoint-{point}"
    assert record["status"] == "succeeded" and point in (20, 30)
    assert f"resuming from checkpoint-{point}" in resumed.stderr
    assert record["metrics"]["steps"] == STEPS
    want, got = losses(reference), losses(run)
    assert sorted(got) == list(range(1, STEPS + 1))  # each step logged once, whole run
    assert all(got[s] == pytest.approx(want[s], abs=1e-6) for s in range(point + 1, STEPS + 1))
    expected = strict(reference / "run.json")["metrics"]
    assert record["metrics"]["train_loss_mean"] == pytest.approx(
        expected["train_loss_mean"], rel=1e-3
    )
    ref, out = weights(reference), weights(run)
    assert all(torch.equal(ref[k], out[k]) for k in ref)


def test_a_killed_recipe_run_takes_its_training_with_it_and_a_resume_at_once_continues(
    tmp_path, tiny_model_dir
):
    steps = 120  # the kill comes well before the end, however fast the machine
    path = write_recipe(tmp_path / "r.yaml", long_recipe(tiny_model_dir, max_steps=steps))
    first = start_logged(path, tmp_path / "first.log")
    run = tmp_path / "run"
    wait_for(lambda: logged_step(run) >= 15)
    os.killpg(first.pid, signal.SIGKILL)  # what kill -9, the OOM killer or a lost session do
    first.wait()
    resumed = start_logged(path, tmp_path / "resumed.log", "--resume")  # at once
    session = strict(run / "run.json")["sessions"][0]["id"]
    wait_for(lambda: not session_processes(session), timeout=10)  # no orphan trains on

    assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()[-2000:]
    record = strict(run / "run.json")
    killed, second = record["sessions"]
    assert killed["status"] == "interrupted"
    assert killed["reason"] == f"`recipe run` (pid {first.pid}) ended"
    stop = killed["step"]  # the step it was in: saved there before stopping
    assert 15 <= stop < steps and killed["last_checkpoint"] == f"checkpoint-{stop}"
    assert second["from_checkpoint"] == f"checkpoint-{stop}" and second["from_step"] == stop
    assert f"resuming from checkpoint-{stop}" in (tmp_path / "resumed.log").read_text()
    assert second["status"] == "succeeded" and second["step"] == steps
    assert record["status"] == "succeeded" and record["stopped"] is None  # one true record
    checkpoints_of_sessions(run, record["sessions"])
    assert sorted(losses(run)) == list(range(1, steps + 1))  # each step logged once


def test_a_process_of_an_older_session_writes_nothing_more_and_exits(tmp_path, tiny_model_dir):
    from runner.run.directory import RunDirectory

    path = write_recipe(tmp_path / "r.yaml", long_recipe(tiny_model_dir))
    first = start(path)
    run = RunDirectory(tmp_path / "run")
    wait_for(lambda: logged_step(run.path) >= 3)
    # a newer session, as one started where the lock cannot reach (another machine
    # writing to a shared folder) would record itself
    record = run.read_run()
    newer = {"id": "newer", "started_at": "now", "from_step": 0, "status": "running"}
    run.write_run({**record, "sessions": [*record["sessions"], newer]})
    step = logged_step(run.path)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 1
    assert "another session of this run has started" in stderr
    assert logged_step(run.path) <= step + 1  # at most the step it was in
    saved = [int(c.name.split("-")[1]) for c in run.path.glob("checkpoint-*")]
    assert all(s <= step + 1 for s in saved)  # no checkpoint after it either
    assert run.read_run()["sessions"][-1] == newer  # the newer session's record stands


def test_a_closed_terminal_stops_the_run_after_a_checkpoint_and_nohup_keeps_it_going(
    tmp_path, tiny_model_dir
):
    recipe = long_recipe(tiny_model_dir, max_steps=5000, save_steps=1000)  # stopped early
    path = write_recipe(tmp_path / "r.yaml", recipe)
    hung_up = start_logged(path, tmp_path / "first.log")
    run = tmp_path / "run"
    wait_for(lambda: logged_step(run) >= 3)
    os.killpg(hung_up.pid, signal.SIGHUP)  # what closing the terminal sends
    assert hung_up.wait(timeout=300) == 130
    record = strict(run / "run.json")
    assert record["status"] == "interrupted"
    assert record["stopped"]["reason"] == "the terminal closed (SIGHUP to `recipe run`)"
    stop = record["stopped"]["step"]
    assert (run / f"checkpoint-{stop}" / "recipe-progress.json").is_file()

    ignore_hangup = lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)  # noqa: E731 (nohup)
    end = f"training.max_steps={stop + 100}"  # safe to change on resume
    kept = start_logged(
        path, tmp_path / "kept.log", "--resume", "--set", end, preexec_fn=ignore_hangup
    )
    wait_for(lambda: logged_step(run) > stop)  # training again
    os.killpg(kept.pid, signal.SIGHUP)
    assert kept.wait(timeout=600) == 0, (tmp_path / "kept.log").read_text()[-2000:]
    record = strict(run / "run.json")
    assert record["status"] == "succeeded" and record["metrics"]["steps"] == stop + 100


def kill_everything(process: subprocess.Popen, run: Path) -> None:
    """SIGKILL `recipe run`, the launcher and the training processes (whose command
    lines name the run directory), as a crash or `kill -9` would."""
    process.kill()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(run).encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
    process.wait()
    time.sleep(0.5)  # let the kernel reap and release the lock


SLOW_SAVE = """
import os, time, pathlib
import transformers

_save = transformers.Trainer._save_rng_state

def slow_save(self, output_dir):
    if output_dir.endswith("checkpoint-30"):
        pathlib.Path(os.environ["SAVE_STARTED"]).write_text(output_dir)
        time.sleep(120)  # the window in which the run is killed
    return _save(self, output_dir)

transformers.Trainer._save_rng_state = slow_save
"""


def test_a_kill_inside_a_checkpoint_save_resumes_from_the_previous_complete_one(
    tmp_path, tiny_model_dir, reference
):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SLOW_SAVE)
    started = tmp_path / "save-started"
    path = write_recipe(tmp_path / "r.yaml", long_recipe(tiny_model_dir))
    env = {"PYTHONPATH": f"{shim}:{os.environ.get('PYTHONPATH', '')}", "SAVE_STARTED": str(started)}
    process = start(path, env=env)
    run = tmp_path / "run"
    wait_for(started.is_file)
    kill_everything(process, run)
    assert (run / "checkpoint-30").is_dir()  # half written: model, no trainer state

    resumed = run_to_end(path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "checkpoint-30 was not completely written" in resumed.stderr
    assert "resuming from checkpoint-20" in resumed.stderr
    assert (run / "incomplete-checkpoint-30").is_dir() and (run / "checkpoint-30").is_dir()
    want, got = losses(reference), losses(run)
    assert all(got[s] == pytest.approx(want[s], abs=1e-6) for s in range(21, STEPS + 1))


def test_ctrl_c_saves_a_checkpoint_marks_the_run_interrupted_and_resume_finishes(
    tmp_path, tiny_model_dir
):
    path = write_recipe(tmp_path / "r.yaml", long_recipe(tiny_model_dir, save_steps=1000))
    process = start(path)
    run = tmp_path / "run"
    wait_for(lambda: logged_step(run) >= 15)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    record = strict(run / "run.json")
    step = record["stopped"]["step"]
    assert record["status"] == "interrupted" and 15 <= step < STEPS
    assert (run / f"checkpoint-{step}" / "recipe-progress.json").is_file()
    assert f"continue it with: recipe run {path} --resume" in stderr

    resumed = run_to_end(path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert strict(run / "run.json")["status"] == "succeeded"
    assert (run / "final" / "model.safetensors").is_file()


def test_a_learning_rate_that_diverges_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path, tiny_model_dir
):
    from transformers import AutoModelForCausalLM

    path = write_recipe(
        tmp_path / "r.yaml", long_recipe(tiny_model_dir, learning_rate=1.0e3, save_steps=1)
    )
    done = run_to_end(path)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "diverged at step" in done.stderr
    run = tmp_path / "run"
    record = strict(run / "run.json")  # strict JSON, whatever the losses were
    assert record["status"] == "diverged"
    assert record["stopped"]["step"] <= 10  # within a few steps, not at the end
    assert any("learning_rate 1000" in cause for cause in record["stopped"]["likely_causes"])
    assert not (run / "final").exists()
    good = Path(record["stopped"]["last_good_checkpoint"])
    assert good.is_dir() and int(good.name.split("-")[1]) < record["stopped"]["step"]
    model = AutoModelForCausalLM.from_pretrained(good)
    assert all(p.isfinite().all() for p in model.parameters())


def test_a_second_run_into_a_busy_directory_is_refused_naming_the_holder(tmp_path, tiny_model_dir):
    # long enough to be alive through the three refusals, however loaded the machine
    path = write_recipe(tmp_path / "r.yaml", long_recipe(tiny_model_dir, max_steps=5000))
    with open(tmp_path / "first.log", "w") as log:  # a pipe nobody reads would fill up
        first = subprocess.Popen(
            ["recipe", "run", str(path)], cwd=tmp_path, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    run = tmp_path / "run"
    wait_for(lambda: logged_step(run) >= 5)
    for flags in (["--overwrite"], ["--resume"], []):
        second = run_to_end(path, *flags)
        assert second.returncode == 1
        assert "is in use by another run session (" in second.stderr  # the holder named:
        assert f"`recipe run` pid {first.pid}" in second.stderr  # pid,
        assert f" on {socket.gethostname()}, " in second.stderr  # host,
        assert re.search(r"since \d{4}-\d\d-\d\dT\d\d:\d\d", second.stderr)  # since when
    first.send_signal(signal.SIGINT)  # the first run was untouched: it stops as asked
    assert first.wait(timeout=300) == 130
    assert strict(run / "run.json")["status"] == "interrupted"
    assert len(strict(run / "run.json")["sessions"]) == 1  # no refused run left a trace
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # one writer


def test_resume_with_a_different_recipe_is_refused_naming_the_keys(tmp_path, tiny_model_dir):
    path = write_recipe(tmp_path / "r.yaml", long_recipe(tiny_model_dir, max_steps=10))
    assert run_to_end(path).returncode == 0
    changed = run_to_end(path, "--resume", "--set", "training.learning_rate=0.1")
    assert changed.returncode == 1
    assert "these keys differ: training.learning_rate" in changed.stderr
    longer = run_to_end(path, "--resume", "--set", "training.max_steps=20")
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert strict(tmp_path / "run" / "run.json")["metrics"]["steps"] == 20
