"""Where the libraries' log lines go: errors on the user's screen, everything in a file.

transformers, datasets, accelerate, bitsandbytes, peft and DeepSpeed log warnings and
advice that look like errors on a healthy run (bitsandbytes' "Failed to load CPU
gemm_4bit_forward from kernels-community", DeepSpeed's "Setting accelerator to CPU").
`quiet_libraries` sets them up through their own logging settings - Python's `logging`
configuration, transformers' and datasets' verbosity and handler switches, DeepSpeed's
`DS_ACCELERATOR` - never by patching them:

- the screen (stderr) shows ERROR and above;
- with a `log_file` (a run directory's `logs/<command>.log`), that file receives what
  the screen does not: INFO and above (transformers' and datasets' WARNING and above),
  Python warnings included;
- the libraries' download/loading progress bars are off (the training progress bar and
  the runner's own output stay).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOG_DIR = "logs"
SCREEN_FORMAT = "%(levelname)s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "recipe-runner"


def log_file_of(run_path: Path, command: str) -> Path:
    """`<run>/logs/<command>.log`: the full log of one kind of command on a run."""
    return run_path / LOG_DIR / f"{command}.log"


def quiet_libraries(log_file: Path | None = None, *, cpu: bool | None = None) -> None:
    """Keep the libraries' warnings, advice and progress bars off the user's screen,
    errors excepted, and write all of it to `log_file` when given (appended).

    `cpu`: this process has no GPU to use (None: ask torch). DeepSpeed is then told so
    with `DS_ACCELERATOR=cpu` (what it would pick), instead of warning that it guessed;
    child processes (accelerate launch, the training process) inherit it.
    """
    _route_python_logging(log_file)
    # transformers' and datasets' INFO is every config and file they read: warnings up.
    level = logging.WARNING if log_file is not None else logging.ERROR

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity(level)
    hf_logging.disable_default_handler()  # its records reach the root handlers instead
    hf_logging.enable_propagation()
    hf_logging.disable_progress_bar()

    import datasets

    datasets.logging.set_verbosity(level)
    _screen_errors_only(logging.getLogger("datasets"))  # its own stderr handler
    datasets.disable_progress_bars()

    if "DS_ACCELERATOR" not in os.environ and _no_gpu(cpu):
        os.environ["DS_ACCELERATOR"] = "cpu"


def _route_python_logging(log_file: Path | None) -> None:
    """Root handlers: stderr at ERROR, and the log file at INFO (replacing ours from an
    earlier call, never anyone else's). Python warnings go through logging too."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()
    screen = logging.StreamHandler(sys.stderr)
    screen.set_name(_HANDLER_NAME)
    screen.setLevel(logging.ERROR)
    screen.setFormatter(logging.Formatter(SCREEN_FORMAT))
    root.addHandler(screen)
    root.setLevel(logging.WARNING)
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError:
            file = None  # a read-only run directory: the screen stays quiet all the same
        if file is not None:
            file.set_name(_HANDLER_NAME)
            file.setLevel(logging.INFO)
            file.setFormatter(logging.Formatter(FILE_FORMAT))
            root.addHandler(file)
            root.setLevel(logging.INFO)
            logging.getLogger(__name__).info("recipe-runner: %s", " ".join(sys.argv))
    logging.captureWarnings(True)  # warnings.warn -> the `py.warnings` logger


def _screen_errors_only(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.ERROR)


def _no_gpu(cpu: bool | None) -> bool:
    if cpu is not None:
        return cpu
    from runner.expand.placement import gpu_available

    return not gpu_available()
