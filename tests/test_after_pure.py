"""The pure parts of infer/chat/merge/eval: the chat loop's history, prompt files, greedy
vs sampling settings, cutting at the stop token, side-by-side display, what RUN_OR_MODEL
names, and the checks merge makes before it loads anything."""

from __future__ import annotations

import json

import pytest

from runner.after.chat import chat_loop
from runner.after.compare import side_by_side
from runner.after.evaluate import prompt_and_reference, short_answers, summary
from runner.after.merge import merge_destination, merge_dtype
from runner.after.prompts import read_prompts
from runner.after.target import AfterError, Target, find_target, missing_model_message
from runner.generation import Sampling, cut_at_stop, generation_kwargs
from runner.recipe.settings import Settings


def run_chat(lines: list[str]):
    """Feed lines to the chat loop; record what the model was asked and the notes."""
    feed = iter(lines)
    asked, notes = [], []

    def reply(history):
        asked.append([turn["content"] for turn in history])
        return f"answer {len(asked)}"

    history = chat_loop(lambda: next(feed, None), reply, notes.append)
    return asked, notes, history


def test_chat_sends_the_whole_conversation_each_turn():
    asked, _, history = run_chat(["hi", "and again"])
    assert asked == [["hi"], ["hi", "answer 1", "and again"]]
    assert [t["role"] for t in history] == ["user", "assistant", "user", "assistant"]


def test_chat_reset_clears_the_history():
    asked, notes, _ = run_chat(["hi", "/reset", "fresh start"])
    assert asked[-1] == ["fresh start"]
    assert notes == ["(conversation cleared)"]


def test_chat_exit_ends_before_reading_further_lines():
    asked, _, _ = run_chat(["hi", "/exit", "never asked"])
    assert asked == [["hi"]]


def test_chat_end_of_input_ends_quietly_and_blank_lines_are_ignored():
    asked, notes, _ = run_chat(["", "  ", "hi"])
    assert asked == [["hi"]] and notes == []


def test_chat_unknown_slash_command_is_explained_not_sent():
    asked, notes, _ = run_chat(["/rest"])
    assert asked == [] and "unknown command /rest" in notes[0]


def test_greedy_by_default_neutralises_sampling_fields_of_the_model():
    kwargs = generation_kwargs(Sampling(max_new_tokens=9), [5, 7], pad_id=0)
    assert kwargs["do_sample"] is False and kwargs["eos_token_id"] == [5, 7]
    assert kwargs["temperature"] is None and kwargs["top_p"] is None
    assert kwargs["max_new_tokens"] == 9 and kwargs["pad_token_id"] == 0


def test_temperature_switches_to_sampling_with_top_p():
    kwargs = generation_kwargs(Sampling(temperature=0.7, top_p=0.9), [5], pad_id=None)
    assert kwargs["do_sample"] is True
    assert (kwargs["temperature"], kwargs["top_p"]) == (0.7, 0.9)
    assert kwargs["pad_token_id"] == 5  # no pad token: pad with the stop token


def test_output_is_cut_at_the_first_stop_token():
    assert cut_at_stop([10, 11, 7, 12, 5], [5, 7]) == ([10, 11], True)
    assert cut_at_stop([10, 11], [5]) == ([10, 11], False)


def test_side_by_side_puts_each_text_in_its_column():
    text = side_by_side("fine-tuned", "HELLO", "base", "hello there\nsecond line", width=41)
    lines = text.splitlines()
    assert lines[0].startswith("fine-tuned") and lines[0].endswith("base")
    assert lines[2].startswith("HELLO") and lines[2].endswith("hello there")
    assert lines[3].strip() == "| second line"


def test_prompt_file_accepts_prompt_instruction_and_messages_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [
        {"prompt": "one"},
        {"instruction": "two", "input": "ctx"},
        {"instruction": "three", "context": "dolly ctx"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ref"}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    got = read_prompts(path)
    assert [(r.prompt, r.input) for r in got[:3]] == [
        ("one", ""),
        ("two", "ctx"),
        ("three", "dolly ctx"),
    ]
    assert got[3].prompt == [{"role": "user", "content": "q"}]  # the reference turn is dropped


def test_prompt_file_errors_name_file_line_and_fix(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(AfterError, match=r"p\.jsonl:2:\d+: invalid JSON"):
        read_prompts(path)
    path.write_text('{"prompt": ""}\n')
    with pytest.raises(AfterError, match=r"p\.jsonl:1: 'prompt' must be non-empty text"):
        read_prompts(path)


def test_a_folder_that_is_neither_run_nor_model_is_refused(tmp_path):
    with pytest.raises(AfterError, match="neither a run directory"):
        find_target(str(tmp_path))


def test_an_unfinished_run_says_how_to_continue(tmp_path):
    (tmp_path / ".recipe-run").write_text("{}")
    (tmp_path / "recipe.resolved.yaml").write_text("model: {id: x}\nmethod: full\ndata: {}\n")
    (tmp_path / "run.json").write_text('{"status": "failed", "error": "out of memory"}')
    with pytest.raises(AfterError, match=r"not a trained run: it failed \(out of memory\)"):
        find_target(str(tmp_path))


def test_an_uncached_hub_id_gets_the_missing_model_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(AfterError) as caught:
        find_target("nobody/never-downloaded")
    assert "no such run or model directory here" in str(caught.value)
    assert "huggingface-cli download nobody/never-downloaded" in str(caught.value)


def test_missing_model_message_names_the_id_and_both_fixes():
    message = missing_model_message("org/model", where="outputs/run")
    assert message.startswith("the model 'org/model' (needed by outputs/run)")
    assert "huggingface-cli download org/model" in message
    assert "--set model.id=PATH" in message


def full_run_target(tmp_path) -> Target:
    settings = Settings({"method": "full", "model": {}})
    return Target(tmp_path, settings, str(tmp_path / "final"), False, None)


def adapter_target(tmp_path, dtype="float32") -> Target:
    settings = Settings({"method": "lora", "model": {"id": "base", "dtype": dtype}})
    return Target(tmp_path, settings, str(tmp_path / "final"), True, "base")


def test_merge_of_a_full_run_says_no_merge_is_needed_and_where_the_model_is(tmp_path):
    with pytest.raises(AfterError) as caught:
        merge_destination(full_run_target(tmp_path), None)
    assert "full fine-tuning run" in str(caught.value)
    assert "nothing to merge" in str(caught.value) and str(tmp_path / "final") in str(caught.value)


def test_merge_goes_to_run_merged_by_default_and_never_over_a_non_empty_folder(tmp_path):
    target = adapter_target(tmp_path)
    assert merge_destination(target, None) == tmp_path / "merged"
    (tmp_path / "merged").mkdir()
    assert merge_destination(target, None) == tmp_path / "merged"  # empty is fine
    (tmp_path / "merged" / "x").write_text("")
    with pytest.raises(AfterError, match="refusing to overwrite"):
        merge_destination(target, None)


def test_merge_dtype_is_the_flag_else_the_recipes_else_bfloat16(tmp_path):
    assert merge_dtype(adapter_target(tmp_path, "float32"), None) == "float32"
    assert merge_dtype(adapter_target(tmp_path, "float32"), "bfloat16") == "bfloat16"
    assert merge_dtype(adapter_target(tmp_path, "auto"), None) == "bfloat16"


def test_eval_references_of_instruction_and_conversation_examples():
    assert prompt_and_reference({"instruction": "i", "input": "x", "response": "r"}) == (
        "i",
        "x",
        "r",
    )
    turns = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    assert prompt_and_reference({"messages": turns}) == (turns[:3], "", "d")
    assert prompt_and_reference({"text": "t"}) is None


def test_exact_match_is_reported_only_for_short_answers():
    short = [{"reference": "ABC", "exact_match": True}, {"reference": "DE", "exact_match": False}]
    assert summary({"loss": 1.0}, short)["exact_match"] == 0.5
    essay = [{"reference": "a long answer " * 20, "exact_match": False}]
    assert summary({"loss": 1.0}, essay)["exact_match"] is None
    assert short_answers(["one line"]) and not short_answers(["two\nlines"])
