"""Tokenizer settings: the byte-level tokenizer and the pad policy.

Pure choices (`choose_pad_token`; the end-of-turn token is runner.expand.loss's) take a
tokenizer and return a token string; `load_tokenizer` is the one place that reads a tokenizer from disk or the hub and
applies them, so training, `recipe preview` and the commands that use a trained run all
see the same tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.expand.chat_template import settle_chat_template
from runner.expand.loss import assistant_only_loss, end_of_turn_token, recipe_shape
from runner.expand.missing import ModelNotFoundError, first_line, require_gguf_package
from runner.expand.source import model_revision
from runner.recipe.models import gguf_tokenizer
from runner.recipe.remote_code import needs_own_code
from runner.recipe.resolve import BYTE_LEVEL
from runner.recipe.settings import Settings
from runner.recipe.template import Template

if TYPE_CHECKING:
    from pathlib import Path

    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

BYTE_PAD, BYTE_BOS, BYTE_EOS = "<pad>", "<s>", "</s>"

# Tokens reserved for padding or harmless to pad with, in order of preference.
RESERVED_PADS = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]")
NEW_PAD = "<pad>"


def build_byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """The runner's byte-level tokenizer: <pad>, <s>, </s>, then one token per byte.

    Built with the `tokenizers` library (a BPE model with no merges over the 256-symbol
    byte alphabet), so any UTF-8 text round-trips and nothing is downloaded. It is saved
    with the trained model, and later commands reload it from there.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {BYTE_PAD: 0, BYTE_BOS: 1, BYTE_EOS: 2}
    vocab.update({symbol: index + 3 for index, symbol in enumerate(alphabet)})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([BYTE_PAD, BYTE_BOS, BYTE_EOS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=BYTE_PAD,
        bos_token=BYTE_BOS,
        eos_token=BYTE_EOS,
        model_max_length=1_000_000,
    )


def choose_pad_token(
    tokenizer: PreTrainedTokenizerBase, end_of_turn: str, requested: str | None = None
) -> tuple[str, bool]:
    """The pad token to use and whether it must be added to the vocabulary.

    Order: the recipe's `model.pad_token`; the tokenizer's own pad token unless it is the
    end-of-turn or end-of-sequence token; a reserved pad token in the vocabulary
    (`<|finetune_right_pad_id|>` for Llama 3); `<unk>`; else a new `<pad>` token (the
    embeddings are then resized). Padding with the end-of-turn token would teach nothing
    wrong by itself, but collators and generation code that mask pad ids would then hide
    the very token that ends an answer.
    """
    vocab = tokenizer.get_vocab()
    avoid = {end_of_turn, tokenizer.eos_token}
    if requested:
        return requested, requested not in vocab
    own = tokenizer.pad_token
    if own and own not in avoid:
        return own, False
    for token in RESERVED_PADS:
        if token in vocab and token not in avoid:
            return token, False
    unk = tokenizer.unk_token
    if unk and unk in vocab and unk not in avoid:
        return unk, False
    return NEW_PAD, True


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase, template: Template) -> list[int]:
    """Token ids generation stops at: the end-of-turn token, and the eos token."""
    ids: list[int] = []
    for token in (end_of_turn_token(tokenizer, template), tokenizer.eos_token):
        token_id = tokenizer.convert_tokens_to_ids(token) if token else None
        if token_id is not None and token_id not in ids:
            ids.append(token_id)
    return ids


def load_gguf_tokenizer(gguf: Path) -> PreTrainedTokenizerBase:
    """The tokenizer a GGUF file carries (vocabulary, merges, special tokens, chat
    template), as transformers converts it."""
    from transformers import AutoTokenizer

    require_gguf_package()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def load_tokenizer(settings: Settings) -> PreTrainedTokenizerBase:
    """The tokenizer of a recipe, with its chat template and pad token settled.

    `model.tokenizer` wins over the model's own (`byte-level` builds the runner's byte
    tokenizer; a GGUF model's own is the one in its file). Its chat template is decided
    by runner.expand.chat_template: a Jinja template file (`data.template: *.jinja`),
    else its own; the marked variant when the recipe's conversations train assistant
    turns only. `template: chat` with a tokenizer that has none is a TemplateError here,
    before any model loads. A pad token missing from the vocabulary is added; the
    caller resizes the model's embeddings to `len(tokenizer)`.
    """
    from transformers import AutoTokenizer

    model = settings.model
    source = model.get("tokenizer") or model.get("id")
    gguf = gguf_tokenizer(model)
    if source == BYTE_LEVEL:
        tokenizer = build_byte_level_tokenizer()
    elif gguf is not None:
        tokenizer = load_gguf_tokenizer(gguf)
    else:
        key = "model.tokenizer" if model.get("tokenizer") else "model.id"
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                source,
                revision=model_revision(settings, str(source)),
                trust_remote_code=settings.trust_remote_code,  # runner.recipe.remote_code
            )
        except (OSError, ValueError) as exc:
            refused = needs_own_code(exc, source, key)
            if refused is not None:
                raise refused from None
            raise ModelNotFoundError(
                f"cannot load the tokenizer {source} ({key}): {first_line(exc)}; offline, it "
                "must be a local directory or in the Hugging Face cache"
            ) from None
    template = settings.template
    # the one decision of the chat template training renders with (runner.expand.chat_template)
    settle_chat_template(
        tokenizer,
        template,
        assistant_only=assistant_only_loss(recipe_shape(settings)),
        source=f"the tokenizer {source}",
    )
    end_of_turn = end_of_turn_token(tokenizer, template)
    pad, is_new = choose_pad_token(tokenizer, end_of_turn, model.get("pad_token"))
    if is_new:
        tokenizer.add_special_tokens({"pad_token": pad})
    else:
        tokenizer.pad_token = pad
    return tokenizer
