"""The prompt template a run used, copied into its run directory.

A run must answer `recipe infer/chat/eval/merge` the same wherever it is copied and
whatever happens to the checkout's or the package's templates, so the text of the
template it trained with is kept beside the model, and every later command reads it:

- a text template (alpaca, plain): `template/<name>.json`, copied by `recipe run`
  before training (`save_text_template`);
- a chat template (the model's own, or a .jinja file): `template/chat_template.jinja`,
  written by the training process after saving the model (`save_chat_template`): the
  tokenizer's chat template at that point, which is the one training rendered with
  (the training variant with generation markers, for multi-turn data).

run.json's `template` records the kind, the file and its sha256.
`run_template` is the Template the after-training commands use; `run_chat_template`
the chat template text they put on the run's tokenizer.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.recipe.template import Template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TEMPLATE_DIR = "template"
CHAT_TEMPLATE = "chat_template.jinja"


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _record(run_path: Path, template: Template, copy: Path | None) -> dict[str, Any]:
    return {
        "kind": template.kind,
        "source": template.value,
        "file": copy.relative_to(run_path).as_posix() if copy is not None else None,
        "sha256": sha256_of(copy) if copy is not None else None,
    }


def save_text_template(run_path: Path, template: Template) -> dict[str, Any]:
    """Copy a text template's prompt strings into the run (a chat template is written
    at the end of training); run.json's `template` record."""
    copy = None
    if template.is_text and template.text_file is not None:
        copy = run_path / TEMPLATE_DIR / template.text_file.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template.text_file, copy)
    return _record(run_path, template, copy)


def save_chat_template(
    run_path: Path, tokenizer: PreTrainedTokenizerBase, template: Template
) -> dict[str, Any] | None:
    """Write the chat template the tokenizer trained with into the run and record it in
    run.json; nothing for a text template (copied before training)."""
    from runner.run.directory import RunDirectory

    text = tokenizer.chat_template
    if template.is_text or not isinstance(text, str) or not text:
        return None
    copy = run_path / TEMPLATE_DIR / CHAT_TEMPLATE
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text, encoding="utf-8")
    record = _record(run_path, template, copy)
    RunDirectory(run_path).update_run(template=record)
    return record


def run_template(run_path: Path, template: Template) -> Template:
    """The run's template, reading the run's own copy of its text when it has one (a run
    made before copies were kept reads the shipped file)."""
    name = template.text_file.name if template.is_text and template.text_file else CHAT_TEMPLATE
    copy = run_path / TEMPLATE_DIR / name
    return Template(template.value, file=copy) if copy.is_file() else template


def run_chat_template(run_path: Path) -> str | None:
    """The chat template the run trained with (its copy), or None."""
    copy = run_path / TEMPLATE_DIR / CHAT_TEMPLATE
    return copy.read_text(encoding="utf-8") if copy.is_file() else None
