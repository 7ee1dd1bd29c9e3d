"""Prompt templates: the canonical Alpaca wording, plain prompts, training chat templates."""

from __future__ import annotations

import pytest

from runner.data.templates import PromptFormat, render_prompt, render_text_prompt
from runner.expand.chat_template import has_generation_markers, training_chat_template
from runner.recipe.template import Template

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def test_alpaca_prompt_with_input_is_the_stanford_wording_byte_for_byte():
    got = render_text_prompt("alpaca", "Translate.", "Bonjour")
    assert got == ALPACA_WITH_INPUT.format(instruction="Translate.", input="Bonjour")


def test_alpaca_prompt_without_input_is_the_stanford_wording_byte_for_byte():
    assert render_text_prompt("alpaca", "Tell a joke.") == ALPACA_NO_INPUT.format(
        instruction="Tell a joke."
    )


def test_plain_template_keeps_the_prompt_as_written():
    fmt = PromptFormat(Template("plain"))
    assert render_prompt(fmt, None, "Uppercase: abc\n") == "Uppercase: abc\n"


def test_chat_prompt_ends_with_the_assistant_header_and_includes_the_system_prompt(shared_fixtures):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(shared_fixtures / "tokenizers" / "llama-3.2-instruct")
    fmt = PromptFormat(Template("chat"), system_prompt="Be brief.")
    text = render_prompt(fmt, tokenizer, "Hi")
    assert "Be brief.<|eot_id|>" in text
    assert text.endswith(
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
    [
        {"role": "system", "content": "Be nice"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": " Yo "},
        {"role": "user", "content": "More"},
    ],
]


@pytest.mark.fixtures
@pytest.mark.parametrize("name", ["llama-3.2-instruct", "tinyllama-chat"])
@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_training_chat_template_renders_exactly_like_the_models_own(
    shared_fixtures, name, messages, generation_prompt
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(shared_fixtures / "tokenizers" / name)
    training = training_chat_template(tokenizer)
    assert has_generation_markers(training) and not has_generation_markers(tokenizer.chat_template)
    own = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    ours = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt, chat_template=training
    )
    assert ours == own
