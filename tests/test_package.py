"""The runner as a real package: a wheel built from this source, installed (not editable)
into a fresh virtual environment, used from an empty folder through the real CLI.

The fresh environment shares this test environment's installed libraries through a
`.pth` line (so torch is not installed again) but not its editable recipe-runner: the
runner it imports is the wheel's, with the recipes, schema and templates inside it.
One demo run (5 steps) then answers `recipe infer` identically from a copy of its run
directory with the installed package's templates moved away, and `recipe eval` says
when the eval data changed since training.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

SOURCE = ("pyproject.toml", "README.md", "runner", "recipes", "schemas", "templates")


def sh(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(the fresh venv, the environment that puts its `recipe` first on PATH)."""
    root = tmp_path_factory.mktemp("package")
    # Build from a copy, so the shared checkout gets no build/ or *.egg-info.
    source = root / "source"
    source.mkdir()
    for name in SOURCE:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    dist = root / "dist"
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = [sys.executable, "-m", "pip"]
    sh([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
       root, base_env)  # fmt: skip
    wheel = next(dist.glob("recipe_runner-*.whl"))

    venv = root / "venv"
    sh([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, base_env)
    python = venv / "bin" / "python"
    purelib = sh([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                 root, base_env).stdout.strip()  # fmt: skip
    shared = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "_shared_test_libraries.pth").write_text(shared + "\n")
    sh([*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel)], root, base_env)

    env = {
        **base_env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{base_env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return venv, env


def package_dir(venv: Path, env: dict[str, str]) -> Path:
    done = sh([str(venv / "bin" / "python"), "-c", "import runner; print(runner.__file__)"],
              venv, env)  # fmt: skip
    return Path(done.stdout.strip()).parent


def test_the_wheel_carries_its_data_and_is_what_the_fresh_venv_imports(installed, tmp_path):
    venv, env = installed
    package = package_dir(venv, env)
    assert package.is_relative_to(venv), package  # not the editable checkout
    shipped = package / "shipped"
    assert (shipped / "schemas" / "recipe-v1.schema.json").is_file()
    assert (shipped / "recipes" / "demo-uppercase.yaml").is_file()
    assert (shipped / "recipes" / "data" / "uppercase-train.jsonl").is_file()
    assert {p.name for p in (shipped / "templates").iterdir()} >= {"alpaca.json", "plain.json"}
    assert (shipped / "constraints.txt").read_text() == (REPO / "constraints.txt").read_text()
    assert not (shipped / "schemas" / "source").exists()  # gen_schema's inputs stay home
    version = sh(["recipe", "--version"], tmp_path, env).stdout
    assert "0.1.0" in version


def test_a_new_user_lists_copies_lints_plans_previews_and_runs_from_an_empty_folder(
    installed, tmp_path
) -> None:
    venv, env = installed
    work = tmp_path / "empty"
    work.mkdir()
    listed = sh(["recipe", "list"], work, env).stdout
    assert "demo-uppercase" in listed and "llama32-1b-full-3090" in listed
    sh(["recipe", "new", "mine.yaml", "--from", "demo-uppercase"], work, env)
    text = (work / "mine.yaml").read_text()
    schema = text.splitlines()[0].split("$schema=")[1]
    assert Path(schema).is_file() and Path(schema).is_relative_to(venv)
    sh(["recipe", "lint", "mine.yaml"], work, env)
    sh(["recipe", "lint", "llama32-1b-full-3090"], work, env)
    sh(["recipe", "plan", "mine.yaml"], work, env)
    preview = sh(["recipe", "preview", "mine.yaml", "-n", "1"], work, env).stdout
    assert "[[" in preview

    run = sh(["recipe", "run", "mine.yaml", "--set", "training.max_steps=5"], work, env)
    assert "mine succeeded; 5 steps" in run.stdout
    assert "kernels-community" not in run.stderr and "Setting accelerator" not in run.stderr
    run_dir = work / "outputs" / "mine"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["runner"]["version"] == "0.1.0"
    assert record["runner"]["lock_sha256"].startswith("sha256:")
    assert record["template"]["file"] == "template/plain.json"
    assert (run_dir / "template" / "plain.json").is_file()
    assert (run_dir / "logs" / "train.log").is_file()

    # The run answers the same from a copy elsewhere, with the package's templates gone.
    prompts = work / "prompts.jsonl"
    prompts.write_text('{"prompt": "Uppercase: hello\\n"}\n{"prompt": "Uppercase: tree\\n"}\n')
    infer = ["--file", str(prompts), "--temperature", "1.0", "--seed", "3", "--max-new-tokens",
             "12"]  # fmt: skip
    sh(["recipe", "infer", str(run_dir), *infer, "--out", "before.jsonl"], work, env)
    copy = tmp_path / "elsewhere" / "mine"
    shutil.copytree(run_dir, copy)
    templates = package_dir(venv, env) / "shipped" / "templates"
    templates.rename(templates.with_name("templates-moved"))
    try:
        sh(["recipe", "infer", str(copy), *infer, "--out", "after.jsonl"], work, env)
    finally:
        templates.with_name("templates-moved").rename(templates)
    before = (work / "before.jsonl").read_text()
    assert before == (work / "after.jsonl").read_text()
    assert any(json.loads(line)["generation"] for line in before.splitlines())

    evaluated = sh(["recipe", "eval", str(copy), "-n", "1"], work, env)
    assert "changed since training" not in evaluated.stderr
    eval_data = package_dir(venv, env) / "shipped" / "recipes" / "data" / "uppercase-eval.jsonl"
    with eval_data.open("a", encoding="utf-8") as handle:
        handle.write('{"prompt": "Uppercase: extra\\n", "completion": "EXTRA"}\n')
    changed = sh(["recipe", "eval", str(copy), "-n", "1"], work, env)
    assert "uppercase-eval.jsonl changed since training" in changed.stderr
    assert "changed since training" in json.loads((copy / "eval.json").read_text())["data"]
