"""Every machine of a run takes the same steps through `recipe run` (check, place,
prepare the data, write the launch files, launch, report); what a machine other than 0
does differently is only what it does not own: its launch files go to
`<run>/.recipe-node-<rank>/`, it writes no run.json, and it reports as `machine N of M`.

The training itself is replaced by a stand-in that reads what the training processes
would read and succeeds (tests/test_scale_out.py trains two machines for real)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_recipe, write_recipe

import runner.cli.run_cmd as run_cmd
from runner.cli import main


@pytest.fixture
def launched(monkeypatch, tmp_path) -> list[dict]:
    """Replace the training with a stand-in that notes what it was started on (its
    argv, its launch home's files and prepared data) and succeeds as training would."""
    seen: list[dict] = []

    def train_under(argv, home, session, lock):
        pointer = json.loads((home.path / "prepared.json").read_text())
        stored = json.loads((Path(pointer["path"]) / "prepared.json").read_text())
        seen.append(
            {
                "argv": argv,
                "home": home.path,
                "files": sorted(p.name for p in home.path.iterdir()),
                "pointer": pointer,
                "rows": stored["rows"],
            }
        )
        if home.run_json.is_file():  # the owner's record, as runner.train leaves it
            home.update_run(status="succeeded")
        return 0, 0

    monkeypatch.setattr(run_cmd, "train_under", train_under)
    monkeypatch.chdir(tmp_path)  # output_dir is relative to where `recipe run` starts
    monkeypatch.setenv("RECIPE_CACHE_DIR", str(tmp_path / "cache"))
    return seen


def two_machines(model_dir: Path) -> dict:
    recipe = tiny_recipe(model_dir)
    recipe["launch"] = {
        "num_processes": 2,
        "strategy": "ddp",
        "num_machines": 2,
        "main_process_ip": "127.0.0.1",
        "main_process_port": 29555,
    }
    return recipe


def recipe_run(path: Path, *args: str):
    return CliRunner().invoke(main, ["run", str(path), *args], catch_exceptions=False)


def rows_said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rows: ")]


def test_every_machine_prepares_the_same_data_as_a_one_machine_run(
    tmp_path, tiny_model_dir, launched
):
    path = write_recipe(tmp_path / "r.yaml", two_machines(tiny_model_dir))
    other = recipe_run(path, "--set", "launch.machine_rank=1")
    first = recipe_run(path, "--set", "launch.machine_rank=0")
    alone = write_recipe(
        tmp_path / "alone.yaml", {**tiny_recipe(tiny_model_dir), "output_dir": "one"}
    )
    single = recipe_run(alone)
    assert other.exit_code == first.exit_code == single.exit_code == 0, other.output

    node, owner, one = launched
    # the same data, prepared by the same step: one cache entry, the same rows
    assert node["pointer"]["key"] == owner["pointer"]["key"] == one["pointer"]["key"]
    assert node["pointer"]["path"] == owner["pointer"]["path"] == one["pointer"]["path"]
    assert node["rows"] == owner["rows"] == one["rows"]
    assert rows_said(other.stderr) == rows_said(first.stderr) == rows_said(single.stderr)
    assert len(rows_said(other.stderr)) == 1
    key = node["pointer"]["key"]
    assert "data: prepared in" in other.stderr  # the first machine to ask builds it
    assert f"data cache: hit (key {key[:12]})" in first.stderr  # the next finds it

    run_dir = tmp_path / "run"
    assert node["home"] == run_dir / ".recipe-node-1" and owner["home"] == run_dir
    # machine 1 writes what its processes read, and nothing of the run's own
    assert node["files"] == [
        ".recipe-run.lock", "accelerate.yaml", "prepared.json", "recipe.resolved.yaml"
    ]  # fmt: skip
    assert {"run.json", "recipe.yaml", "accelerate.yaml", "prepared.json"} <= set(owner["files"])
    assert f"-m runner.train {run_dir / '.recipe-node-1'}" in " ".join(node["argv"])
    assert "machine 1 of 2: training; $ " in other.stderr
    assert other.stdout.strip() == (
        f"machine 1 of 2: done; machine 0 writes the run's record and model in {run_dir}"
    )
    assert f"training in {run_dir}\n$ " in first.stderr
    assert json.loads((run_dir / "run.json").read_text())["status"] == "succeeded"


def test_without_the_cache_each_machine_keeps_the_data_in_its_own_launch_home(
    tmp_path, tiny_model_dir, launched
):
    path = write_recipe(tmp_path / "r.yaml", two_machines(tiny_model_dir))
    other = recipe_run(path, "--no-cache", "--set", "launch.machine_rank=1")
    first = recipe_run(path, "--no-cache", "--set", "launch.machine_rank=0")
    assert other.exit_code == first.exit_code == 0, other.output + first.output

    node, owner = launched
    run_dir = tmp_path / "run"
    assert node["pointer"]["path"] == str(run_dir / ".recipe-node-1" / "prepared")
    assert owner["pointer"]["path"] == str(run_dir / "prepared")
    assert node["pointer"]["cache"] == owner["pointer"]["cache"] == "off"
    assert node["rows"] == owner["rows"]
    assert "data: prepared in" in other.stderr and "(into the run directory)" in other.stderr
    assert rows_said(other.stderr) == rows_said(first.stderr)


def test_a_machine_other_than_0_resumes_only_from_a_checkpoint_the_run_holds(
    tmp_path, tiny_model_dir, launched
):
    path = write_recipe(tmp_path / "r.yaml", two_machines(tiny_model_dir))
    result = CliRunner().invoke(
        main, ["run", str(path), "--resume", "--set", "launch.machine_rank=1"]
    )
    assert result.exit_code == 1
    assert f"{tmp_path / 'run'}: no complete checkpoint to resume from" in result.stderr
    assert launched == []  # nothing started
    assert not (tmp_path / "run" / "run.json").exists()
