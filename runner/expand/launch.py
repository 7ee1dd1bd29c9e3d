"""The `accelerate launch` command line of a recipe.

`launch_argv` is pure: the same settings and placement give the same argv, so tests
assert it exactly. Everything accelerate needs is in the run's own config file
(runner.expand.engines, written by `write_accelerate_config`); the command line adds only the
mixed precision, the CPU threads per process and what the user puts after `--` (last, so
it wins).
With the placement `recipe run` decides (runner.expand.placement.choose_placement), it
is what `recipe run` executes and what `recipe show --as launch`, `recipe run --dry-run`
and `--print-launch` print.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from runner.expand.engines import (
    ACCELERATE_CONFIG,
    DEEPSPEED_CONFIG,
    accelerate_config,
    cpu_threads,
    deepspeed_config,
    launch_home,
)
from runner.expand.placement import Placement, mixed_precision
from runner.recipe.load import dump_yaml
from runner.recipe.settings import Settings

TRAIN_MODULE = "runner.train"


def launch_argv(
    settings: Settings,
    placement: Placement,
    *,
    extra: Sequence[str] = (),
    resume: Path | None = None,
    cap_memory: bool = False,
) -> list[str]:
    """`accelerate launch --config_file RUN/accelerate.yaml ... -m runner.train RUN_DIR`
    (`resume`: the complete checkpoint the training process continues from; `--cpu`
    tells the training processes the placement, which they never decide again;
    `cap_memory`: each training process holds its CUDA memory to the recipe's card,
    runner.run.memory_cap; `--trust-remote-code` passes on the command line's permission
    for the model's own code, which the recipe alone never grants)."""
    run_dir = launch_home(settings)
    # --quiet: a failed training process reports its own error; no launcher traceback on top
    argv = ["accelerate", "launch", "--config_file", str(run_dir / ACCELERATE_CONFIG), "--quiet"]
    # also on the command line: accelerate's DeepSpeed check refuses a mixed precision that
    # comes from the config file next to a DeepSpeed JSON
    argv += ["--mixed_precision", mixed_precision(settings, placement)]
    if placement.cpu:
        processes_here = settings.num_processes // settings.num_machines
        argv += ["--num_cpu_threads_per_process", str(cpu_threads(placement, processes_here))]
    argv += [*extra, "-m", TRAIN_MODULE, str(run_dir)]
    if placement.cpu:
        argv.append("--cpu")
    if cap_memory:
        argv.append("--cap-memory")
    if settings.trust_remote_code:
        argv.append("--trust-remote-code")
    if resume is not None:
        argv += ["--resume", str(resume)]
    return argv


def write_accelerate_config(settings: Settings, placement: Placement, run_dir: Path) -> None:
    """Write the run's accelerate config (and DeepSpeed JSON) that `launch_argv` names."""
    (run_dir / ACCELERATE_CONFIG).write_text(dump_yaml(accelerate_config(settings, placement)))
    ds = deepspeed_config(settings)
    if ds is not None:
        (run_dir / DEEPSPEED_CONFIG).write_text(json.dumps(ds, indent=2) + "\n")


def executable_argv(argv: list[str]) -> list[str]:
    """The argv to execute: `accelerate` run through this Python, so the same environment
    (virtualenv included) trains as the one that checked the recipe."""
    if argv[:2] == ["accelerate", "launch"]:
        return [sys.executable, "-m", "accelerate.commands.launch", *argv[2:]]
    return argv


def launch_env() -> dict[str, str]:
    """The environment the training processes start in: this one, with Python's safe
    path on (PYTHONSAFEPATH, Python 3.11+). `python -m` otherwise puts the current
    directory first on sys.path, so a `torch.py` or a `runner/` folder beside a copied
    recipe would be imported in place of the library. When this runner itself is only
    importable from the current directory (a checkout run without installing), that
    directory is named on PYTHONPATH instead, so the training processes find it."""
    import os

    import runner

    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    home = Path(runner.__file__).resolve().parent.parent
    if home == Path.cwd().resolve() and str(home) not in env.get("PYTHONPATH", ""):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(home), env.get("PYTHONPATH")]))
    return env


def shell_command(argv: list[str]) -> str:
    """The argv as one copy-pasteable shell line."""
    return shlex.join(argv)
