"""`recipe new`: copy a recipe with its comments and layout, adapted to new data or model.

The copy is a round-trip edit of the YAML document: only the keys being rewritten
change. Relative paths (data files, a local model, the `$schema` modeline) are rewritten
so they still point at the same files from the copy's folder: relative to it, except a
shipped file (the demo data, the schema: in the installed package or the checkout's
recipes/ and schemas/), which is written as an absolute path rather than a climb out of
the user's folder into site-packages.
With new data or a new model the `description` is rewritten to say what the copy trains.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from runner import RECIPES_DIR, SCHEMAS_DIR, TEMPLATES_DIR
from runner.errors import UserError
from runner.recipe.catalog import find_recipe
from runner.recipe.load import load_recipe
from runner.recipe.resolve import data_sources, looks_local
from runner.recipe.schema import MODELINE, SCHEMA_PATH
from runner.recipe.yaml_dialect import round_trip_yaml

SHIPPED_FOLDERS = (RECIPES_DIR, SCHEMAS_DIR, TEMPLATES_DIR)
# Keys of a data source that describe one particular dataset; dropped when --data
# replaces it.
DATASET_SPECIFIC = ("columns", "subset", "split", "rows")


class RecipeCopyError(UserError):
    """The copy cannot be made (DEST exists, source unreadable...); the message says why."""


def recipe_name(dest: Path) -> str:
    """A valid recipe name from DEST's file name: lower case, other characters -> '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", dest.stem.lower()).strip("-._")
    return name or "my-recipe"


def relative_to(path: Path, folder: Path) -> str:
    """`path` as seen from `folder` (POSIX separators, as recipes write them)."""
    return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()


def reference_from(path: Path, folder: Path) -> str:
    """How the copy in `folder` names `path`: absolute for a shipped file (it lives
    wherever the package is installed, or in the checkout), else relative to `folder`."""
    if any(path.resolve().is_relative_to(f.resolve()) for f in SHIPPED_FOLDERS):
        return path.resolve().as_posix()
    return relative_to(path, folder)


def copy_recipe(
    source: str,
    dest: Path,
    *,
    data: str | None = None,
    data_format: str | None = None,
    model: str | None = None,
    cwd: Path | None = None,
) -> list[str]:
    """Write the adapted copy of `source` to `dest`; return notes on what changed.

    `data` and `model` are paths relative to `cwd` (the user's directory) or hub ids.
    """
    cwd = cwd or Path.cwd()
    dest = dest if dest.is_absolute() else cwd / dest
    if dest.exists():
        raise RecipeCopyError(
            f"{dest} already exists; `recipe new` never overwrites a file - choose another "
            "name or delete it first"
        )
    recipe = load_recipe(find_recipe(source))  # RecipeError says why it cannot be read
    doc = recipe.doc
    old_dir, new_dir = recipe.directory, dest.parent
    notes: list[str] = []

    name = recipe_name(dest)
    doc["name"] = name
    doc["output_dir"] = f"outputs/{name}"
    notes.append(f"name: {name}, output_dir: outputs/{name}")

    _rebase_local_paths(doc, old_dir, new_dir)
    block = doc.get("data")
    if data is not None:
        if not isinstance(block, dict) or not isinstance(block.get("train"), list):
            raise RecipeCopyError(f"{source} has no data.train list to replace")
        notes += _replace_train(block, data, data_format, cwd, new_dir)
    elif data_format is not None and isinstance(block, dict):
        for item in block.get("train") or []:
            if isinstance(item, dict):
                item["format"] = data_format
        notes.append(f"data.train format: {data_format}")
    if model is not None:
        notes += _replace_model(doc, model, cwd, new_dir)
    if (data is not None or model is not None) and "description" in doc:
        doc["description"] = describe(doc, recipe.path.stem, new_dir)
        notes.append(f"description: {doc['description']}")

    text = _dump(doc)
    text = _fix_header(text, recipe.path.stem, dest, new_dir, cwd)
    if data is not None or model is not None:
        text = _adapted_note(text, recipe.path.stem, data, model)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("x", encoding="utf-8") as handle:  # "x": never overwrite
            handle.write(text)
    except OSError as exc:
        raise RecipeCopyError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return notes


def _reference(value: str, cwd: Path, new_dir: Path) -> str:
    """A user-given path (relative to cwd) rewritten relative to the copy; hub ids kept."""
    if looks_local(value, cwd):
        return relative_to(cwd / Path(value).expanduser(), new_dir)
    return value


def _rebase_local_paths(doc: CommentedMap, old_dir: Path, new_dir: Path) -> None:
    block = doc.get("data")
    for item in data_sources(block) if isinstance(block, dict) else []:
        ref = item.get("source") if isinstance(item, dict) else None
        if isinstance(ref, str) and looks_local(ref, old_dir) and not Path(ref).is_absolute():
            item["source"] = reference_from(old_dir / ref, new_dir)
    model = doc.get("model")
    if isinstance(model, dict):
        for key in ("id", "tokenizer"):
            ref = model.get(key)
            if (
                isinstance(ref, str)
                and ref != "byte-level"
                and looks_local(ref, old_dir)
                and not Path(ref).is_absolute()
            ):
                model[key] = reference_from(old_dir / ref, new_dir)


def _replace_train(
    block: CommentedMap, data: str, data_format: str | None, cwd: Path, new_dir: Path
) -> list[str]:
    train = block["train"]
    first = train[0] if train and isinstance(train[0], dict) else CommentedMap()
    for key in DATASET_SPECIFIC:
        if key in first:
            del first[key]
    first["source"] = _reference(data, cwd, new_dir)
    if data_format is not None:
        first["format"] = data_format
    del train[1:]
    if not train:
        train.append(first)
    notes = [f"data.train: {first['source']} (format {first.get('format', '?')})"]
    if data_format is None:
        notes.append("the format was kept from the original; pass --format if your file differs")
    if isinstance(block.get("eval"), list):
        fraction = CommentedMap(fraction=0.05)
        fraction.fa.set_flow_style()
        block["eval"] = fraction
        notes.append("data.eval: {fraction: 0.05} of your data (the old eval sources were dropped)")
    return notes


def _replace_model(doc: CommentedMap, model: str, cwd: Path, new_dir: Path) -> list[str]:
    block = doc.get("model")
    if not isinstance(block, CommentedMap):
        block = doc["model"] = CommentedMap()
    notes = []
    if "config" in block:
        del block["config"]
        notes.append("model.config removed (the model is now loaded from its id)")
    for key in ("tokenizer", "pad_token"):
        if key in block:
            del block[key]
            notes.append(f"model.{key} removed (it belonged to the old model)")
    block.insert(0, "id", _reference(model, cwd, new_dir))
    notes.insert(0, f"model.id: {block['id']}")
    return notes


METHOD_WORDS = {"full": "Full fine-tune", "lora": "LoRA", "qlora": "QLoRA"}


def describe(doc: CommentedMap, source_name: str, folder: Path) -> str:
    """A description of what the copy trains, from its method, model and data, e.g.
    `Full fine-tune of meta-llama/Llama-3.2-1B-Instruct on my.jsonl (from
    llama32-1b-full-3090)` - the original's words named the original's data."""
    method = METHOD_WORDS.get(str(doc.get("method")), str(doc.get("method", "fine-tune")))
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    if "id" in model:
        model_name = str(model["id"])
        if model_name.lower().endswith(".gguf"):  # a file (or package:...): its name
            model_name = Path(model_name.removeprefix("package:")).stem
    else:
        config = model.get("config") if isinstance(model.get("config"), dict) else {}
        model_name = f"a {config.get('model_type', 'model')} built from model.config"
    block = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    train = block.get("train") if isinstance(block.get("train"), list) else []
    sources = [str(s["source"]) for s in train if isinstance(s, dict) and "source" in s]
    if sources:
        first = sources[0]
        data_name = Path(first).name if looks_local(first, folder) else first
        data_name += f" and {len(sources) - 1} more" if len(sources) > 1 else ""
        return f"{method} of {model_name} on {data_name} (from {source_name})"
    return f"{method} of {model_name} (from {source_name})"


def _dump(doc: Any) -> str:
    stream = io.StringIO()
    yaml = round_trip_yaml()
    yaml.width = 4096  # a rewritten value stays on its line, as a person would write it
    yaml.dump(doc, stream)
    return stream.getvalue()


def _fix_header(text: str, old_name: str, dest: Path, new_dir: Path, cwd: Path) -> str:
    """Point the `$schema` modeline at the schema from the copy's folder, and the
    header's example commands at the copy."""
    modeline = f"# yaml-language-server: $schema={reference_from(SCHEMA_PATH, new_dir)}"
    text = (
        MODELINE.sub(lambda _: modeline, text, count=1)
        if MODELINE.search(text)
        else (modeline + "\n" + text)
    )
    try:
        shown = dest.resolve().relative_to(cwd.resolve()).as_posix()
    except ValueError:
        shown = str(dest)
    pattern = re.compile(rf"^(#\s+recipe\s+\w+\s+){re.escape(old_name)}\b", re.MULTILINE)
    return pattern.sub(lambda m: m.group(1) + shown, text)


def _adapted_note(text: str, old_name: str, data: str | None, model: str | None) -> str:
    """Say under the modeline that the header's words describe the original recipe."""
    changed = ", ".join(
        part for part in (f"data {data}" if data else "", f"model {model}" if model else "") if part
    )
    note = (
        f"# Adapted by `recipe new` from {old_name} ({changed});\n"
        "# the comments below describe the original."
    )
    first, _, rest = text.partition("\n")
    return f"{first}\n{note}\n{rest}" if MODELINE.match(first) else f"{note}\n{text}"


__all__ = ["CommentedSeq", "RecipeCopyError", "copy_recipe", "recipe_name"]
