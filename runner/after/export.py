"""`recipe export RUN --format gguf`: the trained model as one GGUF file for llama.cpp,
Ollama and LM Studio, with what it needs to answer as the run does.

- A LoRA/QLoRA run is merged first, in float32, through `runner.after.merge` (the code
  of `recipe merge`; a QLoRA adapter goes into the dequantized 4-bit weights it trained
  on). A full run's `final/` is used as it is.
- The file (`runner.after.gguf_writer`) carries the run's tokenizer exactly
  (`runner.after.gguf_vocab`), its special tokens with the end-of-turn token as `eot`,
  the chat template it trained with (a text template becomes an equivalent one-turn
  chat template), and the model's context length.
- Beside it: an Ollama `Modelfile` (FROM, the stop tokens, the recipe's system prompt),
  and the run's `export/export.json` record of every file written (and its check).

Everything is decided before a weight loads: the destination (never over an existing
file without `--overwrite`), the architecture and the tokenizer; a model that cannot be
written exactly is refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.gguf_vocab import ExportError, GgufVocab, special_ids
from runner.after.gguf_writer import refusal
from runner.after.target import AfterError, Target

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from runner.data.templates import PromptFormat

EXPORT_DIR = "export"
RECORD = "export.json"
MODELFILE_SUFFIX = ".Modelfile"
_GENERATION_TAG = re.compile(r"\{%-?\s*(end)?generation\s*-?%\}")


@dataclass(frozen=True)
class Destination:
    """Where an export writes: the GGUF file, its Modelfile, the run's record."""

    gguf: Path
    modelfile: Path
    record: Path


def export_destination(target: Target, kind: str, out: str | None, overwrite: bool) -> Destination:
    """`RUN/export/<name>-<type>.gguf` (or `--out`: a file, or a folder to put it in),
    after checking that the target is a run and nothing would be overwritten."""
    if target.settings is None:
        raise AfterError(
            f"{target.path} is not a run directory; recipe export takes the output_dir of "
            "a `recipe run` (it needs the run's recipe, template and tokenizer)"
        )
    name = f"{target.settings.name}-{kind}.gguf"
    default = target.path / EXPORT_DIR / name
    path = Path(out).expanduser() if out else default
    if path.is_dir():
        path = path / name
    elif path.suffix != ".gguf":
        raise AfterError(f"--out {out}: give a .gguf file name or an existing folder")
    modelfile = path.with_name(path.stem + MODELFILE_SUFFIX)
    existing = [p for p in (path, modelfile) if p.exists()]
    if existing and not overwrite:
        raise AfterError(
            f"{existing[0]} exists; recipe export never overwrites a file (add --overwrite "
            "to replace it, or choose another place with --out PATH)"
        )
    return Destination(path, modelfile, target.path / EXPORT_DIR / RECORD)


def require_gguf_package() -> None:
    """AfterError naming the extra when PyPI's `gguf` (the writer) is not installed."""
    from runner.lint.rules.extras import installed

    if not installed("gguf"):
        raise AfterError(
            "recipe export writes GGUF files with the gguf package, which is not installed "
            "here; install it with `pip install 'recipe-runner[gguf]'`"
        )


def model_config(target: Target) -> dict[str, Any]:
    """The config.json of the model that will be written (the base's, for an adapter),
    read as data before anything loads."""
    from runner.after.target import require_model
    from runner.run.directory import RunDirectory

    settings = target.settings
    if not target.adapter:
        folder = Path(target.weights)
    elif settings is not None and settings.builds_base:
        folder = RunDirectory(target.path).base
    else:
        reference = require_model(str(target.base), target.revision, str(target.path))
        folder = Path(reference) if Path(reference).is_dir() else _cached_folder(reference)
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def _cached_folder(model_id: str) -> Path:
    from huggingface_hub import try_to_load_from_cache

    return Path(str(try_to_load_from_cache(model_id, "config.json"))).parent


def require_exportable(target: Target) -> None:
    """ExportError when the run's model is not one the exporter writes exactly."""
    reason = refusal(model_config(target))
    if reason is not None:
        raise ExportError(
            f"recipe export cannot write {target.path} as GGUF: {reason}. It writes the "
            "Llama architecture (Llama 2/3, TinyLlama, SmolLM2), exactly or not at all. "
            "For this model, merge it (`recipe merge RUN`) and convert the merged folder "
            "with llama.cpp's convert_hf_to_gguf.py"
        )


def exported_vocab(target: Target, tokenizer: PreTrainedTokenizerBase) -> GgufVocab:
    """The file's tokenizer metadata: copied from the GGUF file the model came from when
    the run uses that file's tokenizer, else from the table of shipped tokenizers."""
    from runner.after.gguf_vocab import vocab_from_gguf, vocab_from_table

    settings = target.settings
    gguf = settings.gguf_path if settings is not None else None
    if gguf is not None and not settings.model.get("tokenizer"):
        return vocab_from_gguf(gguf, tokenizer)
    return vocab_from_table(Path(target.weights), tokenizer)


def gguf_chat_template(fmt: PromptFormat, tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The chat template for the file: the run's, without transformers' `{% generation %}`
    markers (llama.cpp's Jinja does not know them; they change no text). A text template
    (alpaca, plain) becomes a one-turn chat template that writes the same prompt."""
    if fmt.template.uses_chat_template:
        text = tokenizer.chat_template
        return _GENERATION_TAG.sub("", text) if isinstance(text, str) and text else None
    from runner.data.templates import render_text_prompt

    marker = "\x00PROMPT\x00"
    before, _, after = render_text_prompt(fmt.template, marker, "").partition(marker)
    # JSON string literals are Jinja string literals, with the same escapes
    return "{{ " + json.dumps(before) + " + messages[-1]['content'] + " + json.dumps(after) + " }}"


def modelfile_text(gguf_name: str, stops: list[str], system_prompt: str | None) -> str:
    """A minimal Ollama Modelfile: the file, the tokens generation stops at, and the
    recipe's system prompt (the run always had it; a chat client would not)."""
    lines = [
        "# Ollama: ollama create NAME -f THIS_FILE  (written by recipe export)",
        f"FROM ./{gguf_name}",
    ]
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in stops]
    if system_prompt:
        lines.append('SYSTEM """' + system_prompt.replace('"""', '\\"\\"\\"') + '"""')
    return "\n".join(lines) + "\n"


@dataclass
class Exported:
    """What an export wrote and what it holds."""

    destination: Destination
    kind: str
    stop_ids: list[int]
    stop_tokens: list[str]
    record: dict[str, Any]


def trained_model(
    target: Target, qlora_base: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[int], str | None]:
    """(model in float32, tokenizer, stop ids, what a QLoRA adapter went into): merged
    for an adapter run, `final/` for a full run."""
    if target.adapter:
        from runner.after.merge import merged_model

        merged = merged_model(target, "float32", qlora_base)
        return merged.model, merged.tokenizer, merged.stop_ids, merged.qlora_base
    import torch

    from runner.after.load import load_target

    loaded = load_target(target, device="cpu")
    return loaded.model.to(torch.float32), loaded.tokenizer, loaded.stop_ids, None


def export_gguf(target: Target, destination: Destination, kind: str, qlora_base: str) -> Exported:
    """Merge (if needed) and write the run's model as GGUF, with its Modelfile and record."""
    from runner.after.gguf_writer import write_gguf
    from runner.after.load import load_tokenizer
    from runner.after.prompts import prompt_format

    require_exportable(target)
    tokenizer = load_tokenizer(target)
    vocab = exported_vocab(target, tokenizer)  # refused here, before the weights load
    model, tokenizer, stops, merged_into = trained_model(target, qlora_base)
    fmt = prompt_format(target.settings, tokenizer, target.path)
    template = gguf_chat_template(fmt, tokenizer)
    destination.gguf.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.gguf.with_name(destination.gguf.name + ".partial")
    name = target.settings.name if target.settings is not None else target.path.name
    write_gguf(partial, model, vocab, special_ids(tokenizer, stops[0]), template, kind, name)
    os.replace(partial, destination.gguf)
    stop_tokens = [str(t) for t in tokenizer.convert_ids_to_tokens(stops)]
    system = fmt.system_prompt if fmt.template.uses_chat_template else None
    destination.modelfile.write_text(
        modelfile_text(destination.gguf.name, stop_tokens, system), encoding="utf-8"
    )
    record = {
        "path": str(destination.gguf.resolve()),
        "type": kind,
        "bytes": destination.gguf.stat().st_size,
        "sha256": _sha256(destination.gguf),
        "method": target.method,
        "qlora_base": merged_into,
        "tokenizer": vocab.source,
        "template": fmt.template.kind,
        "end_of_turn_token": stop_tokens[0],
        "stop_tokens": stop_tokens,
        "context_length": int(model.config.max_position_embeddings),
        "modelfile": str(destination.modelfile.resolve()),
        "check": None,
    }
    return Exported(destination, kind, stops, stop_tokens, record)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def save_record(destination: Destination, record: dict[str, Any]) -> None:
    """Add (or replace) this file's entry in the run's export/export.json."""
    from runner.run.directory import now

    path = destination.record
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        existing = {}
    files = existing.get("files") if isinstance(existing.get("files"), dict) else {}
    files[destination.gguf.name] = {**record, "written_at": now()}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"files": files}, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
