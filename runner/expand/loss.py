"""What the loss trains on, decided once: `loss_setup` gives a `LossSetup`.

- `end_of_turn`: the token every trained response ends with, and that generation stops
  at (TRL's `eos_token`, appended to each completion);
- instruction rows (alpaca, dolly, prompt_completion): the completion only;
- conversations (messages, sharegpt; or instruction rows mixed with them, all rendered
  as conversations): assistant turns only, through a chat template with
  `{% generation %}` markers (runner.expand.chat_template);
- text: every token.

Training's data preparation (runner.data.rows), its SFTConfig
(runner.expand.training.run_sft_kwargs) and `recipe eval` (runner.after.evaluate) all
read it, so eval scores exactly the tokens training trained.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.data.formats import SHAPE
from runner.errors import DataError
from runner.expand.chat_template import TemplateError, has_generation_markers
from runner.recipe.settings import Settings
from runner.recipe.template import Template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# End-of-turn markers of known chat formats, most specific first.
CHAT_END_OF_TURN = ("<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>")
CONVERSATIONS = ("messages", "mixed")


def end_of_turn_token(tokenizer: PreTrainedTokenizerBase, template: Template) -> str:
    """The token that ends every trained response, and that generation stops at.

    With the model's chat template it is the chat format's end-of-turn marker
    (`<|eot_id|>` for Llama 3, `</s>` for Zephyr/TinyLlama and Llama 2); with a text
    template (alpaca, plain) it is the tokenizer's end-of-sequence token.
    """
    vocab = tokenizer.get_vocab()
    if template.uses_chat_template:
        chat_template = tokenizer.chat_template or ""
        for token in CHAT_END_OF_TURN:
            if token in vocab and token in chat_template:
                return token
    if tokenizer.eos_token is None:
        raise ValueError("the tokenizer has no end-of-sequence token")
    return tokenizer.eos_token


def data_shape(formats: Iterable[str]) -> str:
    """The shape rows of these formats train as (runner.data.formats.SHAPE): their one
    shape, or `mixed` (instruction rows with conversations); DataError for text mixed
    with anything else."""
    shapes = {SHAPE[fmt] for fmt in formats}
    if len(shapes) == 1:
        return next(iter(shapes))
    if "text" in shapes:
        raise DataError(
            "format text cannot be mixed with other formats in one recipe "
            "(text trains every token; put it in its own recipe or convert it)"
        )
    return "mixed"


def recipe_shape(settings: Settings) -> str:
    """The shape of a recipe's data, from the formats of its train and eval sources."""
    return data_shape(source["format"] for source in settings.sources)


def assistant_only_loss(shape: str) -> bool:
    """Conversations train assistant turns only."""
    return shape in CONVERSATIONS


@dataclass(frozen=True)
class LossSetup:
    """Which tokens the loss is computed on (see the module docstring)."""

    shape: str  # "instruction", "messages", "mixed" or "text"
    end_of_turn: str

    @property
    def assistant_only(self) -> bool:
        """Conversations: assistant turns only (rows rendered as `messages`)."""
        return assistant_only_loss(self.shape)

    @property
    def completion_only(self) -> bool:
        """Instruction rows: the completion only."""
        return self.shape == "instruction"

    @property
    def mask_column(self) -> str | None:
        """The tokenized rows' column saying which tokens are trained (none for text)."""
        if self.shape == "text":
            return None
        return "assistant_masks" if self.assistant_only else "completion_mask"


def loss_setup(settings: Settings, tokenizer: PreTrainedTokenizerBase, shape: str) -> LossSetup:
    """The loss setup of `shape` rows with this tokenizer, whose chat template is settled
    (runner.expand.chat_template) for it: TemplateError when conversations are to train
    assistant turns only and the template has no generation markers to find them."""
    setup = LossSetup(shape, end_of_turn_token(tokenizer, settings.template))
    if setup.assistant_only and not has_generation_markers(tokenizer.chat_template):
        raise TemplateError(
            "conversations train and are scored on assistant turns only, but the chat "
            "template has no {% generation %} markers to find them (use instruction-shaped "
            "data, e.g. format alpaca or prompt_completion, or a .jinja template with them)"
        )
    return setup
