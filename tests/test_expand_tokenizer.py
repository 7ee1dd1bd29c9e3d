"""Tokenizer settings: the byte-level tokenizer, the end-of-turn token, the pad policy."""

from __future__ import annotations

import pytest
from conftest import settings_of

from runner.expand.tokenizer import (
    build_byte_level_tokenizer,
    choose_pad_token,
    end_of_turn_token,
    load_tokenizer,
)


def test_byte_level_tokenizer_round_trips_any_text_and_reloads_from_disk(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_byte_level_tokenizer()
    text = "Uppercase: héllo wörld ✓\n"
    ids = tokenizer(text)["input_ids"]
    assert len(tokenizer) == 259 and len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text)["input_ids"] == ids
    assert (again.pad_token, again.eos_token) == ("<pad>", "</s>")
    assert again("ab</s>")["input_ids"][-1] == again.eos_token_id


def test_byte_level_is_chosen_by_the_recipe():
    settings = settings_of("demo-uppercase")
    tokenizer = load_tokenizer(settings)
    assert tokenizer.pad_token == "<pad>"
    assert end_of_turn_token(tokenizer, settings.template) == "</s>"


def test_chat_template_on_a_tokenizer_without_one_is_refused_before_any_model(tmp_path):
    from runner.expand.chat_template import TemplateError

    build_byte_level_tokenizer().save_pretrained(tmp_path / "tok")
    settings = settings_of("demo-uppercase", f"model.tokenizer={tmp_path / 'tok'}")
    settings.resolved["data"]["template"] = "chat"
    with pytest.raises(TemplateError, match="has no chat template"):
        load_tokenizer(settings)


def bare_tokenizer(specials: list[str], pad: str | None = None):
    """A tiny tokenizer whose special tokens are exactly `specials` (the last one is eos)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*specials, "a", "b"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=specials[-1], pad_token=pad)


def test_a_pad_that_is_the_eos_is_replaced_by_unk():
    tokenizer = bare_tokenizer(["<unk>", "</s>"], pad="</s>")
    tokenizer.unk_token = "<unk>"
    assert choose_pad_token(tokenizer, "</s>") == ("<unk>", False)


def test_a_reserved_pad_wins_over_unk():
    tokenizer = bare_tokenizer(["<unk>", "<|finetune_right_pad_id|>", "<|eot_id|>"])
    tokenizer.unk_token = "<unk>"
    assert choose_pad_token(tokenizer, "<|eot_id|>") == ("<|finetune_right_pad_id|>", False)


def test_a_new_pad_is_added_when_the_vocabulary_has_nothing_better():
    tokenizer = bare_tokenizer(["</s>"])
    assert choose_pad_token(tokenizer, "</s>") == ("<pad>", True)


def test_the_recipe_can_name_its_pad_token():
    tokenizer = bare_tokenizer(["<unk>", "</s>"])
    assert choose_pad_token(tokenizer, "</s>", requested="<unk>") == ("<unk>", False)


@pytest.mark.fixtures
@pytest.mark.parametrize(
    ("name", "template", "end_of_turn", "pad"),
    [
        ("llama-3.2-instruct", "chat", "<|eot_id|>", "<|finetune_right_pad_id|>"),
        ("tinyllama-chat", "chat", "</s>", "<unk>"),
        ("llama-2", "alpaca", "</s>", "<unk>"),
    ],
)
def test_real_tokenizers_get_the_expected_end_of_turn_and_pad(
    shared_fixtures, name, template, end_of_turn, pad
):
    settings = settings_of(
        "demo-uppercase",
        f"model.tokenizer={shared_fixtures / 'tokenizers' / name}",
        f"data.template={template}",
    )
    tokenizer = load_tokenizer(settings)
    assert end_of_turn_token(tokenizer, settings.template) == end_of_turn
    assert tokenizer.pad_token == pad != end_of_turn
