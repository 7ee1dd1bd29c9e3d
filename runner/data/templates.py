"""Prompt templates: how a row becomes the prompt the model sees and the text it learns.

`render_prompt` is the single definition of a prompt. Training data preparation uses it,
and so does inference on a trained run: the same `PromptFormat` + tokenizer + user input
gives the same prompt text, up to where the response starts.

Which template a recipe uses is decided once (runner.recipe.template): `chat` (the
model's own chat template), `alpaca` (the canonical Stanford Alpaca prompt,
templates/alpaca.json), `plain` (the prompt as written, templates/plain.json), or a
Jinja chat template file, which `load_tokenizer` attaches to the tokenizer.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import TEMPLATES_DIR
from runner.recipe.settings import Settings
from runner.recipe.template import Template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Training chat templates shipped in templates/, chosen by a marker of the model's template.
TRAINING_TEMPLATES = (
    ("Cutting Knowledge Date", "<|start_header_id|>", "llama3-training.jinja"),
    ("<|assistant|>", "<|user|>", "zephyr-training.jinja"),
)
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


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


def has_generation_markers(chat_template: str | None) -> bool:
    return bool(chat_template) and _GENERATION.search(chat_template) is not None


def training_chat_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """A chat template with `{% generation %}` markers that renders like the tokenizer's.

    The tokenizer's own when it has the markers; a shipped training template for Llama 3
    and Zephyr/TinyLlama; TRL's own for the templates TRL knows; None otherwise.
    """
    chat_template = tokenizer.chat_template
    if not isinstance(chat_template, str) or not chat_template:
        return None
    if has_generation_markers(chat_template):
        return chat_template
    for marker, other, filename in TRAINING_TEMPLATES:
        if marker in chat_template and other in chat_template:
            return (TEMPLATES_DIR / filename).read_text(encoding="utf-8")
    from trl.chat_template_utils import get_training_chat_template

    try:
        return get_training_chat_template(tokenizer)
    except (ValueError, TypeError, KeyError):
        return None


def use_training_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the tokenizer a chat template with generation markers (renders identically),
    so multi-turn data trains assistant turns only; TemplateError when none is known."""
    from runner.expand.tokenizer import TemplateError

    training = training_chat_template(tokenizer)
    if training is None:
        raise TemplateError(
            "multi-turn `messages` data trains assistant turns only, which needs a chat "
            "template with {% generation %} markers; the model's template has none and no "
            "training variant is known (write one and set `data.template: path/to/it.jinja`)"
        )
    tokenizer.chat_template = training
