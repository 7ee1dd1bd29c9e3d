"""Prompt templates: how a row becomes the prompt the model sees and the text it learns.

`render_prompt` is the single definition of a prompt. Training data preparation uses it,
and so does inference on a trained run: the same `PromptFormat` + tokenizer + user input
gives the same prompt text, up to where the response starts.

Which template a recipe uses is decided once (runner.recipe.template): `chat` (the
model's own chat template), `alpaca` (the canonical Stanford Alpaca prompt,
templates/alpaca.json), `plain` (the prompt as written, templates/plain.json), or a
Jinja chat template file; which chat template text the tokenizer carries is decided by
runner.expand.chat_template.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.recipe.settings import Settings
from runner.recipe.template import Template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class PromptFormat:
    """How prompts are written: the template, the recipe's system prompt, and the values
    a chat template reads besides the conversation (`data.template_variables`, such as
    Llama 3's date_string), the same in training and in every prompt of the run."""

    template: Template
    system_prompt: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings) -> PromptFormat:
        return cls(
            settings.template, settings.data.get("system_prompt"), settings.template_variables
        )


def text_template(template: Template | str) -> dict[str, str]:
    """The prompt strings of a text template (`prompt_input`, `prompt_no_input`), from
    its file: a run's copy, else the shipped templates/<name>.json."""
    template = template if isinstance(template, Template) else Template(template)
    if template.text_file is None:
        raise ValueError(f"{template.value} is not a text template")
    return _read_strings(template.text_file)


@functools.cache
def _read_strings(path: Path) -> dict[str, str]:
    return json.loads(path.read_text(encoding="utf-8"))


def render_text_prompt(template: Template | str, instruction: str, input_text: str = "") -> str:
    """A text template's prompt for one instruction (and optional input); `template` is
    the Template (whose text may be a run's copy) or a shipped template's name."""
    strings = text_template(template)
    if input_text:
        return strings["prompt_input"].format(instruction=instruction, input=input_text)
    return strings["prompt_no_input"].format(instruction=instruction)


def chat_messages(
    instruction: str, input_text: str = "", system_prompt: str | None = None
) -> list[dict[str, str]]:
    """An instruction (with optional input) as the user turn of a conversation."""
    user = f"{instruction}\n\n{input_text}" if input_text else instruction
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": user}]


def with_system_prompt(
    messages: list[dict[str, Any]], system_prompt: str | None
) -> list[dict[str, Any]]:
    """Put the recipe's system prompt first unless the conversation has its own."""
    if system_prompt and (not messages or messages[0].get("role") != "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return list(messages)


def render_prompt(
    fmt: PromptFormat,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | list[dict[str, Any]],
    input_text: str = "",
) -> str:
    """The prompt text for a user prompt (or a conversation ending in a user turn).

    Exactly the text that precedes the response in training: the Alpaca wording, the
    prompt as written (plain), or the chat template with the generation prompt added (and
    the recipe's system prompt, if any). Tokenize it with `prompt_token_ids`.
    """
    if fmt.template.is_text:
        if not isinstance(prompt, str):
            raise ValueError(
                f"the {fmt.template.kind} template takes a text prompt, not a conversation"
            )
        return render_text_prompt(fmt.template, prompt, input_text)
    messages = (
        chat_messages(prompt, input_text, fmt.system_prompt)
        if isinstance(prompt, str)
        else with_system_prompt(prompt, fmt.system_prompt)
    )
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **fmt.variables
    )


def prompt_token_ids(
    fmt: PromptFormat, tokenizer: PreTrainedTokenizerBase, prompt_text: str
) -> list[int]:
    """Token ids of a rendered prompt, tokenized the way TRL tokenizes it in training.

    Text templates go through the tokenizer with its special tokens (BOS), as TRL does
    for prompt-completion text; a chat template already writes its own BOS into the text.
    """
    return tokenizer(prompt_text, add_special_tokens=fmt.template.is_text)["input_ids"]
