"""What a run records about the runner itself, and what it copies in to stand alone.

`runner_record` is run.json's `runner`: the runner's version, the sha256 of the lock it
ships (runner/shipped/constraints.txt, the versions CI tests) and every installed
package whose version differs from that lock (empty when the environment is the lock).
`start_provenance` is what `recipe run` adds to run.json before launch: that record and
the copy of the run's text template (runner.run.template_copy). `recorded_code` and
`record_imported_code` keep run.json's `remote_code`: the model's own code the run was
allowed to import, and the sha256 of each file the training process imported.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import SHIPPED_DIR, __version__
from runner.recipe.settings import Settings

if TYPE_CHECKING:
    from runner.recipe.remote_code import RemoteCode

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


def recorded_code(run: Any) -> dict[str, Any] | None:
    """run.json's `remote_code`: the model code the run was allowed to import, hashed
    (None when the recipe asked for none, or run.json is missing or unreadable)."""
    try:
        record = run.read_run() if run.run_json.is_file() else {}
    except (OSError, ValueError):
        return None
    code = record.get("remote_code") if isinstance(record, dict) else None
    return code if isinstance(code, dict) else None


def record_imported_code(run: Any, code: Any, *, write: bool) -> None:
    """Check that every model code file this training process imported is the file it
    inspected before loading (runner.recipe.remote_code), and on the main process add
    them to run.json's `remote_code.imported` ({file: sha256})."""
    from runner.recipe.remote_code import check_imported, imported_code

    imported = imported_code()
    check_imported(code, imported, str(run.path))
    if write and run.run_json.is_file():
        record = recorded_code(run) or code.record()
        run.update_run(remote_code={**record, "imported": imported})


def run_settings(run: Any, trust_remote_code: bool) -> tuple[Settings, RemoteCode | None]:
    """A training process's settings (the run's resolved recipe; the model's own code
    allowed when `recipe run` passed on --trust-remote-code), and that code: checked
    with runner.recipe.remote_code, unchanged since `recipe run` recorded it (None
    when the recipe asks for none)."""
    from runner.recipe.remote_code import require_permission

    settings = Settings(run.read_resolved(), trust_remote_code)
    code = require_permission(
        settings.model, trust_remote_code, subject=str(run.path), recorded=recorded_code(run)
    )
    return settings, code
