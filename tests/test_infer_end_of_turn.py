"""Generation stops at the run's end-of-turn token, with the real Llama 3.2, TinyLlama and
Llama 2 tokenizers from ../shared/fixtures: a tiny random model with that tokenizer's
vocabulary is taught one answer that goes on *past* the end-of-turn token, so only the
stop ids keep the continuation out of the output."""

from __future__ import annotations

import pytest
from conftest import settings_of

from runner.after.prompts import format_prompt, stop_token_ids
from runner.data.templates import PromptFormat
from runner.expand.tokenizer import load_tokenizer
from runner.generation import Sampling, generate

pytestmark = [pytest.mark.fixtures, pytest.mark.slow]

ANSWER, AFTER = "Hello there", " world and more words after the end"


def tokenizer_for(fixtures, name: str, template: str):
    settings = settings_of(
        "demo-uppercase",
        f"model.tokenizer={fixtures / 'tokenizers' / name}",
        f"data.template={template}",
    )
    return PromptFormat.of(settings), load_tokenizer(settings)


def taught_model(tokenizer, prompt: list[int], sequence: list[int]):
    """A 1-layer Llama over the tokenizer's vocabulary, overfit on one prompt's continuation."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = torch.tensor([prompt + sequence])
    labels = torch.tensor([[-100] * len(prompt) + sequence])
    for _ in range(100):
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05, f"the tiny model did not learn its sequence (loss {loss.item()})"
    return model.eval()


@pytest.mark.parametrize(
    ("name", "template", "end_of_turn"),
    [
        ("llama-3.2-instruct", "chat", "<|eot_id|>"),
        ("tinyllama-chat", "chat", "</s>"),
        ("llama-2", "alpaca", "</s>"),
    ],
)
def test_generation_stops_at_the_end_of_turn_token_and_cuts_the_output_there(
    shared_fixtures, name, template, end_of_turn
):
    resolved, tokenizer = tokenizer_for(shared_fixtures, name, template)
    prompt = format_prompt(resolved, tokenizer, "Say hello.")
    eot_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    answer = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    after = tokenizer(AFTER, add_special_tokens=False)["input_ids"]
    model = taught_model(tokenizer, prompt, [*answer, eot_id, *after])

    stops = stop_token_ids(resolved, tokenizer)
    assert stops[0] == eot_id

    done = generate(model, tokenizer, [prompt], Sampling(max_new_tokens=40), stops)[0]
    assert done.text == ANSWER
    assert done.stopped and done.tokens == len(answer)

    # Without the end-of-turn id the same model runs on past it: the stop is what cuts it.
    others = [i for i in stops if i != eot_id] or [len(tokenizer) - 1]
    runaway = generate(model, tokenizer, [prompt], Sampling(max_new_tokens=40), others)[0]
    assert runaway.text.startswith(ANSWER) and "world" in runaway.text


def test_llama3_stop_ids_include_the_model_generation_config_eos_ids(shared_fixtures):
    resolved, tokenizer = tokenizer_for(shared_fixtures, "llama-3.2-instruct", "chat")
    stops = stop_token_ids(resolved, tokenizer, generation_eos=[128001, 128008, 128009])
    assert stops == [128009, 128001, 128008]
