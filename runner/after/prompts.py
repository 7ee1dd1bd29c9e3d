"""Prompts and stop tokens of a target, exactly as training saw them.

A run's prompts go through `runner.data.templates.render_prompt` and `prompt_token_ids`,
the same two functions that prepared its training rows, with the tokenizer saved in the
run (which carries the run's chat template). A plain model directory uses its own chat
template, or the prompt as written when it has none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.target import AfterError
from runner.data.templates import PromptFormat, prompt_token_ids, render_prompt
from runner.expand.tokenizer import end_of_turn_ids
from runner.recipe.settings import Settings
from runner.recipe.template import Template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Prompt = str | list[dict[str, Any]]  # a user prompt, or a conversation ending in a user turn
PROMPT_KEYS = ("prompt", "instruction", "messages")


def prompt_format(
    settings: Settings | None, tokenizer: PreTrainedTokenizerBase, run_path: Path | None = None
) -> PromptFormat:
    """How a target's prompts are written: its run's template (the copy of its text in
    `run_path`, when given) and system prompt, or for a plain model its own chat
    template (the prompt as written when it has none)."""
    if settings is not None:
        fmt = PromptFormat.of(settings)
        if run_path is None:
            return fmt
        from runner.run.template_copy import run_template

        return PromptFormat(run_template(run_path, fmt.template), fmt.system_prompt, fmt.variables)
    return PromptFormat(Template("chat" if tokenizer.chat_template else "plain"))


def has_chat_template(settings: Settings | None, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether prompts go through a chat template (so multi-turn chat makes sense)."""
    template = prompt_format(settings, tokenizer).template
    return template.uses_chat_template and bool(tokenizer.chat_template)


def format_prompt(
    fmt: PromptFormat,
    tokenizer: PreTrainedTokenizerBase,
    prompt: Prompt,
    input_text: str = "",
) -> list[int]:
    """Token ids of a prompt rendered as training rendered it, ready for generation."""
    try:
        text = render_prompt(fmt, tokenizer, prompt, input_text)
    except ValueError as exc:
        raise AfterError(f"{exc}") from None
    return prompt_token_ids(fmt, tokenizer, text)


def stop_token_ids(
    fmt: PromptFormat,
    tokenizer: PreTrainedTokenizerBase,
    generation_eos: int | list[int] | None = None,
) -> list[int]:
    """Ids generation stops at: the end-of-turn token, the eos token, then the model's
    generation_config eos ids (Llama 3 lists several)."""
    ids = end_of_turn_ids(tokenizer, fmt.template)
    extra = [generation_eos] if isinstance(generation_eos, int) else list(generation_eos or [])
    return ids + [i for i in extra if i not in ids]


@dataclass(frozen=True)
class PromptRow:
    """One prompt of a prompts file: the prompt, its optional input, the row as given."""

    prompt: Prompt
    input: str
    row: dict[str, Any]


def prompt_row(row: Any, where: str) -> PromptRow:
    """A prompts-file row: {"prompt": text or turns}, {"instruction", "input"} (Alpaca,
    Dolly's "context" too) or {"messages": turns ending in a user turn}."""
    if not isinstance(row, dict) or not any(k in row for k in PROMPT_KEYS):
        raise AfterError(
            f"{where}: expected an object with a 'prompt' (or 'instruction', or 'messages') "
            'field, e.g. {"prompt": "Write a haiku"}'
        )
    key = next(k for k in PROMPT_KEYS if k in row)
    value = row[key]
    if isinstance(value, list):
        if not value or not all(isinstance(t, dict) and "role" in t for t in value):
            raise AfterError(f"{where}: '{key}' must be a list of {{role, content}} turns")
        if value[-1].get("role") == "assistant":
            value = value[:-1]  # a reference answer: generate it instead
        return PromptRow(prompt=value, input="", row=row)
    if not isinstance(value, str) or not value.strip():
        raise AfterError(f"{where}: '{key}' must be non-empty text")
    extra = row.get("input", row.get("context", "")) if key == "instruction" else ""
    return PromptRow(prompt=value, input=str(extra or ""), row=row)


def read_prompts(path: Path) -> list[PromptRow]:
    """The prompts of a .jsonl file (one JSON object per line; blank lines skipped)."""
    if not path.is_file():
        raise AfterError(f"{path}: no such file (give a .jsonl file of prompts)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AfterError(
                f"{where}:{exc.colno}: invalid JSON: {exc.msg} (one JSON object per line)"
            ) from None
        rows.append(prompt_row(value, where))
    if not rows:
        raise AfterError(f"{path}: no prompts in the file")
    return rows
