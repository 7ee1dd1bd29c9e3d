"""The table of tokenizers `recipe export` writes without a GGUF file to copy from: the
real Llama 3 and Llama 2 / TinyLlama tokenizers of the shipped recipes
(../shared/fixtures/tokenizers; skipped when absent) and the runner's byte-level one (the
demo's), on a tiny random Llama.

The metadata is checked against the tokenizer itself; where llama-cpp-python is
installed (the `llama-cpp` extra, not in CI), llama.cpp's own tokenizer, reading the
file, must split real text (the Alpaca fixture rows) into the run's token ids.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from test_export import tiny_llama

from runner.after.gguf_vocab import CONTROL, ExportError, special_ids, vocab_from_table
from runner.after.gguf_writer import write_gguf
from runner.recipe.gguf_header import read_header

pytestmark = [pytest.mark.fixtures, pytest.mark.slow]

CASES = {
    "llama-3.2-instruct": ("gpt2", "llama-bpe", "<|eot_id|>"),
    "tinyllama-chat": ("llama", "default", "</s>"),
    "byte-level": ("gpt2", "default", "</s>"),  # the runner's own: no fixture needed
}


def exported(request: pytest.FixtureRequest, name: str, folder: Path):
    """(the tokenizer as a run saves it, a tiny Llama with it written as GGUF)."""
    from transformers import AutoTokenizer

    from runner.expand.tokenizer import build_byte_level_tokenizer

    if name == "byte-level":
        build_byte_level_tokenizer().save_pretrained(folder)
    else:
        fixtures = request.getfixturevalue("shared_fixtures")
        AutoTokenizer.from_pretrained(fixtures / "tokenizers" / name).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab = vocab_from_table(folder, tokenizer)
    end_of_turn = tokenizer.convert_tokens_to_ids(CASES[name][2])
    path = folder / "tiny.gguf"
    write_gguf(
        path,
        tiny_llama(len(tokenizer)),
        vocab,
        special_ids(tokenizer, end_of_turn),
        tokenizer.chat_template,
        "f16",
        name,
    )
    return tokenizer, path


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_shipped_tokenizer_is_written_with_its_llama_cpp_names_and_whole_vocabulary(
    request, tmp_path, name
):
    tokenizer, path = exported(request, name, tmp_path)
    header = read_header(path)
    ggml_model, pre, end_of_turn = CASES[name]
    assert header.metadata["tokenizer.ggml.model"] == ggml_model
    assert header.metadata["tokenizer.ggml.pre"] == pre
    assert header.vocab_size == len(tokenizer)
    assert header.metadata["tokenizer.ggml.eot_token_id"] == tokenizer.convert_tokens_to_ids(
        end_of_turn
    )
    assert header.chat_template == tokenizer.chat_template

    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    assert tokens == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    types = fields["tokenizer.ggml.token_type"].contents()
    assert types[tokenizer.bos_token_id] == CONTROL and types[tokenizer.eos_token_id] == CONTROL
    if ggml_model == "gpt2":
        merges = json.loads((tmp_path / "tokenizer.json").read_text())["model"]["merges"]
        assert fields["tokenizer.ggml.merges"].contents()[:3] == [" ".join(m) for m in merges[:3]]
    else:
        scores = fields["tokenizer.ggml.scores"].contents()
        first, second = tokenizer.convert_tokens_to_ids(["▁t", "er"])  # merges 1 and 2
        assert scores[first] > scores[second]


def test_any_other_tokenizer_is_refused_never_guessed(tmp_path):
    """The byte-level tokenizer with a space added before the text is in no table."""
    from tokenizers import pre_tokenizers

    from runner.expand.tokenizer import build_byte_level_tokenizer

    tokenizer = build_byte_level_tokenizer()
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=True, use_regex=False
    )
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ExportError, match="cannot write this tokenizer exactly"):
        vocab_from_table(tmp_path, tokenizer)


def alpaca_texts(shared_fixtures: Path) -> list[str]:
    rows = json.loads((shared_fixtures / "data" / "alpaca_sample.json").read_text())
    return [row[key] for row in rows for key in ("instruction", "input", "output") if row[key]]


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (pip install 'recipe-runner[llama-cpp]')",
)
@pytest.mark.parametrize("name", sorted(CASES))
def test_llama_cpp_splits_real_text_into_the_runs_token_ids(
    request, shared_fixtures, tmp_path, name
):
    from llama_cpp import Llama

    tokenizer, path = exported(request, name, tmp_path)
    llm = Llama(str(path), vocab_only=True, verbose=False)
    try:
        for text in alpaca_texts(shared_fixtures):
            for add_bos in (False, True):
                want = tokenizer(text, add_special_tokens=add_bos)["input_ids"]
                assert llm.tokenize(text.encode(), add_bos=add_bos, special=True) == want, text
    finally:
        llm.close()
