"""Which chat template a tokenizer carries, decided in one place and set in one place.

`chat_template_text` decides, `settle_chat_template` sets it; nothing else in the runner
assigns `tokenizer.chat_template`. The text is, in order:
- a finished run's own copy (`saved`: runner.run.template_copy, `template/` in the run;
  for a run made before copies were kept, the one saved with its tokenizer), which is
  what its training rendered with;
- else a Jinja template file (`data.template: *.jinja`);
- else the tokenizer's own;
and when the loss trains assistant turns only (runner.expand.loss.LossSetup), the
variant of that text with `{% generation %}` markers, which renders identically: the
text's own when it has them, a shipped training template (Llama 3, Zephyr/TinyLlama),
or TRL's for the templates TRL knows.

Training settles it once, when the tokenizer is loaded (runner.expand.tokenizer); the
after-training commands settle it from the run's copy (runner.after.load), and `recipe
eval` of conversations asks for the marked variant of that copy.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING

from runner import TEMPLATES_DIR
from runner.errors import UserError
from runner.recipe.template import Template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Training chat templates shipped in templates/, chosen by a marker of the model's template.
TRAINING_TEMPLATES = (
    ("Cutting Knowledge Date", "<|start_header_id|>", "llama3-training.jinja"),
    ("<|assistant|>", "<|user|>", "zephyr-training.jinja"),
)
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


class TemplateError(UserError):
    """The recipe's template cannot be used with its tokenizer."""


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


def chat_template_text(
    tokenizer: PreTrainedTokenizerBase,
    template: Template,
    *,
    assistant_only: bool = False,
    saved: str | None = None,
    source: str = "the tokenizer",
) -> str | None:
    """The chat template the tokenizer is to carry (see the module docstring); the
    tokenizer is not changed. TemplateError for `template: chat` without one, and for
    assistant-only loss when no marked variant is known."""
    text = saved
    if text is None and template.path is not None:
        text = template.path.read_text(encoding="utf-8")
    if text is None:
        text = tokenizer.chat_template
    if template.kind == "chat" and not text:
        raise TemplateError(
            f"data.template is chat, but {source} has no chat template; use "
            "`template: alpaca` or `template: plain` (text prompts), or a .jinja chat "
            "template file relative to the recipe"
        )
    if not assistant_only or has_generation_markers(text):
        return text
    carrying = copy.copy(tokenizer)  # TRL reads the template from the tokenizer
    carrying.chat_template = text
    training = training_chat_template(carrying)
    if training is None:
        raise TemplateError(
            "multi-turn `messages` data trains assistant turns only, which needs a chat "
            "template with {% generation %} markers; the model's template has none and no "
            "training variant is known (write one and set `data.template: path/to/it.jinja`)"
        )
    return training


def settle_chat_template(
    tokenizer: PreTrainedTokenizerBase,
    template: Template,
    *,
    assistant_only: bool = False,
    saved: str | None = None,
    source: str = "the tokenizer",
) -> None:
    """Give the tokenizer the chat template `chat_template_text` decides."""
    text = chat_template_text(
        tokenizer, template, assistant_only=assistant_only, saved=saved, source=source
    )
    if text != tokenizer.chat_template:
        tokenizer.chat_template = text
