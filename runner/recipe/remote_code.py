"""Which Python files a model would run, and whether the person at the command line allowed it.

A model folder or hub repository can carry its own code: `auto_map` in `config.json`
(and in `tokenizer_config.json`) names modules beside the weights that transformers
imports when it loads the model or tokenizer with `trust_remote_code=True`, and with that
flag a `custom_generate/generate.py` is imported too. A recipe is data that people copy,
so `model.trust_remote_code: true` in a recipe is only a request: every command that
loads a model or tokenizer calls `require_permission` first, which refuses unless the
command line says `--trust-remote-code`, and names the model and each file that would
run. The record of a run (`record`) keeps the sha256 of every code file; `--resume` and
the after-training commands refuse when the files changed since.

Pure: json, hashlib, re and pathlib only (`recipe lint` reads it). Nothing is imported
from the files it inspects.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import UserError
from runner.recipe.models import hub_cache_dir

FLAG = "--trust-remote-code"
COMMIT = re.compile(r"[0-9a-f]{40}")
CUSTOM_GENERATE = "custom_generate/generate.py"
# transformers imports the modules `auto_map` names in these files.
AUTO_MAP_FILES = ("config.json", "tokenizer_config.json")
# transformers' own patterns for the relative imports it copies beside a module
# (dynamic_module_utils.get_relative_imports)
RELATIVE_IMPORTS = (
    re.compile(r"^\s*import\s+\.(\S+)\s*$", re.MULTILINE),
    re.compile(r"^\s*from\s+\.(\S+)\s+import", re.MULTILINE),
)
DYNAMIC_PACKAGE = "transformers_modules"  # where transformers imports them as


class RemoteCodeRefused(UserError):
    """A recipe asks to run a model's own code, and the command line did not allow it."""


class RemoteCodeChanged(UserError):
    """The model's code differs from what a run recorded when it trained."""


@dataclass(frozen=True)
class CodeFile:
    """One Python file a model or tokenizer would import; `sha256` is None when the file
    is not on this machine yet (a hub model's code is downloaded when it loads)."""

    name: str  # relative to its folder: custom.py, custom_generate/generate.py
    sha256: str | None


@dataclass(frozen=True)
class CodeSource:
    """A model or tokenizer folder (local, or a hub repository) and its own code."""

    reference: str  # the local folder (absolute) or the hub id
    revision: str | None  # the hub revision loaded (None: the default branch)
    folder: Path | None  # where its files are here: the folder, or a cache snapshot
    local: bool
    files: tuple[CodeFile, ...] = ()
    elsewhere: tuple[str, ...] = ()  # auto_map entries whose code is in another hub repo

    @property
    def pinned(self) -> bool:
        """Whether the code cannot change under the recipe: a local folder, or a hub
        revision that is a full commit hash (a branch or tag can move)."""
        return self.local or is_commit(self.revision)

    def describe(self) -> str:
        """`the local folder /x/model` or `the hub model org/name at commit 0123...`."""
        if self.local:
            return f"the local folder {self.reference}"
        if self.revision is None:
            return f"the hub model {self.reference} (revision not pinned)"
        kind = "commit" if is_commit(self.revision) else "branch or tag"
        return f"the hub model {self.reference} at {kind} {self.revision}"

    def names(self) -> str:
        """The code files, as a sentence part."""
        if self.files:
            return ", ".join(f.name for f in self.files)
        if self.folder is None:
            return "its code files are not on this machine yet (they come with the download)"
        return "no code files found"


@dataclass(frozen=True)
class RemoteCode:
    """Every code source a recipe's model and tokenizer would import from."""

    sources: tuple[CodeSource, ...]

    def pairs(self) -> set[tuple[str, str]]:
        """(file name, sha256) of every file that is on this machine."""
        return {(f.name, f.sha256) for s in self.sources for f in s.files if f.sha256}

    def describe(self) -> str:
        """What would run, from where: `custom.py, helper.py from the local folder /x`."""
        return "; ".join(
            f"{s.names()} from {s.describe()}" if s.files else f"{s.describe()}: {s.names()}"
            for s in self.sources
        )

    def record(self) -> dict[str, Any]:
        """What run.json keeps (`remote_code`): each source, its revision, and its files'
        sha256 (the training process adds `imported`: the files it actually imported)."""
        return {
            "sources": [
                {
                    "reference": s.reference,
                    "revision": s.revision,
                    "pinned": s.pinned,
                    "folder": str(s.folder) if s.folder is not None else None,
                    "files": {f.name: f.sha256 for f in s.files},
                }
                for s in self.sources
            ]
        }


def require_permission(
    model: Mapping[str, Any],
    allowed: bool,
    *,
    subject: str,
    recorded: Mapping[str, Any] | None = None,
    folders: Iterable[Path] = (),
) -> RemoteCode | None:
    """The one check every command that loads a model or tokenizer makes first (run,
    preview, infer, chat, merge, eval, the training processes; export will too).

    Returns None when the model block does not ask for the model's own code: nothing is
    trusted then, whatever the command line says. When it asks, `allowed` (the command
    line's --trust-remote-code) must be given, else RemoteCodeRefused names the model,
    its revision and each file that would run. `recorded`: a run's `remote_code` record
    (run.json), for a command that continues or uses a trained run: the code must be
    the code it recorded (RemoteCodeChanged). `folders`: more folders the command loads
    from (a run's final/). Returns the code inspected, with each file's sha256.
    """
    if not requested(model):
        return None
    code = code_sources(model, folders)
    if not allowed:
        raise RemoteCodeRefused(
            f"{subject}: model.trust_remote_code asks to run the Python code that comes with "
            f"the model, and recipe runs it only when you allow it on the command line: "
            f"{code.describe()}. Read that code, then give {FLAG} to the command (or remove "
            "model.trust_remote_code if the model does not need it)"
        )
    changed = changed_files(recorded, code) if recorded is not None else []
    if changed:
        raise RemoteCodeChanged(
            f"{subject}: the model's code is not the code this run recorded in run.json "
            f"when it trained: {'; '.join(changed)}. Put back the files the run used, or "
            "train a new run with this code"
        )
    return code


def changed_files(recorded: Mapping[str, Any], code: RemoteCode) -> list[str]:
    """Each code file on this machine whose (name, sha256) the record does not hold, as
    `custom.py (sha256 0123abcd..., recorded: 4567cdef...)`. A hub model whose files were
    not downloaded yet when the record was made is compared once the training process
    recorded what it imported."""
    known: dict[str, set[str]] = {}
    unknown = set()
    for source in recorded.get("sources") or []:
        if source.get("folder") is None:
            unknown.add(source.get("reference"))
        for name, digest in (source.get("files") or {}).items():
            known.setdefault(name, set()).add(digest)
    imported = recorded.get("imported") or {}
    for name, digest in imported.items():
        known.setdefault(name, set()).add(digest)
    changed = []
    for source in code.sources:
        if source.reference in unknown and not imported:
            continue
        for file in source.files:
            if file.sha256 and file.sha256 not in known.get(file.name, set()):
                was = ", ".join(sorted(f"{d[:12]}..." for d in known.get(file.name, ()) if d))
                changed.append(
                    f"{file.name} in {source.reference} (sha256 {file.sha256[:12]}..., "
                    f"recorded: {was or 'no such file'})"
                )
    return changed


def imported_code() -> dict[str, str]:
    """{file name: sha256} of every model or tokenizer code file this process imported
    (transformers imports them as modules of its `transformers_modules` package, copied
    into its module cache); its own empty package files left out."""
    imported: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not name.startswith(DYNAMIC_PACKAGE + ".") or not path or hasattr(module, "__path__"):
            continue
        file = Path(path)
        named = file.name
        if file.parent.name == Path(CUSTOM_GENERATE).parent.name:
            named = CUSTOM_GENERATE
        imported[named] = sha256_of(file)
    return dict(sorted(imported.items()))


def check_imported(code: RemoteCode, imported: Mapping[str, str], subject: str) -> None:
    """RemoteCodeChanged when a file this process imported differs from the file of that
    name inspected before loading (it changed in between)."""
    inspected = {f.name: f.sha256 for s in code.sources for f in s.files if f.sha256}
    changed = [n for n, d in imported.items() if n in inspected and inspected[n] != d]
    if changed:
        raise RemoteCodeChanged(
            f"{subject}: {', '.join(changed)} changed between the check before loading and "
            "its import; nothing was trained. Check the model folder and start the run again"
        )


ASK_IN_RECIPE = f"set model.trust_remote_code: true in the recipe and give {FLAG} to the command"


def needs_own_code(
    exc: BaseException, reference: str, key: str, allow: str = ASK_IN_RECIPE
) -> RemoteCodeRefused | None:
    """transformers' refusal to load a model or tokenizer whose code was not trusted (its
    type is not built into transformers), as a message that names the code and how to
    allow it (`allow`); None for any other error."""
    if not isinstance(exc, ValueError) or "custom code" not in str(exc):
        return None
    return RemoteCodeRefused(
        f"{reference} ({key}) loads only with its own Python code "
        f"({code_source(reference).names()}), which transformers does not have built in, "
        f"and nothing allowed it to run. If you have read that code and trust it: {allow}"
    )


def is_commit(revision: str | None) -> bool:
    """A full 40-character git commit hash (what the hub resolves revisions to)."""
    return revision is not None and COMMIT.fullmatch(revision) is not None


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def requested(model: Mapping[str, Any]) -> bool:
    """Whether a (resolved) model block asks to run the model's own code."""
    return model.get("trust_remote_code") is True


def code_sources(model: Mapping[str, Any], folders: Iterable[Path] = ()) -> RemoteCode:
    """The code a model block's model and tokenizer would import, read from the files on
    this machine (`folders`: more local folders the command loads from, such as a run's
    `final/`)."""
    revision = model.get("revision")
    references: list[tuple[str, str | None]] = []
    if isinstance(model.get("id"), str) and not isinstance(model.get("config"), dict):
        references.append((model["id"], revision))
    tokenizer = model.get("tokenizer")
    if isinstance(tokenizer, str) and tokenizer not in ("byte-level", model.get("id")):
        references.append((tokenizer, None))  # the recipe has no revision for it
    references += [(str(folder), None) for folder in folders]
    return RemoteCode(tuple(code_source(ref, rev) for ref, rev in references))


def code_source(reference: str, revision: str | None = None) -> CodeSource:
    """One folder or hub repository: which of its files `auto_map` (and
    custom_generate/) would import, with their relative imports, hashed."""
    local = Path(reference).expanduser()
    is_local = local.is_absolute() or local.is_dir()
    folder = local if is_local else _snapshot(reference, revision)
    if folder is None or not folder.is_dir():
        return CodeSource(reference, None if is_local else revision, None, is_local)
    modules: list[str] = []
    elsewhere: list[str] = []
    for name in AUTO_MAP_FILES:
        for entry in auto_map_entries(_read_json(folder / name)):
            if "--" in entry:
                elsewhere.append(entry)
            else:
                modules.append(entry.rsplit(".", 1)[0].replace(".", "/") + ".py")
    if (folder / CUSTOM_GENERATE).is_file():
        modules.append(CUSTOM_GENERATE)
    names = with_relative_imports(folder, modules)
    files = tuple(
        CodeFile(name, sha256_of(folder / name) if (folder / name).is_file() else None)
        for name in names
    )
    return CodeSource(
        reference, None if is_local else revision, folder, is_local, files, tuple(elsewhere)
    )


def auto_map_entries(config: Mapping[str, Any] | None) -> list[str]:
    """The class references of a config's `auto_map` ("module.Class", or
    "org/repo--module.Class" for code in another repository), in order, once each."""
    auto_map = (config or {}).get("auto_map")
    if isinstance(auto_map, list):  # an old tokenizer_config.json: [slow, fast]
        auto_map = {"AutoTokenizer": auto_map}
    if not isinstance(auto_map, dict):
        return []
    entries: list[str] = []
    for value in auto_map.values():
        for entry in value if isinstance(value, list) else [value]:
            if isinstance(entry, str) and "." in entry and entry not in entries:
                entries.append(entry)
    return entries


def with_relative_imports(folder: Path, names: list[str]) -> list[str]:
    """`names` and every file they import relatively (`from .x import y`), recursively,
    as transformers copies them into its module cache."""
    found: list[str] = []
    todo = list(dict.fromkeys(names))
    while todo:
        name = todo.pop(0)
        if name in found:
            continue
        found.append(name)
        path = folder / name
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parent = Path(name).parent
        for pattern in RELATIVE_IMPORTS:
            todo += [(parent / f"{m}.py").as_posix() for m in pattern.findall(text)]
    return found


def _snapshot(model_id: str, revision: str | None) -> Path | None:
    """The Hugging Face cache folder holding a hub model's files at `revision` (a commit
    is its own folder; a branch or tag is the commit its ref names), or None."""
    repo = hub_cache_dir() / ("models--" + model_id.replace("/", "--"))
    if is_commit(revision):
        commit: str | None = revision
    else:
        try:
            commit = (repo / "refs" / (revision or "main")).read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            return None
    folder = repo / "snapshots" / str(commit)
    return folder if folder.is_dir() else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
