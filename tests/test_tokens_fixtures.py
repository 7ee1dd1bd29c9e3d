"""Token-level proof, with the real tokenizers in ../shared/fixtures and TRL's own SFTTrainer
data preparation: prompt tokens are masked, every response token and the end-of-turn token
are trained, pad is not the end-of-turn token, multi-turn data trains assistant turns only,
and `recipe preview` marks exactly the tokens SFTTrainer trains."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import settings_of

from runner.data.templates import PromptFormat, render_prompt
from runner.data.tokens import trained_tokens
from runner.data.trl_rows import trl_row
from runner.expand.chat_template import training_chat_template
from runner.expand.tokenizer import end_of_turn_token, load_tokenizer

pytestmark = pytest.mark.fixtures

MULTI_TURN = [
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another one?"},
    {"role": "assistant", "content": "Green, like grass."},
]


def setup(fixtures, tokenizer_name: str, template: str) -> tuple[PromptFormat, Any, str]:
    settings = settings_of(
        "demo-uppercase",
        f"model.tokenizer={fixtures / 'tokenizers' / tokenizer_name}",
        f"data.template={template}",
    )
    tokenizer = load_tokenizer(settings)
    return PromptFormat.of(settings), tokenizer, end_of_turn_token(tokenizer, settings.template)


def sft_labels(tokenizer, rows: list[dict], end_of_turn: str, assistant_only: bool, tmp_path):
    """input_ids and labels exactly as TRL's SFTTrainer prepares them."""
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
    )  # fmt: skip
    if assistant_only:
        tokenizer.chat_template = training_chat_template(tokenizer)
    trainer = SFTTrainer(
        model=LlamaForCausalLM(config),
        args=SFTConfig(
            output_dir=str(tmp_path),
            use_cpu=True,
            bf16=False,
            report_to=[],
            eos_token=end_of_turn,
            assistant_only_loss=assistant_only,
            max_length=None,
            activation_checkpointing=False,
        ),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    return [(r["input_ids"], r["labels"]) for r in trainer.train_dataset]


def trained_text(tokenizer, ids, labels) -> str:
    return tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])


def test_alpaca_template_with_llama2_trains_the_response_and_eos_only(shared_fixtures, tmp_path):
    resolved, tokenizer, eot = setup(shared_fixtures, "llama-2", "alpaca")
    rows = json.loads((shared_fixtures / "data" / "alpaca_sample.json").read_text())[:8]
    examples = [
        {"instruction": r["instruction"], "input": r["input"], "response": r["output"]}
        for r in rows
    ]
    trl_rows = [trl_row(e, resolved, eot, as_messages=False) for e in examples]
    assert eot == "</s>" and tokenizer.pad_token == "<unk>"
    assert tokenizer.pad_token_id != tokenizer.convert_tokens_to_ids(eot)
    for example, (ids, labels) in zip(
        examples, sft_labels(tokenizer, trl_rows, eot, False, tmp_path), strict=True
    ):
        prompt = render_prompt(resolved, tokenizer, example["instruction"], example["input"])
        prompt_len = len(tokenizer(prompt)["input_ids"])
        assert all(label == -100 for label in labels[:prompt_len])  # every prompt token masked
        assert labels[prompt_len:] == ids[prompt_len:]  # every response token trained
        assert ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id
        assert trained_text(tokenizer, ids, labels).strip() == example["response"].strip() + "</s>"


def test_llama32_chat_template_trains_the_answer_and_eot(shared_fixtures, tmp_path):
    resolved, tokenizer, eot = setup(shared_fixtures, "llama-3.2-instruct", "chat")
    assert eot == "<|eot_id|>" and tokenizer.pad_token == "<|finetune_right_pad_id|>"
    example = {"instruction": "What is the capital of France?", "input": "", "response": "Paris."}
    row = trl_row(example, resolved, eot, as_messages=False)
    [(ids, labels)] = sft_labels(tokenizer, [row], eot, False, tmp_path)
    prompt_ids = tokenizer(
        render_prompt(resolved, tokenizer, example["instruction"]), add_special_tokens=False
    )["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids
    assert all(label == -100 for label in labels[: len(prompt_ids)])
    assert labels[len(prompt_ids) :] == ids[len(prompt_ids) :]
    assert trained_text(tokenizer, ids, labels) == "Paris.<|eot_id|>"


@pytest.mark.parametrize(
    ("tokenizer_name", "expected"),
    [
        ("llama-3.2-instruct", "Blue.<|eot_id|>Green, like grass.<|eot_id|>"),
        ("tinyllama-chat", "Blue.</s>Green, like grass.</s>"),
    ],
)
def test_multi_turn_messages_train_assistant_turns_only(
    shared_fixtures, tmp_path, tokenizer_name, expected
):
    resolved, tokenizer, eot = setup(shared_fixtures, tokenizer_name, "chat")
    row = trl_row({"messages": MULTI_TURN}, resolved, eot, as_messages=True)
    [(ids, labels)] = sft_labels(tokenizer, [row], eot, True, tmp_path)
    assert trained_text(tokenizer, ids, labels).replace(" ", "") == expected.replace(" ", "")
    assert tokenizer.pad_token != eot


def test_tinyllama_pad_is_unk_not_its_own_eos_pad(shared_fixtures):
    _, tokenizer, eot = setup(shared_fixtures, "tinyllama-chat", "chat")
    assert eot == "</s>" and tokenizer.pad_token == "<unk>"


@pytest.mark.parametrize(
    ("tokenizer_name", "template", "example"),
    [
        ("llama-2", "alpaca", {"instruction": "Add 2 and 3.", "input": "", "response": "5"}),
        ("llama-2", "alpaca", {"instruction": "Sum these.", "input": "2, 3", "response": "5"}),
        ("llama-3.2-instruct", "chat", {"instruction": "Hi", "input": "", "response": "Hello!"}),
        ("tinyllama-chat", "chat", {"messages": MULTI_TURN}),
        ("llama-3.2-instruct", "chat", {"messages": MULTI_TURN}),
    ],
)
def test_preview_marks_exactly_the_tokens_sfttrainer_trains(
    shared_fixtures, tmp_path, tokenizer_name, template, example
):
    resolved, tokenizer, eot = setup(shared_fixtures, tokenizer_name, template)
    as_messages = "messages" in example
    if as_messages:
        tokenizer.chat_template = training_chat_template(tokenizer)
    row = trl_row(example, resolved, eot, as_messages=as_messages)
    [(ids, labels)] = sft_labels(tokenizer, [row], eot, as_messages, tmp_path)
    preview_ids, mask = trained_tokens(tokenizer, row, eot)
    assert preview_ids == ids
    assert mask == [int(label != -100) for label in labels]
