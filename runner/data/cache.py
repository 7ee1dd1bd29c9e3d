"""Prepared data, built once and kept by content.

`recipe run` prepares a recipe's data before launch - rows read and checked, rendered
through the template, tokenized exactly as SFTTrainer would (runner.data.tokens) - and
keeps the result under a key made of everything it depends on: the data files' content
(sha256 of local files, datasets' fingerprint of hub datasets), how rows are selected,
mixed and split, the template's text and variables, the tokenizer (vocabulary, special
tokens, chat template), the length rows must fit and what becomes of longer ones
(runner.data.truncation), and the runner's version. A rerun with nothing changed finds it (`data cache:
hit`) and reads no row; an edited row changes the key. Every training process (every
rank, every machine) then memory-maps the same Arrow files: nothing is prepared twice.

The cache lives in `$RECIPE_CACHE_DIR` (default `~/.cache/recipe/data`), one folder per
key holding `train/`, `eval/` and `prepared.json`, written to a temporary name and
renamed when whole. It is kept under `$RECIPE_CACHE_MAX_GB` (default 20): the least
recently used entries go first. `recipe cache ls` / `recipe cache clear` show and empty
it; `recipe run --no-cache` prepares into the run directory instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import __version__
from runner.strict_json import strict_json

PREPARED = "prepared.json"
DEFAULT_MAX_GB = 20.0


def cache_root() -> Path:
    """Where prepared data is kept."""
    if os.environ.get("RECIPE_CACHE_DIR"):
        return Path(os.environ["RECIPE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "recipe" / "data"


def max_bytes() -> int:
    return int(float(os.environ.get("RECIPE_CACHE_MAX_GB", DEFAULT_MAX_GB)) * 1024**3)


def file_digest(path: Path) -> str:
    """sha256 of a file (or of every file of a folder, by relative name)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path if path.is_dir() else path.parent)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def source_identity(source: dict[str, Any]) -> dict[str, Any]:
    """What identifies a source's rows: its settings and its content."""
    path = Path(str(source["source"]))
    identity = {k: v for k, v in source.items() if k != "source"}
    if path.exists():
        identity["content"] = file_digest(path)
    else:  # a hub dataset: datasets' fingerprint of the cached copy
        from runner.data.sources import load_source

        identity["source"] = str(source["source"])
        identity["content"] = getattr(load_source(source), "_fingerprint", None)
    return identity


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)


def tokenizer_identity(model: dict[str, Any]) -> str | None:
    """A digest of the tokenizer's files, found without loading it (a local directory,
    the Hugging Face cache, or the GGUF file that holds it); `byte-level` is the
    runner's own (its version is in the key). None when its files are not on this
    machine."""
    from runner.recipe.models import gguf_tokenizer, tokenizer_file

    source = model.get("tokenizer") or model.get("id")
    if source == "byte-level":
        return "byte-level"
    gguf = gguf_tokenizer(model)
    if gguf is not None:  # the tokenizer is part of the file
        return file_digest(gguf) if gguf.is_file() else None
    digest, found = hashlib.sha256(), False
    for name in TOKENIZER_FILES:
        path = tokenizer_file(model, name)
        if path is not None:
            digest.update(name.encode() + b"\0" + path.read_bytes())
            found = True
    return digest.hexdigest() if found else None


def data_key(settings: Any, template_text: str) -> str | None:
    """The key of a recipe's prepared data (see the module docstring); None when the
    tokenizer's files cannot be found to make one."""
    from runner.data.truncation import row_limit

    tokenizer = tokenizer_identity(settings.model)
    if tokenizer is None:
        return None
    limit = row_limit(settings)
    data = settings.data
    identity = {
        "runner": __version__,
        "train": [source_identity(s) for s in data["train"]],
        "eval": data.get("eval") if isinstance(data.get("eval"), dict) else None,
        "eval_sources": [source_identity(s) for s in settings.eval_sources],
        "selection": {k: data.get(k) for k in ("shuffle", "bad_rows", "system_prompt")},
        "template_variables": settings.template_variables,
        "fit": {
            "limit": limit.tokens,
            "max_length": limit.max_length,
            "policy": settings.overlong_rows,
        },
        "seed": settings.seed,
        "template": template_text,
        "tokenizer": tokenizer,
        "pad_token": settings.model.get("pad_token"),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One prepared dataset in the cache."""

    path: Path

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def complete(self) -> bool:
        return (self.path / PREPARED).is_file()

    def record(self) -> dict[str, Any]:
        return json.loads((self.path / PREPARED).read_text(encoding="utf-8"))

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def touch(self) -> None:
        os.utime(self.path / PREPARED)

    @property
    def last_used(self) -> float:
        return (self.path / PREPARED).stat().st_mtime


def entries(root: Path | None = None) -> list[Entry]:
    """Complete entries, least recently used first."""
    root = root or cache_root()
    found = [Entry(p) for p in root.glob("*") if p.is_dir() and not p.name.endswith(".partial")]
    return sorted((e for e in found if e.complete), key=lambda e: e.last_used)


def lookup(key: str, root: Path | None = None) -> Entry | None:
    entry = Entry((root or cache_root()) / key)
    if entry.complete:
        entry.touch()
        return entry
    return None


def store(key: str, build: Any, root: Path | None = None) -> Entry:
    """Build an entry with `build(folder)` (which writes train/, eval/ and returns the
    record) into a temporary folder, rename it into place, then keep the cache under its
    size limit."""
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f"{key}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    record = build(partial)
    (partial / PREPARED).write_text(strict_json(record, indent=2) + "\n", encoding="utf-8")
    final = root / key
    if final.exists():  # another run prepared the same data meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    else:
        os.replace(partial, final)
    evict(root, keep=key)
    return Entry(final)


def evict(root: Path, keep: str = "") -> list[str]:
    """Delete the least recently used entries until the cache is under its limit."""
    limit, removed = max_bytes(), []
    current = entries(root)
    total = sum(e.size() for e in current)
    for entry in current:
        if total <= limit:
            break
        if entry.key == keep:
            continue
        total -= entry.size()
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.key)
    return removed


def clear(key: str | None = None, root: Path | None = None) -> list[str]:
    """Delete one entry (by key or key prefix) or all; the keys removed."""
    removed = []
    for entry in entries(root):
        if key is None or entry.key.startswith(key):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.key)
    return removed


def age(seconds: float) -> str:
    minutes = (time.time() - seconds) / 60
    if minutes < 90:
        return f"{minutes:.0f} min ago"
    return f"{minutes / 60:.0f} h ago" if minutes < 48 * 60 else f"{minutes / 1440:.0f} d ago"
