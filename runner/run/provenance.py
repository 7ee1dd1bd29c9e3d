"""What a run records about the runner itself, and what it copies in to stand alone.

`runner_record` is run.json's `runner`: the runner's version, the sha256 of the lock it
ships (runner/shipped/constraints.txt, the versions CI tests) and every installed
package whose version differs from that lock (empty when the environment is the lock).
`start_provenance` is what `recipe run` adds to run.json before launch: that record and
the copy of the run's text template (runner.run.template_copy).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from runner import SHIPPED_DIR, __version__

LOCK = SHIPPED_DIR / "constraints.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", re.MULTILINE)


def canonical_name(name: str) -> str:
    """A distribution name as PEP 503 compares them (`Ruamel_YAML` == `ruamel-yaml`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """The lock's pins: canonical name -> exact version."""
    text = path.read_text(encoding="utf-8")
    return {canonical_name(name): version for name, version in _PIN.findall(text)}


def lock_sha256(path: Path = LOCK) -> str | None:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def lock_differences(pins: dict[str, str]) -> dict[str, str]:
    """Installed packages whose version is not the locked one: name -> `installed
    (lock: pinned)`. Packages of the lock that are not installed (an extra, the test
    tools) are not differences."""
    from importlib.metadata import PackageNotFoundError, version

    differences = {}
    for name, pinned in sorted(pins.items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if installed != pinned:
            differences[name] = f"{installed} (lock: {pinned})"
    return differences


def runner_record() -> dict[str, Any]:
    """run.json's `runner`: version, lock hash, and where this environment differs."""
    pins = read_lock() if LOCK.is_file() else {}
    return {
        "version": __version__,
        "lock_sha256": lock_sha256(),
        "differs_from_lock": lock_differences(pins),
    }


def model_source(settings: Any) -> dict[str, Any] | None:
    """run.json's `model_source` for a model read from a GGUF file: the file, its sha256,
    architecture and parameter count (from its header), so a run says exactly which
    weights it started from; None for other models."""
    from runner.data.cache import file_digest
    from runner.recipe.gguf_header import read_header

    gguf = settings.gguf_path
    if gguf is None:
        return None
    header = read_header(gguf)
    return {
        "gguf": str(gguf),
        "sha256": "sha256:" + file_digest(gguf),
        "architecture": header.architecture,
        "name": header.metadata.get("general.name"),
        "parameters": header.parameters,
    }


def start_provenance(run_path: Path, settings: Any) -> dict[str, Any]:
    """The run.json fields `recipe run` adds before launch: `runner`, `template` (the
    run's text template copied into it; a chat template is added after training) and
    `model_source` (a GGUF model's file and hash)."""
    from runner.run.template_copy import save_text_template

    return {
        "runner": runner_record(),
        "template": save_text_template(run_path, settings.template),
        "model_source": model_source(settings),
    }
